"""restguard.edge."""
