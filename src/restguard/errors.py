"""The AuthError hierarchy.

Every error carries an RFC error code, a status hint, a public description (safe to show the
client) and a private ``debug`` detail (for the audit log only). ``edge/problem.py`` is the one
place that turns an error into a status, a JSON body and ``WWW-Authenticate`` challenges.
"""

from __future__ import annotations


class AuthError(Exception):
    """Base of every decision failure. Never shown to the client except through the edge."""

    status: int = 400
    error: str = "invalid_request"
    default_description: str = "The request is not valid."

    def __init__(
        self,
        description: str | None = None,
        *,
        debug: str = "",
        challenges: tuple[str, ...] = (),
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.description = description or self.default_description
        self.debug = debug
        self.challenges = challenges
        self.headers = headers
        super().__init__(self.description)

    def with_challenges(self, challenges: tuple[str, ...]) -> AuthError:
        """Return this error with the route's ``WWW-Authenticate`` challenges attached."""
        self.challenges = challenges
        return self


class InvalidRequest(AuthError):
    """400: malformed request or credential syntax."""


class HeadersTooLarge(AuthError):
    status = 431
    error = "invalid_request"
    default_description = "The request headers are too large."


class PayloadTooLarge(AuthError):
    status = 413
    error = "invalid_request"
    default_description = "The request body is too large."


class RequestTimeout(AuthError):
    """408: the client did not send its request head or body in time (slow client)."""

    status = 408
    error = "invalid_request"
    default_description = "The request was not received in time."

    def __init__(self, description: str | None = None, *, debug: str = "") -> None:
        super().__init__(description, debug=debug, headers=(("connection", "close"),))


class VersionNotSupported(AuthError):
    """505: RFC 9110 §15.6.6; restguard speaks HTTP/1.0 and HTTP/1.1 only."""

    status = 505
    error = "invalid_request"
    default_description = "Only HTTP/1.0 and HTTP/1.1 are supported."


class UnsupportedMediaType(AuthError):
    """415: a body in a content coding restguard cannot judge (a compressed form). RFC 9110
    §15.5.16: the answer names the codings accepted in ``Accept-Encoding``."""

    status = 415
    error = "invalid_request"
    default_description = "The request body's content coding is not accepted."

    def __init__(self, description: str | None = None, *, debug: str = "") -> None:
        super().__init__(description, debug=debug, headers=(("accept-encoding", "identity"),))


class MissingCredential(AuthError):
    """401 with no error code in the challenge (RFC 6750 §3.1: no credentials presented)."""

    status = 401
    error = "unauthorized"
    default_description = "This route needs a credential."


class InvalidCredential(AuthError):
    """401: the credential is unknown, wrong, expired or revoked. One generic description."""

    status = 401
    error = "invalid_token"
    default_description = "The credential is not valid."


class InsufficientScope(AuthError):
    """403: authenticated, but a required scope is missing (RFC 6750 §3.1)."""

    status = 403
    error = "insufficient_scope"
    default_description = "The credential lacks a scope this route requires."

    def __init__(self, required: tuple[str, ...], *, debug: str = "") -> None:
        super().__init__(debug=debug)
        self.scope = " ".join(required)


class NotFound(AuthError):
    """404: no route matches (default deny)."""

    status = 404
    error = "not_found"
    default_description = "No route matches this request."


class MethodNotAllowed(AuthError):
    """405: one of restguard's own endpoints, asked with a method it does not serve. RFC 9110
    §15.5.6: the origin server MUST generate an Allow header field in a 405 response."""

    status = 405
    error = "invalid_request"
    default_description = "This endpoint does not serve this method."

    def __init__(self, allow: str, *, debug: str = "") -> None:
        super().__init__(debug=debug, headers=(("allow", allow),))


class RateLimited(AuthError):
    status = 429
    error = "rate_limited"
    default_description = "Too many requests; retry later."

    def __init__(
        self, retry_after: int, *, debug: str = "", more: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """``more``: further headers (a route limit's ``RateLimit-*``)."""
        super().__init__(debug=debug, headers=(("retry-after", str(max(1, retry_after))), *more))
        self.retry_after = max(1, retry_after)


class BackendUnavailable(AuthError):
    """503: a backend needed for the decision is down. Fail closed, never forward."""

    status = 503
    error = "temporarily_unavailable"
    default_description = "A backend needed to decide this request is unavailable."


class Overloaded(AuthError):
    """503 with Retry-After: too many client connections, or no upstream connection free in
    time. Nothing is forwarded."""

    status = 503
    error = "temporarily_unavailable"
    default_description = "The gateway is busy; retry shortly."

    def __init__(self, description: str | None = None, *, debug: str = "") -> None:
        super().__init__(description, debug=debug, headers=(("retry-after", "1"),))


class UpstreamError(AuthError):
    status = 502
    error = "bad_gateway"
    default_description = "The upstream service failed."


class UpstreamTimeout(AuthError):
    status = 504
    error = "gateway_timeout"
    default_description = "The upstream service did not answer in time."


class ServerError(AuthError):
    """500: restguard itself cannot complete the request safely (a bug or bad stored data)."""

    status = 500
    error = "server_error"
    default_description = "restguard could not process the request."
