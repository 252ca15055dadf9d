"""restguard.cli."""
