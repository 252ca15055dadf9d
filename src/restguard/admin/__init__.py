"""restguard.admin."""
