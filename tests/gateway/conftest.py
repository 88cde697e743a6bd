"""A real exchange behind a real gateway on 127.0.0.1 (port 0), on a temporary data dir.

The standard market: an operator `op`, an issuer `issuer` holding all 100,000 units of
RS-US10123456B2 (patent US10123456B2, USD, tick 0.10, reference price 100.00, static band 10%
so limit prices 90.00 to 110.00), two investors `alice` and `bob` with USD 100,000.00 each.
The instrument is resumed with a 1 ms opening auction, so it is in continuous trading once
the sequencer's idle tick has fired.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from exchange.commands import Resume, Role, SetCancelOnDisconnect
from gateway import sessions
from gateway.admin_cli import create_account
from gateway.client import IpxClient
from gateway.server import Gateway, RunningServer, run_server
from ledger.file_store import FileJournal
from tests.exchange import rulebook

SYMBOL = "RS-US10123456B2"
PATENT = "US10123456B2"
ACCOUNTS = {
    "op": Role.OPERATOR,
    "issuer": Role.ISSUER,
    "alice": Role.INVESTOR,
    "bob": Role.INVESTOR,
}
CONTINUOUS_WAIT_S = 5.0


@dataclass
class Venue:
    data_dir: str
    tokens: dict[str, str] = field(default_factory=dict)
    url: str = ""

    async def client(self, account: str, *, bearer: bool = True) -> IpxClient:
        return await IpxClient.connect(self.url, self.tokens[account], bearer=bearer)


def prepare_data_dir(data_dir: str) -> Venue:
    """Open the standard accounts (as the host's administrator) and issue their tokens."""
    venue = Venue(data_dir)
    for account, role in ACCOUNTS.items():
        create_account(data_dir, account, role)
        token, _ = sessions.issue_token(data_dir, account)
        venue.tokens[account] = token
    return venue


async def list_the_market(venue: Venue) -> None:
    """List, issue, fund and open the standard instrument through op.* methods."""
    op = await venue.client("op")
    try:
        await op.request(
            "op.list_asset",
            {
                "patent_id": PATENT,
                "title": "Method for verifying royalty streams",
                "jurisdiction": "US",
                "owner_account": "issuer",
                "filing_date": "2015-03-01",
                "expiry_date": "2035-03-01",
                "cpc_class": "H04L 9/32",
                "licensees": ["Acme Corp"],
                "royalty_terms": "3% of net sales",
                "currency": "USD",
                "trailing_royalties": "1200.00",
            },
        )
        await op.request(
            "op.issue_shares",
            {
                "patent_id": PATENT,
                "symbol": SYMBOL,
                "issuer_account": "issuer",
                "total_units": 100_000,
                "currency": "USD",
                "tick_size": "0.10",
                "reference_price": "100.00",
                "maker_fee_bps": 10,
                "taker_fee_bps": 25,
                "opening_auction_ns": 1_000_000,
            },
        )
        for investor in ("alice", "bob"):
            await op.request(
                "op.deposit", {"account_id": investor, "currency": "USD", "amount": "100000.00"}
            )
        await op.request("op.resume", {"symbol": SYMBOL})
        await wait_for_phase(op, "continuous")
    finally:
        await op.close()


async def alice_buys_issuer_sells(
    venue: Venue, buy: tuple[int, str] = (10, "100.00"), sell: tuple[int, str] = (10, "100.00")
) -> None:
    """Alice bids, then the issuer offers (units, price): at the same price, they trade."""
    alice, issuer = await venue.client("alice"), await venue.client("issuer")
    try:
        await alice.place(SYMBOL, "buy", *buy)
        await issuer.place(SYMBOL, "sell", *sell)
    finally:
        await alice.close()
        await issuer.close()


MetricSamples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


RAW_ANSWER_BYTES_MAX = 1 << 20


def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """Send request bytes as they are (header lines repeated, say) to 127.0.0.1:port; return
    the answer's status code and its whole bytes, read until the server closes (bounded)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while len(answer) < RAW_ANSWER_BYTES_MAX:
            chunk = sock.recv(65_536)
            if not chunk:
                break
            answer += chunk
    status_line = answer.partition(b"\r\n")[0]
    assert status_line.startswith(b"HTTP/1.1 "), answer[:200]
    return int(status_line.split()[1]), answer


def scrape_metrics(url: str) -> MetricSamples:
    """Read /metrics at url (http://host:port/metrics) with the Prometheus text parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(http_get(url))
        for sample in family.samples
    }


def metrics_url(ws_url: str) -> str:
    """The /metrics URL of the gateway at ws_url (ws://host:port/)."""
    return ws_url.replace("ws://", "http://") + "metrics"


def chromium_executable() -> str:
    """Debian's Chromium for the browser tests; skip without it, except under CI (fail)."""
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if os.access(path, os.X_OK):
        return path
    reason = "no Chromium executable (Debian's chromium package installs /usr/bin/chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must install it (.ci/run)")
    pytest.skip(reason)


