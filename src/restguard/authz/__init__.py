"""restguard.authz."""
