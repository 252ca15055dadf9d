"""restguard.credentials."""
