"""The gateway listener's TLS: the server ``ssl.SSLContext`` for ``[server] tls_cert`` /
``tls_key``, and its reload.

The context is the standard library's server recipe (``create_default_context(CLIENT_AUTH)``)
with: TLS 1.2 at least (RFC 8446 for 1.3; RFC 9325 §3.1.1: "Implementations MUST NOT negotiate
TLS version 1.1"), TLS 1.2 suites narrowed to forward-secret AEAD ones (ECDHE with AES-GCM or
ChaCha20-Poly1305: RFC 9325 §4.2's recommended suites, Mozilla's "intermediate" profile), no
compression (RFC 9325 §3.3, CRIME), the server's cipher order, no renegotiation, and ALPN
``http/1.1`` only (RFC 7301; the listener speaks HTTP/1.1).

Reload without a restart: the listener keeps one context whose SNI callback, which OpenSSL
runs on every ClientHello (with or without a server name), hands the connection the *current*
context. ``ServerTLS.reload`` builds a new context from the files and swaps it in only when it
loads whole, so new connections get the new certificate, connections already open keep theirs,
and broken files leave the old pair serving (the error says why).
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

_log = logging.getLogger("restguard.tls")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_ALPN = ["http/1.1"]
_TLS12_CIPHERS = "@SECLEVEL=2:ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"  # (1.3's are all AEAD)

__all__ = ["ServerTLS", "TLSFileError", "server_context"]


class TLSFileError(ValueError):
    """A certificate or key that cannot serve: ``key`` names the setting at fault
    (``tls_cert`` or ``tls_key``), ``problem`` and ``fix`` say what and how."""

    def __init__(self, key: str, problem: str, fix: str) -> None:
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}. Fix: {fix}")


class _Encrypted(Exception):
    """Raised by the password callback: restguard never prompts for a key's passphrase."""


def _no_password() -> bytes:
    raise _Encrypted


def _read(key: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise TLSFileError(key, f"{path} does not exist", "give the path of a PEM file") from None
    except IsADirectoryError:
        raise TLSFileError(key, f"{path} is a directory", "give the path of a PEM file") from None
    except OSError as exc:
        raise TLSFileError(
            key,
            f"cannot read {path} ({exc.strerror or exc})",
            "make it readable by the user restguard runs as",
        ) from None


def _check_certificate(path: Path) -> None:
    """``path`` holds at least one PEM certificate that OpenSSL parses."""
    data = _read("tls_cert", path)
    problem = None
    if _PEM_CERT not in data:
        problem = f"{path} holds no PEM certificate"
        if b"PRIVATE KEY-----" in data:
            problem += " (it looks like the private key)"
    else:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(
                cadata=data.decode("ascii")
            )
        except (ssl.SSLError, UnicodeDecodeError, ValueError):
            problem = f"{path} holds a certificate that does not parse"
    if problem is not None:
        raise TLSFileError(
            "tls_cert",
            problem,
            "give the PEM certificate (chain, server certificate first) for the listener",
        )


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context serving ``cert`` (PEM chain, leaf first) with ``key`` (PEM, not
    encrypted). Raises ``TLSFileError`` naming the file at fault; never prompts."""
    _check_certificate(cert)
    _read("tls_key", key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= (
        ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    )
    context.set_ciphers(_TLS12_CIPHERS)
    context.set_alpn_protocols(_ALPN)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _Encrypted:
        raise TLSFileError(
            "tls_key",
            f"{key} is encrypted with a passphrase",
            "write it unencrypted (openssl pkey -in KEY -out KEY.plain), readable by its owner "
            "only",
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TLSFileError(
                "tls_key",
                f"{key} does not match the certificate in {cert}",
                "give the private key the certificate was issued for",
            ) from None
        raise TLSFileError(
            "tls_key",
            f"{key} holds no PEM private key that loads",
            "give the certificate's private key in PEM (-----BEGIN PRIVATE KEY-----)",
        ) from None
    except OSError as exc:  # (a file replaced between the checks above and this load)
        raise TLSFileError(
            "tls_key", f"cannot read the pair ({exc.strerror or exc})", "check both paths"
        ) from None
    return context


class ServerTLS:
    """The listener's TLS: ``context`` goes to ``create_server`` once; ``reload`` changes the
    certificate new connections get."""

    def __init__(self, cert: Path, key: Path) -> None:
        """Load ``cert`` and ``key``; raise ``TLSFileError`` when they cannot serve."""
        self.cert, self.key = cert, key
        self._current = server_context(cert, key)
        self.context = self._current  # the listener's, for good; its SNI hook does the swap
        self.context.sni_callback = self._select

    def _select(
        self, conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        """Every ClientHello: serve the current pair, whatever name the client asked for
        (the listener has one certificate; a client that wanted another host refuses it)."""
        current = self._current
        if conn.context is not current:
            try:
                conn.context = current
            except Exception:  # (a handshake must never raise out of OpenSSL)
                _log.debug("could not switch a handshake to the reloaded certificate")

    def reload(self, cert: Path | None = None, key: Path | None = None) -> None:
        """Re-read the certificate and key (the same paths, or new ones) for new connections.

        Raises ``TLSFileError`` when they do not load, or do not match: the pair in use keeps
        serving. Connections already open are not touched. Call it on the event loop thread
        (a SIGHUP handler); it does blocking file reads of two small files."""
        cert, key = cert or self.cert, key or self.key
        self._current = server_context(cert, key)
        self.cert, self.key = cert, key
