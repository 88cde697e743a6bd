"""TLS for the gateway: `ipx serve --tls-cert CERT --tls-key KEY` serves wss:// and https://.

One port carries everything, as without TLS: order entry and market data (wss://HOST:PORT/),
and /livez, /readyz, /metrics and the dashboard (https://HOST:PORT/...).

Invariants:
- The server accepts TLS 1.2 and later only, with the ssl module's default ciphers.
- A certificate or key that does not load, or a key that does not match its certificate, is
  refused when the server starts (ValueError naming the files: `ipx serve` exits 2), never at
  a client's first handshake.
- A client verifies the server's certificate and host name: against the system's CAs, or
  against ca_file (a self-signed certificate, or a private CA) when given.
"""

from __future__ import annotations

import ssl


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The server side: the certificate chain in cert_file (PEM) and its private key.

    Raises:
        ValueError: a file is missing or unreadable, not PEM, or the key does not match.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(
            f"cannot use the TLS certificate {cert_file!r} with the key {key_file!r}: {error}"
        ) from None
    return context


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The client side: verify the server against the system's CAs, or those in ca_file.

    Raises:
        ValueError: ca_file is missing, unreadable or holds no certificate.
    """
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"cannot read CA certificates from {ca_file!r}: {error}") from None
