"""The Redis driver: shared rate limits, replay caches and revocation fan-out for several
instances (``[storage] redis``)."""
