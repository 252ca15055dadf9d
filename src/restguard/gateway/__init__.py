"""restguard.gateway."""
