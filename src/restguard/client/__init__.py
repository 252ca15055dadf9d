"""restguard.client."""
