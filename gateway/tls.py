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

`write_self_signed` makes a certificate for trying TLS on one machine (the tests, the gateway
bench's --tls); a real deployment uses one from its CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


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


def write_self_signed(
    directory: str | os.PathLike[str], name: str = "server", host: str = "127.0.0.1"
) -> tuple[str, str]:
    """Write a self-signed certificate for host (an IP address), valid for a day, and its key.

    Returns the paths of NAME.crt and NAME.key (PEM) in directory; the key file is readable by
    its owner only. A client trusts the certificate with client_context(NAME.crt).
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"IPX gateway {host}")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = Path(directory) / f"{name}.crt", Path(directory) / f"{name}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return os.fspath(cert_file), os.fspath(key_file)
