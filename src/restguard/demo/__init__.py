"""restguard.demo."""
