"""Integration: `ipx serve --redis-url` publishes every durable event to Redis Streams.

Rules:
- A served trade reaches its instrument stream, the ticker hash and the operator stream.
- A restart's cancel-on-disconnect reaches Redis like any batch.
- When market data breaks, each instrument stream ends with a "stopped" entry (its
  first_journal_seq the first outcome without market data) and the ticker and bbo hashes are
  deleted, while trading goes on: nobody reads a frozen best bid as the current one.
- `--redis-prefix` puts the keys under another prefix.
- A new exchange on keys an earlier exchange wrote (stream ids ahead of its journal) says so
  in an ERROR naming the way out (another --redis-prefix, or delete the keys), and /readyz and
  /metrics count what Redis refused as refused, never as written.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as redis

from gateway.client import IpxClient
from gateway.redis_publisher import (
    RedisPublisher,
    bbo_key,
    operator_key,
    publisher_key,
    stream_key,
    ticker_key,
)
from gateway.server import RunningServer, run_server
from tests.gateway.conftest import (
    SYMBOL,
    alice_buys_issuer_sells,
    list_the_market,
    metrics_url,
    prepare_data_dir,
    scrape_metrics,
    start_ipx_serve,
    stop_ipx_serve,
)
from tests.integrations.conftest import RedisKeys

pytestmark = pytest.mark.asyncio
WAIT_S = 10.0


async def test_a_served_trade_reaches_the_instrument_stream_and_the_ticker_hash(
    tmp_path: Path, redis_keys: RedisKeys
) -> None:
    url, prefix, client = redis_keys.url, redis_keys.prefix, redis_keys.client
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with run_server(venue.data_dir, redis_url=url, redis_prefix=prefix) as running:
        venue.url = running.url
        await list_the_market(venue)
        await alice_buys_issuer_sells(venue)
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            ticker = await client.hgetall(ticker_key(prefix, SYMBOL))
            if ticker.get(b"last_price") == b"100.00":
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"no ticker with the trade's price in Redis: {ticker}")
    # redis-py types the reply for any client (str or bytes, fields or None): this client
    # reads bytes, and XRANGE gives every entry its fields.
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        await client.xrange(stream_key(prefix, SYMBOL)),
    )
    seqs = [int(fields[b"journal_seq"]) for _, fields in entries]
    assert seqs == sorted(seqs) and seqs, "instrument stream empty or out of journal order"
    channels = {fields[b"channel"] for _, fields in entries}
    assert {b"trades", b"book.l2"} <= channels, channels
    assert await client.xlen(operator_key(prefix)) > 0  # Issuance and the phase changes.


async def test_the_restarts_cancel_on_disconnect_reaches_redis_like_any_batch(
    tmp_path: Path, redis_keys: RedisKeys
) -> None:
    # The last run stopped with alice's protected bid the best; the restart cancels it before
    # it serves anyone, and subscribers of Redis see the bid go as they see any cancel.
    url, prefix, client = redis_keys.url, redis_keys.prefix, redis_keys.client
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with run_server(venue.data_dir, redis_url=url, redis_prefix=prefix) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        await alice.request("session.cancel_on_disconnect", {"enabled": True})
        await alice.place(SYMBOL, "buy", 3, "98.00")
        await _bbo_best_bid(client, prefix, b"98.00")
    await alice.close()  # The server stopped with the session open.
    async with run_server(venue.data_dir, redis_url=url, redis_prefix=prefix) as running:
        ended_at = running.gateway.sequencer.exchange.seq
        assert running.gateway.recovery is not None
        assert running.gateway.recovery.sessions_ended == 1
        bbo = await _bbo_best_bid(client, prefix, b"")
        assert int(bbo[b"journal_seq"]) == ended_at


async def _bbo_best_bid(client: redis.Redis, prefix: str, price: bytes) -> dict[bytes, bytes]:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        bbo = cast(dict[bytes, bytes], await client.hgetall(bbo_key(prefix, SYMBOL)))
        if bbo.get(b"best_bid") == price:
            return bbo
        await asyncio.sleep(0.05)
    pytest.fail(f"the bbo hash never had best_bid {price!r}: {bbo}")


async def test_when_market_data_breaks_each_stream_ends_with_a_stopped_entry_and_the_hashes_go(
    tmp_path: Path, redis_keys: RedisKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, prefix, client = redis_keys.url, redis_keys.prefix, redis_keys.client
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with run_server(venue.data_dir, redis_url=url, redis_prefix=prefix) as running:
        venue.url = running.url
        (publisher,) = running.gateway.publishers
        assert isinstance(publisher, RedisPublisher)
        await list_the_market(venue)
        alice = await venue.client("alice")
        try:
            await alice.place(SYMBOL, "buy", 5, "98.00")
            await _bbo_best_bid(client, prefix, b"98.00")
            before = running.gateway.sequencer.exchange.seq

            def broken(outcome: object) -> list[object]:
                raise AssertionError("a bug in market data")

            monkeypatch.setattr(running.gateway.market_data, "on_outcome", broken)
            placed = await alice.place(SYMBOL, "buy", 7, "99.00")
            assert placed["status"] == "open"  # Trading goes on.
            await alice.place(SYMBOL, "buy", 9, "99.50")
            assert await publisher.flush(WAIT_S)
        finally:
            await alice.close()
        after = running.gateway.sequencer.exchange.seq
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        await client.xrange(stream_key(prefix, SYMBOL)),
    )
    *earlier, (entry_id, last) = entries
    assert last[b"channel"] == b"stopped", last
    first_seq = int(last[b"first_journal_seq"])
    assert before < first_seq <= int(last[b"journal_seq"]) <= after
    assert entry_id.startswith(last[b"journal_seq"] + b"-")
    assert all(int(fields[b"journal_seq"]) < first_seq for _, fields in earlier)
    assert not await client.exists(ticker_key(prefix, SYMBOL), bbo_key(prefix, SYMBOL))


async def test_ipx_serve_writes_under_the_redis_prefix_it_is_given(
    tmp_path: Path, redis_keys: RedisKeys
) -> None:
    url, prefix, client = redis_keys.url, redis_keys.prefix, redis_keys.client
    process, lines, ws_url = await asyncio.to_thread(
        start_ipx_serve, tmp_path / "exchange", "--redis-url", url, "--redis-prefix", prefix
    )
    try:
        token = lines[next(i for i, line in enumerate(lines) if "operator account" in line) + 1]
        async with await IpxClient.connect(ws_url, token.strip()) as operator:
            await operator.request("op.open_account", {"account_id": "ann", "role": "investor"})
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while await client.hget(publisher_key(prefix), "last_journal_seq") is None:
            assert asyncio.get_running_loop().time() < deadline, "nothing under the prefix"
            await asyncio.sleep(0.05)
    finally:
        await asyncio.to_thread(stop_ipx_serve, process)


async def test_a_new_exchange_on_an_earlier_exchanges_keys_says_so_and_counts_them_refused(
    tmp_path: Path, redis_keys: RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    url, prefix, client = redis_keys.url, redis_keys.prefix, redis_keys.client
    earlier = prepare_data_dir(os.fspath(tmp_path / "earlier"))
    async with run_server(earlier.data_dir, redis_url=url, redis_prefix=prefix) as running:
        earlier.url = running.url
        await list_the_market(earlier)
        await alice_buys_issuer_sells(earlier)
        await _written_through(running, running.gateway.sequencer.exchange.seq)
    earlier_top = await _operator_top(client, prefix)
    # A new exchange (its journal starts again at seq 1) on the same keys: every id it would
    # write is at or below one the streams hold, and Redis refuses it.
    caplog.set_level(logging.ERROR, logger="gateway.redis_publisher")
    fresh = prepare_data_dir(os.fspath(tmp_path / "fresh"))
    async with run_server(fresh.data_dir, redis_url=url, redis_prefix=prefix) as running:
        fresh.url = running.url
        first_seq = running.gateway.sequencer.exchange.seq
        await list_the_market(fresh)
        last_seq = running.gateway.sequencer.exchange.seq
        state = await _written_through(running, last_seq)
        samples = await asyncio.to_thread(scrape_metrics, metrics_url(running.url))
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("--redis-prefix" in m and "delete" in m for m in errors), errors
    # Listing, issuance and the phase changes were refused; deposits have no entry to refuse.
    assert state["refused"] >= 3 and state["written"] + state["refused"] == last_seq - first_seq
    assert samples[("ipx_publisher_refused_total", (("sink", "redis"),))] == state["refused"]
    assert samples[("ipx_publisher_published_total", (("sink", "redis"),))] == state["written"]
    assert await _operator_top(client, prefix) == earlier_top


async def _written_through(running: RunningServer, seq: int) -> dict[str, int]:
    """Wait (bounded) until the Redis publisher has handled every outcome through seq; return
    its /readyz state."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        state = running.gateway.readiness()["integrations"]["redis"]
        if state["last_journal_seq"] >= seq and state["backlog"] == 0:
            return cast(dict[str, int], state)
        assert asyncio.get_running_loop().time() < deadline, state
        await asyncio.sleep(0.05)


async def _operator_top(client: redis.Redis, prefix: str) -> bytes:
    """The id of the operator stream's last entry."""
    top = cast(list[tuple[bytes, object]], await client.xrevrange(operator_key(prefix), count=1))
    return top[0][0]
