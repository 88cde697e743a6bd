"""Integration: `ipx serve --redis-url` publishes every durable event to Redis Streams.

Rules:
- A served trade reaches the instrument stream and the ticker hash; issuance and phase
  changes the operator stream.
- The restart's cancel-on-disconnect reaches Redis like any batch.
- When market data breaks, each instrument stream ends with a "stopped" entry (its
  first_journal_seq the first outcome without market data) and the ticker and bbo hashes are
  deleted, while trading goes on: nobody reads a frozen best bid as the current one.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as redis

from gateway.redis_publisher import RedisPublisher, bbo_key, operator_key, stream_key, ticker_key
from gateway.server import run_server
from tests.gateway.conftest import (
    SYMBOL,
    alice_buys_issuer_sells,
    list_the_market,
    prepare_data_dir,
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
