"""``wss://`` on loopback: a local certificate authority made by ``trustme``, and who trusts it.

TLS gives a WebSocket what it gives HTTPS: nobody on the path reads or changes the
frames, and the client knows it talks to the server it named.  The second half is the
certificate check, and it can only be tested with certificates that a client may
*refuse*.  A local CA (:func:`local_ca`) makes real ones::

    ca = local_ca()
    server_ssl = server_context(ca, "127.0.0.1", "localhost")   # the server's certificate
    client_ssl = client_context(ca)                             # trusts this CA only
    server = await start_private(ssl_context=server_ssl)        # https:// and wss://
    async with connect(server.socket_url, ssl=client_ssl, ...): ...

A client that trusts another CA, or that reaches the server under a name the
certificate does not list, refuses the handshake: ``ssl.SSLCertVerificationError``,
``certificate verify failed: unable to get local issuer certificate`` or ``IP address
mismatch, certificate is not valid for '127.0.0.1'``.  Never "fix" that with
``CERT_NONE``: it turns the check off for every attacker too.

A browser trusts its operating system's CAs, not ours.  For a test, Chromium can trust
one server key and nothing else: ``--ignore-certificate-errors-spki-list=<base64
SHA-256 of the certificate's SubjectPublicKeyInfo>`` (:func:`chromium_trust_args`), a
real trust decision, pinned to that key (a certificate with another key, even from the
same CA, is still refused).

:class:`TLSAppService` is the course's :class:`course.net.lifecycle.AppService` with an
optional ``ssl_context`` in ``start()``: its ``url`` then says ``https://``.
"""

from __future__ import annotations

import base64
import hashlib
import ssl

from typing import Any

import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from course.net.guard import start_app
from course.net.lifecycle import AppService

__all__ = ["TLSAppService", "local_ca", "server_context", "client_context", "spki_sha256", "chromium_trust_args"]


def local_ca() -> trustme.CA:
    """A new certificate authority, in memory (``trustme.CA``), for this run only."""
    return trustme.CA()


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server's TLS context with a new certificate from ``ca`` for ``names``.

    Args:
        ca: the issuing authority.
        *names: host names and IP addresses the certificate is valid for
            (default ``"127.0.0.1"``, ``"localhost"``).

    Returns:
        An ``ssl.SSLContext`` for a server (aiohttp's ``ssl_context``, ``websockets``' ``ssl``);
        its certificate is ``context.course_cert_pem`` (PEM bytes).
    """
    names = names or ("127.0.0.1", "localhost")
    cert = ca.issue_cert(*names)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    context.course_cert_pem = cert.cert_chain_pems[0].bytes()  # type: ignore[attr-defined]
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A client's TLS context that trusts ``ca`` (and nothing else), hostname checked."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname, no CA yet
    ca.configure_trust(context)
    return context


def spki_sha256(cert_pem: bytes) -> str:
    """Base64 of the SHA-256 of a certificate's SubjectPublicKeyInfo (its public key).

    What Chromium's ``--ignore-certificate-errors-spki-list`` and HTTP key pinning name.
    """
    key = x509.load_pem_x509_certificate(cert_pem).public_key()
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


def chromium_trust_args(*contexts: ssl.SSLContext) -> list[str]:
    """Chromium flags that trust the keys of these server contexts (from :func:`server_context`)."""
    pins = ",".join(spki_sha256(c.course_cert_pem) for c in contexts)  # type: ignore[attr-defined]
    return [f"--ignore-certificate-errors-spki-list={pins}"]


class TLSAppService(AppService):
    """An :class:`AppService` that can also listen with TLS (``https://``, ``wss://``)."""

    ssl_context: ssl.SSLContext | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else self.scheme
        return f"{scheme}://{self.host}:{self.port}{self.path}"

    async def start(self, host: str = "127.0.0.1", port: int = 0, *,
                    ssl_context: ssl.SSLContext | None = None) -> Any:
        """Listen on ``host:port`` (port 0: any free port), with TLS if ``ssl_context``.

        Raises:
            RuntimeError: already started.
            OSError: the address is in use or cannot be bound.
        """
        if self._runner is not None:
            raise RuntimeError(f"this {type(self).__name__} is already started")
        if self.guard is not None:
            runner = await start_app(self.app, host, port, self.guard, self.shutdown_timeout,
                                     ssl_context=ssl_context)
        else:
            runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=self.shutdown_timeout)
            await runner.setup()
            await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
        self._runner, self.ssl_context = runner, ssl_context
        self.host, self.port = runner.addresses[0][:2]
        return self
