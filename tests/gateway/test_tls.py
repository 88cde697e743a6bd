"""Rule: with --tls-cert and --tls-key the gateway speaks only TLS, on wss:// and https://.

A certificate is made for each test (self-signed, for 127.0.0.1), so a client trusts it only
when told to (ca_file); otherwise it refuses the server, as it would any unknown certificate.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from gateway import tls
from gateway.client import IpxClient
from gateway.server import RunningServer, run_server
from tests.gateway.conftest import Venue, start_ipx_serve, stop_ipx_serve

START_TIMEOUT_S = 20


def write_certificate(directory: Path, name: str = "server") -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files; their paths."""
    return tls.write_self_signed(directory, name)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    return write_certificate(tmp_path)


@pytest_asyncio.fixture
async def tls_server(venue: Venue, certificate: tuple[str, str]) -> AsyncIterator[RunningServer]:
    context = tls.server_context(*certificate)
    async with run_server(venue.data_dir, logon_timeout_s=1.0, ssl_context=context) as running:
        venue.url = running.url
        yield running


@pytest.mark.asyncio
async def test_orders_and_health_are_served_over_tls_to_a_client_that_trusts_the_server(
    venue: Venue, tls_server: RunningServer, certificate: tuple[str, str]
) -> None:
    assert venue.url.startswith("wss://127.0.0.1:")
    trusted = tls.client_context(certificate[0])
    op = await IpxClient.connect(venue.url, venue.tokens["op"], bearer=False, ssl_context=trusted)
    alice = await IpxClient.connect(venue.url, venue.tokens["alice"], ssl_context=trusted)
    try:
        assert op.account == "op"  # session.logon over TLS, too.
        deposit = {"account_id": "alice", "currency": "USD", "amount": "250.00"}
        await op.request("op.deposit", deposit)
        balances = await alice.request("account.balances")
        assert "250.00" in str(balances), balances
    finally:
        await op.close()
        await alice.close()

    def livez() -> int:  # In a thread: the server answering it runs on this event loop.
        url = f"{tls_server.http_url}livez"
        with urllib.request.urlopen(url, timeout=10, context=trusted) as response:
            return int(response.status)

    assert await asyncio.to_thread(livez) == 200


@pytest.mark.asyncio
async def test_a_client_refuses_a_server_whose_certificate_it_cannot_verify(
    venue: Venue, tls_server: RunningServer
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await IpxClient.connect(venue.url, venue.tokens["alice"])  # The system's CAs only.


@pytest.mark.asyncio
async def test_plain_websocket_on_a_tls_port_is_refused_and_the_server_carries_on(
    venue: Venue, tls_server: RunningServer, certificate: tuple[str, str]
) -> None:
    plain = venue.url.replace("wss://", "ws://")
    with pytest.raises((WebSocketException, OSError, EOFError)):
        async with connect(plain, open_timeout=5) as websocket:
            await websocket.recv()
    trusted = tls.client_context(certificate[0])
    bob = await IpxClient.connect(venue.url, venue.tokens["bob"], ssl_context=trusted)
    try:
        assert await bob.request("account.balances") is not None
    finally:
        await bob.close()


# `ipx serve` and `ipx client` from the command line.


def ipx(*arguments: str, timeout_s: float = START_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_ipx_serve_refuses_half_a_pair_or_a_key_of_another_certificate(tmp_path: Path) -> None:
    cert_file, _ = write_certificate(tmp_path, "one")
    _, other_key = write_certificate(tmp_path, "two")
    data_dir = tmp_path / "exchange"
    for options in (
        ["--tls-cert", cert_file],
        ["--tls-cert", cert_file, "--tls-key", other_key],
        ["--tls-cert", os.fspath(tmp_path / "missing.crt"), "--tls-key", other_key],
    ):
        done = ipx("serve", "--data-dir", os.fspath(data_dir), "--port", "0", *options)
        assert done.returncode == 2, done
        assert "tls" in done.stderr.lower(), done.stderr
    assert not data_dir.exists()  # Refused before anything was created.


def test_ipx_serve_with_a_certificate_serves_wss_that_ipx_client_reaches_with_its_ca_file(
    tmp_path: Path,
) -> None:
    cert_file, key_file = write_certificate(tmp_path)
    tls_options = ("--tls-cert", cert_file, "--tls-key", key_file)
    process, lines, url = start_ipx_serve(tmp_path / "exchange", *tls_options)
    try:
        assert url.startswith("wss://"), lines
        assert "health at https://127.0.0.1:" in lines[-1]
        token = lines[next(i for i, line in enumerate(lines) if "operator account" in line) + 1]
        where = ("--url", url, "--token", token.strip())
        # Reached and answered (1: the exchange refused an unknown symbol), not unreachable (2).
        trusted = ipx("client", *where, "--ca-file", cert_file, "book", "RS-NONE")
        assert trusted.returncode == 1 and "UNKNOWN_SYMBOL" in trusted.stderr, trusted
        untrusted = ipx("client", *where, "book", "RS-NONE")
        assert untrusted.returncode == 2 and "certificate" in untrusted.stderr, untrusted
    finally:
        stop_ipx_serve(process)


def test_a_self_signed_key_is_written_readable_by_its_owner_only(tmp_path: Path) -> None:
    _, key_file = write_certificate(tmp_path)
    assert os.stat(key_file).st_mode & 0o077 == 0


@pytest.mark.asyncio
async def test_a_connection_that_never_starts_its_tls_handshake_is_dropped_in_time(
    venue: Venue, certificate: tuple[str, str]
) -> None:
    # Over TLS the connection caps see a connection only once its handshake is done; until
    # then the handshake timeout is all that bounds what a silent one holds.
    context = tls.server_context(*certificate)
    async with run_server(
        venue.data_dir, ssl_context=context, tls_handshake_timeout_s=0.3
    ) as running:
        reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
        try:
            assert await asyncio.wait_for(reader.read(1), 5.0) == b""  # Closed by the server.
        except ConnectionResetError:
            pass
        finally:
            writer.close()
