"""restguard.wire."""
