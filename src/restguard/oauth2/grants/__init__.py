"""One module per grant type (RFC 6749 §4); no implicit and no password grant (RFC 9700)."""