async def wait_for_phase(client: IpxClient, phase: str) -> None:
    deadline = time.monotonic() + CONTINUOUS_WAIT_S
    while time.monotonic() < deadline:
        listing = await client.request("instruments.list")
        if listing["instruments"][0]["phase"] == phase:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{SYMBOL} did not reach {phase} within {CONTINUOUS_WAIT_S} s")


IPX_SERVE_TIMEOUT_S = 20


def start_ipx_serve(
    data_dir: Path, *options: str, stderr: IO[str] | int = subprocess.DEVNULL
) -> tuple[subprocess.Popen[str], list[str], str]:
    """Run `ipx serve` on a free port; its process, the lines it printed, and its ws(s) url.

    Its log (stderr) goes to stderr: a file, say; by default nowhere.
    """
    command = ["serve", "--data-dir", str(data_dir), "--port", "0", *options]
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", *command],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:  # Bounded: the server prints its address within seconds.
        lines.append(line.rstrip("\n"))
        found = re.search(r"at (wss?://127\.0\.0\.1:\d+/)", line)
        if found:
            return process, lines, found.group(1)
        if len(lines) > 50:
            break
    process.kill()
    pytest.fail(f"ipx serve did not start: {lines}")


def stop_ipx_serve(process: subprocess.Popen[str]) -> None:
    """Stop it as an operator would (SIGTERM); it must shut down cleanly."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=IPX_SERVE_TIMEOUT_S) == 0


@pytest.fixture
def venue(tmp_path: Path) -> Venue:
    return prepare_data_dir(os.fspath(tmp_path))


@pytest_asyncio.fixture
async def server(venue: Venue) -> AsyncIterator[RunningServer]:
    async with run_server(venue.data_dir, logon_timeout_s=1.0) as running:
        venue.url = running.url
        yield running


@pytest_asyncio.fixture
async def market(venue: Venue, server: RunningServer) -> Venue:
    await list_the_market(venue)
    return venue


def stopped_in_an_auction(data_dir: Path, start_ts_ns: int) -> int:
    """Journal into data_dir a run that stopped during an opening auction, with alice's bid
    (placed through a session with cancel-on-disconnect) and the issuer's offer crossing, as
    the rulebook's standard market from start_ts_ns; return when the auction ends."""
    market = rulebook.Market()
    market.ts_ns = start_ts_ns
    market.pre_open()
    market.do(Resume(rulebook.OPERATOR, rulebook.SYMBOL))
    market.rest("alice", rulebook.BUY, 5, rulebook.REFERENCE, session="s-alice")
    market.do(SetCancelOnDisconnect("alice", "s-alice", "session"))
    market.rest(rulebook.ISSUER, rulebook.SELL, 5, rulebook.REFERENCE)
    with FileJournal.open(data_dir) as journal:
        journal.append_bodies(market.records)
    return market.instrument().phase_until_ns


async def sessions_ended(gateway: Gateway) -> None:
    """Wait (bounded) until the exchange holds no gateway session: the EndSession a closed
    client's connection sends (it had open orders) is journaled."""
    for _ in range(250):
        if not gateway.state.sessions:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"sessions not ended: {list(gateway.state.sessions)}")
