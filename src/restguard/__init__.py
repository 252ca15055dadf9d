"""restguard: secure any REST API from unauthorized access."""

from __future__ import annotations

from restguard.errors import AuthError
from restguard.guard import Decision, Guard
from restguard.types import Principal, RequestView

__version__ = "0.1.0"

__all__ = ["AuthError", "Decision", "Guard", "Principal", "RequestView", "__version__"]
