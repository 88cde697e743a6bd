"""Operations: /readyz answers a load balancer in one word and an operator, with ?verbose, in
JSON: recovery, the journal, whether market data runs, and every integration's state."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from gateway.server import RunningServer, run_server
from tests.gateway.conftest import SYMBOL, Venue, list_the_market, prepare_data_dir, sessions_ended
from tests.integrations.conftest import REDIS_HOST, REDIS_PORT, require_service

pytestmark = pytest.mark.asyncio
WAIT_S = 10.0


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


async def _readyz(running: RunningServer, query: str = "") -> tuple[int, str, str]:
    return await asyncio.to_thread(_get, f"{running.http_url}readyz{query}")


async def test_readyz_stays_one_word_and_verbose_tells_the_journal_state(
    market: Venue, server: RunningServer
) -> None:
    assert await _readyz(server) == (200, "text/plain; charset=utf-8", "ready\n")
    status, content_type, body = await _readyz(server, "?verbose")
    assert status == 200 and content_type == "application/json"
    answer = json.loads(body)
    assert answer["ready"] is True and answer["recovery"]["done"] is True
    assert answer["journal"] == {
        "writable": True,
        "last_seq": server.gateway.sequencer.exchange.seq,
    }
    assert answer["journal"]["last_seq"] > 0  # The market was listed.
    assert answer["market_data"] == {"running": True}
    assert answer["integrations"] == {}  # None configured.


async def test_market_data_that_breaks_switches_off_its_subscribers_trading_and_readyz_go_on(
    market: Venue, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher = await market.client("bob")
    alice = await market.client("alice")
    try:
        await watcher.request("md.subscribe", {"symbol": SYMBOL, "channels": ["book.l2"]})

        def broken(outcome: object) -> list[object]:
            raise AssertionError("a bug in market data")

        monkeypatch.setattr(server.gateway.market_data, "on_outcome", broken)
        placed = await alice.place(SYMBOL, "buy", 1, "95.00")  # Trading goes on ...
        assert placed["status"] == "open"
        await asyncio.wait_for(watcher.connection.wait_closed(), WAIT_S)
        assert watcher.connection.close_code == 1011  # ... its subscribers are told.
        status, _, body = await _readyz(server, "?verbose")
        assert status == 200  # Still ready: the exchange trades without derived data.
        assert json.loads(body)["market_data"] == {"running": False}
    finally:
        await watcher.close()
        await alice.close()


async def test_a_stopped_sequencer_answers_503_in_both_forms(
    market: Venue, server: RunningServer
) -> None:
    await server.gateway.sequencer.stop()
    assert (await _readyz(server))[0] == 503
    status, _, body = await _readyz(server, "?verbose=1")
    assert status == 503
    answer = json.loads(body)
    assert answer["ready"] is False and answer["journal"]["writable"] is False


async def test_verbose_readyz_shows_the_redis_integration(tmp_path: Path) -> None:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    import redis.asyncio as redis

    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    prefix = f"ipx-test-{secrets.token_hex(4)}"
    venue = prepare_data_dir(os.fspath(tmp_path))
    client = redis.Redis.from_url(url)
    try:
        async with run_server(venue.data_dir, redis_url=url, redis_prefix=prefix) as running:
            venue.url = running.url
            await list_the_market(venue)
            alice = await venue.client("alice")
            try:
                await alice.place(SYMBOL, "buy", 10, "100.00")
            finally:
                await alice.close()
            await sessions_ended(running.gateway)
            last_seq = running.gateway.sequencer.exchange.seq
            deadline = asyncio.get_running_loop().time() + WAIT_S
            while True:
                status, _, body = await _readyz(running, "?verbose")
                state = json.loads(body)["integrations"]["redis"]
                if state["last_journal_seq"] >= last_seq:
                    break
                assert asyncio.get_running_loop().time() < deadline, state
                await asyncio.sleep(0.05)
            assert status == 200
            assert state["connected"] is True
            assert state["backlog"] == 0 and state["dropped"] == 0
            assert state["written"] > 0
            assert "mqtt" not in json.loads(body)["integrations"]
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
