"""restguard's OAuth 2.0 authorization server (RFC 6749), sans-IO: clients, grants, tokens.

The gateway's own endpoints (``gateway/own.py``) and the CLI are its adapters.
"""
