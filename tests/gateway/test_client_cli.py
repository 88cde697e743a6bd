"""`ipx client` in a subprocess against a real server: place, book, cancel, refusals, watch,
and a connection the server closes (exit 2 with one line, no traceback)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from gateway.server import CONNECTIONS_PER_TOKEN_MAX, RunningServer
from tests.gateway.conftest import SYMBOL, Venue

ROOT = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 30.0

pytestmark = pytest.mark.asyncio


async def ipx_client(venue: Venue, account: str, *arguments: str) -> tuple[int, str, str]:
    # Run asynchronously: the server is on this test's event loop and must keep serving.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "client", "--url", venue.url, *arguments,
        cwd=ROOT, env={**os.environ, "IPX_TOKEN": venue.tokens[account]},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_place_shows_in_the_book_and_cancel_removes_it(
    market: Venue, server: RunningServer
) -> None:
    code, out, err = await ipx_client(
        market, "alice", "--json", "place", SYMBOL, "buy", "10", "99.50"
    )
    assert code == 0, err
    placed = json.loads(out)
    assert (placed["status"], placed["price"], placed["leaves"]) == ("open", "99.50", 10)

    code, out, err = await ipx_client(market, "bob", "book", SYMBOL)
    assert code == 0, err
    assert (
        out.splitlines()[0] == f"{SYMBOL}  continuous  seq {server.gateway.sequencer.exchange.seq}"
    )
    assert "  bid        99.50 x 10" in out.splitlines()

    code, out, err = await ipx_client(market, "alice", "cancel", str(placed["order_id"]))
    assert code == 0, err
    assert out.startswith(f"order {placed['order_id']} ({placed['cl_ord_id']}) canceled: buy 10")
    code, out, _ = await ipx_client(market, "alice", "--json", "book", SYMBOL)
    assert json.loads(out)["bids"] == []


async def test_refusals_exit_1_with_the_code(market: Venue) -> None:
    code, out, err = await ipx_client(market, "alice", "place", SYMBOL, "buy", "10", "99.55")
    assert (code, out) == (1, "")
    assert err.startswith("refused: 400 INVALID_PRICE_INCREMENT")
    code, _, err = await ipx_client(market, "bob", "cancel", "999999")
    assert code == 1
    assert "404 UNKNOWN_ORDER" in err


async def test_a_connection_over_the_tokens_limit_exits_2_with_one_line(market: Venue) -> None:
    held = [await market.client("alice") for _ in range(CONNECTIONS_PER_TOKEN_MAX)]
    try:
        for command in (["book", SYMBOL], ["place", SYMBOL, "buy", "1", "99.00"]):
            code, out, err = await ipx_client(market, "alice", *command)
            assert (code, out) == (2, ""), err
            assert err.startswith("ipx client: ") and err.count("\n") == 1, err
            assert "LIMIT_EXCEEDED" in err
    finally:
        for client in held:
            await client.close()


async def test_watch_follows_the_book_with_a_matching_checksum(market: Venue) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "client", "--url", market.url,
        "--token", market.tokens["bob"], "watch", SYMBOL, "--seconds", "8",
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    first = (await asyncio.wait_for(process.stdout.readline(), RUN_TIMEOUT_S)).decode()
    if not first:  # It ended without a word on stdout: say what it said on stderr.
        assert process.stderr is not None
        error = await asyncio.wait_for(process.stderr.read(), RUN_TIMEOUT_S)
        raise AssertionError(f"watch exited early ({await process.wait()}): {error.decode()}")
    assert first.startswith("snapshot seq "), first  # Subscribed: now the book moves.
    alice = await market.client("alice")
    try:
        await alice.place(SYMBOL, "buy", 4, "98.00")
        await alice.place(SYMBOL, "buy", 6, "98.00")
    finally:
        await alice.close()
    out, err = await asyncio.wait_for(process.communicate(), RUN_TIMEOUT_S)
    assert process.returncode == 0, err
    lines = [first.rstrip("\n"), *out.decode().splitlines()]
    assert [line.split(" ", 1)[0] for line in lines] == ["snapshot", "update", "update"], lines
    assert lines[-1].endswith("bids 98.00x10 | asks -")
    assert all(" ok | " in line for line in lines), lines
