"""Redis Streams fan-out against a real Redis: what a consumer of the streams can rely on.

Rules, each checked below:
- Every market-data message of a seeded session arrives in its instrument's stream, in journal
  order, at id `<journal_seq>-<index>`; operator events (listing, issuance, phase changes,
  distributions) arrive in the operator stream.
- A consumer group reads every entry exactly once, however many consumers share it.
- The ticker and BBO hashes hold the last ticker of each instrument.
- Redis going away never blocks `publish`; when it is back, writing resumes where it stopped:
  nothing lost, nothing written twice (a resend is refused by its id, and is no loss: nothing
  logged, nothing counted refused).
- Past the backlog bound the oldest outcomes are dropped, counted, and a gap entry says which.
- `ipx tail` prints each event once per group; `redis-cli XLEN` sees the stream.
- Every entry and hash is what docs/asyncapi.json describes (its Redis schemas), and the data
  of an entry validates against the schema of the message or event it names.

Each test uses its own key prefix (so runs can share one Redis) and deletes its keys. The
session replays with IPX_SEED=<seed> (printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import pytest_asyncio
import redis

from exchange.commands import DistributeRoyalty, Halt, Resume
from exchange.core import Outcome
from exchange.events import RoyaltyDistributed
from gateway.market_data import Heartbeat, Message, Ticker, channel_of, encode
from gateway.redis_publisher import (
    GAP_INDEX,
    OPERATOR_EVENTS,
    RedisPublisher,
    bbo_key,
    operator_key,
    publisher_key,
    stream_key,
    ticker_key,
)
from tests.exchange.rulebook import ISSUER, OPERATOR
from tests.gateway.test_asyncapi import validate
from tests.gateway.test_market_data import SYMBOLS, random_command, two_instruments

pytestmark = pytest.mark.asyncio

ROOT = Path(__file__).resolve().parents[2]
SEED = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))
STEPS = 400
FLUSH_S = 15.0  # Longest wait for a backlog to reach Redis.
SUBPROCESS_S = 30.0
IPX = (sys.executable, "-m", "gateway.cli")

Batch = tuple[Outcome, list[Message]]
Entry = tuple[str, dict[str, str]]  # A stream entry as the decoding `client` reads it: id, fields.


# The session and what its streams must hold.


def session(seed: int, steps: int = STEPS) -> list[Batch]:
    """A seeded two-instrument session: each outcome with the messages MarketData made of it."""
    print(f"redis publisher session: IPX_SEED={seed} steps={steps}")
    rng = random.Random(seed)
    market = two_instruments(seed)
    for step in range(steps):
        command = random_command(market, rng)
        if step == steps // 3:
            command = Halt(OPERATOR, SYMBOLS[0])
        elif step == steps // 3 + 1:
            command = Resume(OPERATOR, SYMBOLS[0])
        elif step == steps // 2:
            command = DistributeRoyalty(OPERATOR, SYMBOLS[1], 10_000, ISSUER, "2030-Q1")
        if command is None:
            market.tick(rng.choice((1, 30, 600)) * 1_000_000_000)
        else:
            market.do(command, rng.randint(1, 5_000_000_000))
    grouped: dict[int, list[Message]] = {}
    for message in market.messages:
        grouped.setdefault(message.journal_seq, []).append(message)
    batches = [(outcome, grouped.get(outcome.seq, [])) for outcome in market.outcomes]
    assert any(isinstance(e, RoyaltyDistributed) for o, _ in batches for e in o.events)
    return batches


def expected_streams(batches: list[Batch], prefix: str) -> dict[str, list[tuple[str, Any]]]:
    """Per stream key, the (id, fields) entries the publisher must write, in order."""
    streams: dict[str, list[tuple[str, Any]]] = {}
    for outcome, messages in batches:
        indexes: dict[str, int] = {}
        for message in messages:
            if isinstance(message, Heartbeat):
                continue
            index = indexes[message.symbol] = indexes.get(message.symbol, -1) + 1
            fields: dict[str, object] = {
                "journal_seq": str(outcome.seq),
                "channel": channel_of(message),
                "symbol": message.symbol,
                "data": encode(message).decode(),
            }
            key = stream_key(prefix, message.symbol)
            streams.setdefault(key, []).append((f"{outcome.seq}-{index}", fields))
        operator = [e for e in outcome.events if isinstance(e, OPERATOR_EVENTS)]
        for index, event in enumerate(operator):
            fields = {"journal_seq": str(outcome.seq), "type": event.__struct_config__.tag}
            streams.setdefault(operator_key(prefix), []).append((f"{outcome.seq}-{index}", fields))
    return streams


def xrange(client: redis.Redis, key: str) -> list[Entry]:
    """XRANGE of the whole stream, oldest first, typed as a decoding client reads it.

    redis-py types one reply for every client (bytes or str, and None for the fields of an entry
    XCLAIM finds deleted); a decoding client's XRANGE answers str, every entry with its fields.
    """
    return cast(list[Entry], client.xrange(key))


def stored_streams(client: redis.Redis, keys: list[str]) -> dict[str, list[tuple[str, Any]]]:
    """Every entry of each stream, oldest first (operator entries without their data)."""
    stored: dict[str, list[tuple[str, Any]]] = {}
    for key in keys:
        entries = xrange(client, key)
        if key.endswith(":operator:events"):
            entries = [(i, {k: v for k, v in f.items() if k != "data"}) for i, f in entries]
        stored[key] = list(entries)
    return stored


def with_gap(
    expected: dict[str, list[tuple[str, Any]]], lost: list[Batch], prefix: str
) -> dict[str, list[tuple[str, Any]]]:
    """The streams after outcomes `lost` were dropped just before `expected` was written."""
    first, last = lost[0][0].seq, lost[-1][0].seq
    gap = {
        "journal_seq": str(last),
        "channel": "gap",
        "first_journal_seq": str(first),
        "dropped_outcomes": str(len(lost)),
    }
    touched = {stream_key(prefix, m.symbol) for _, messages in lost for m in messages}
    for key in (*sorted(touched), operator_key(prefix)):
        expected.setdefault(key, []).insert(0, (f"{last}-{GAP_INDEX}", gap))
    return expected


def last_tickers(batches: list[Batch]) -> dict[str, Ticker]:
    tickers: dict[str, Ticker] = {}
    for _, messages in batches:
        for message in messages:
            if isinstance(message, Ticker):
                tickers[message.symbol] = message
    return tickers


# Fixtures: a fresh prefix per test, its keys deleted afterwards; a proxy to cut Redis off.


@pytest.fixture
def prefix(redis_service: tuple[str, int]) -> Iterator[str]:
    name = f"ipx-test-{random.SystemRandom().randrange(1 << 48):012x}"
    yield name
    client = redis.Redis(*redis_service)
    keys = list(client.scan_iter(match=f"{name}:*", count=1_000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def client(redis_service: tuple[str, int]) -> Iterator[redis.Redis]:
    connection = redis.Redis(*redis_service, decode_responses=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def batches() -> list[Batch]:
    return session(SEED)


def url(redis_service: tuple[str, int], port: int | None = None) -> str:
    host, real_port = redis_service
    return f"redis://{host}:{port or real_port}/0"


class Proxy:
    """A TCP relay in front of Redis that can go down (listener and connections) and come back."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.silent = False  # Accept connections but never answer (a hung Redis).

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        self.writers.clear()
        await asyncio.wait_for(self.server.wait_closed(), 5)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.silent:
            self.writers.append(writer)
            with contextlib.suppress(OSError):
                while await reader.read(65_536):
                    pass
            return
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [writer, up_writer]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65_536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@pytest_asyncio.fixture
async def proxy(redis_service: tuple[str, int]) -> AsyncIterator[Proxy]:
    relay = Proxy(redis_service)
    await relay.up()
    yield relay
    if relay.server is not None and relay.server.is_serving():
        await relay.down()


async def publish_and_close(
    redis_url: str, prefix: str, batches: list[Batch], **options: Any
) -> None:
    """Publish every batch through a new publisher, wait until all is written, close it."""
    publisher = RedisPublisher(redis_url, prefix=prefix, **options)
    publisher.start()
    await publish_all(publisher, batches)
    assert await publisher.flush(FLUSH_S)
    await publisher.close()


async def publish_all(publisher: RedisPublisher, batches: list[Batch]) -> float:
    """Publish batches; return the longest time one publish call took, in seconds."""
    slowest = 0.0
    for outcome, messages in batches:
        started = time.perf_counter()
        publisher.publish(outcome, messages)
        slowest = max(slowest, time.perf_counter() - started)
    return slowest


# The rules.


async def test_every_event_arrives_in_journal_order(
    redis_service: tuple[str, int], prefix: str, client: redis.Redis, batches: list[Batch]
) -> None:
    publisher = RedisPublisher(url(redis_service), prefix=prefix, batch_max=64)
    publisher.start()
    await publish_all(publisher, batches)
    assert await publisher.flush(FLUSH_S), f"{publisher.backlog} outcomes still unwritten"
    await publisher.close()
    expected = expected_streams(batches, prefix)
    assert set(expected) == {*(stream_key(prefix, s) for s in SYMBOLS), operator_key(prefix)}
    assert stored_streams(client, list(expected)) == expected
    operator_types = [fields["type"] for _, fields in expected[operator_key(prefix)]]
    for kind in ("asset_listed", "shares_issued", "phase_changed", "royalty_distributed"):
        assert kind in operator_types
    assert publisher.stats.outcomes_written == len(batches)
    assert publisher.stats.last_journal_seq == batches[-1][0].seq
    assert (publisher.stats.outcomes_dropped, publisher.stats.connection_errors) == (0, 0)


async def test_every_entry_and_hash_is_what_the_asyncapi_document_describes(
    redis_service: tuple[str, int], prefix: str, client: redis.Redis, batches: list[Batch]
) -> None:
    await publish_and_close(url(redis_service), prefix, batches)
    schema_of_channel = {channel_of(m): type(m).__name__ for _, ms in batches for m in ms}
    schema_of_event = {str(k.__struct_config__.tag): k.__name__ for k in OPERATOR_EVENTS}
    for symbol in SYMBOLS:
        entries = xrange(client, stream_key(prefix, symbol))
        assert entries
        for _, fields in entries:
            validate(dict(fields), "RedisMarketDataEntry")
            validate(fields["data"].encode(), schema_of_channel[fields["channel"]])
        for key, schema in ((ticker_key, "RedisTickerHash"), (bbo_key, "RedisBboHash")):
            validate(cast(dict[str, str], client.hgetall(key(prefix, symbol))), schema)
    for _, fields in xrange(client, operator_key(prefix)):
        validate(dict(fields), "RedisOperatorEntry")
        validate(fields["data"].encode(), schema_of_event[fields["type"]])
    validate(cast(dict[str, str], client.hgetall(publisher_key(prefix))), "RedisPublisherHash")


async def test_a_consumer_group_reads_every_entry_exactly_once(
    redis_service: tuple[str, int], prefix: str, client: redis.Redis, batches: list[Batch]
) -> None:
    await publish_and_close(url(redis_service), prefix, batches)
    keys = [stream_key(prefix, symbol) for symbol in SYMBOLS]
    for key in keys:
        client.xgroup_create(key, "readers", id="0")
    seen: list[tuple[str, str]] = []  # (key, entry id) in the order read, by two consumers.
    total = sum(client.xlen(key) for key in keys)
    for round_number in range(total + 10):  # Bounded: each round reads at least one entry.
        consumer = ("one", "two")[round_number % 2]
        replies = client.xreadgroup("readers", consumer, dict.fromkeys(keys, ">"), count=7)
        if not replies:
            break
        assert isinstance(replies, list)  # RESP2's reply: a [key, entries] pair per stream.
        for key, entries in replies:
            for entry_id, _ in entries:
                seen.append((key, entry_id))
                client.xack(key, "readers", entry_id)
    assert len(seen) == len(set(seen)) == total, "an entry was read twice or not at all"
    for key in keys:
        read = [entry_id for stream, entry_id in seen if stream == key]
        assert read == [entry_id for entry_id, _ in xrange(client, key)], "read out of order"
        assert client.xpending(key, "readers")["pending"] == 0


async def test_the_ticker_and_bbo_hashes_hold_the_last_ticker(
    redis_service: tuple[str, int], prefix: str, client: redis.Redis, batches: list[Batch]
) -> None:
    await publish_and_close(url(redis_service), prefix, batches)
    for symbol, ticker in last_tickers(batches).items():
        stored = client.hgetall(ticker_key(prefix, symbol))
        assert stored == {
            "journal_seq": str(ticker.journal_seq),
            "seq": str(ticker.seq),
            "ts_ns": str(ticker.ts_ns),
            "last_price": ticker.last_price or "",
            "best_bid": ticker.best_bid or "",
            "best_bid_units": str(ticker.best_bid_units),
            "best_ask": ticker.best_ask or "",
            "best_ask_units": str(ticker.best_ask_units),
            "volume_units": str(ticker.volume_units),
            "trade_count": str(ticker.trade_count),
        }
        bbo = client.hgetall(bbo_key(prefix, symbol))
        assert bbo == {k: stored[k] for k in bbo} and len(bbo) == 5


async def test_an_outage_neither_blocks_nor_loses_nor_duplicates(
    prefix: str, client: redis.Redis, batches: list[Batch], proxy: Proxy
) -> None:
    publisher = RedisPublisher(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, batch_max=16)
    publisher.start()
    third = len(batches) // 3
    await publish_all(publisher, batches[:third])
    assert await publisher.flush(FLUSH_S)
    await proxy.down()
    slowest = await publish_all(publisher, batches[third : 2 * third])
    for _ in range(200):  # Until the writer has met the outage (bounded: 10 s).
        if publisher.stats.connection_errors >= 2:
            break
        await asyncio.sleep(0.05)
    assert publisher.stats.connection_errors >= 2, "the writer never noticed Redis was away"
    assert publisher.backlog == 2 * third - third, "an outcome left the backlog unwritten"
    assert slowest < 0.01, f"publish took {slowest * 1_000:.1f} ms while Redis was away"
    await proxy.up()
    await publish_all(publisher, batches[2 * third :])
    assert await publisher.flush(FLUSH_S), f"{publisher.backlog} outcomes never written"
    await publisher.close()
    expected = expected_streams(batches, prefix)
    assert stored_streams(client, list(expected)) == expected
    assert publisher.stats.outcomes_dropped == 0
    print(f"outage: {publisher.stats}")


async def test_a_resend_is_refused_by_its_id(
    redis_service: tuple[str, int],
    prefix: str,
    client: redis.Redis,
    batches: list[Batch],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # As after a half-executed pipeline, or a restarted server republishing the journal's tail:
    # entries up to the journal's seq at start may be in Redis, their refusal is no loss.
    half = batches[: len(batches) // 2]
    for run in range(2):
        await publish_and_close(
            url(redis_service),
            prefix,
            batches if run else half,
            journal_seq=half[-1][0].seq if run else 0,
        )
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "a refusal was logged"
    expected = expected_streams(batches, prefix)
    assert stored_streams(client, list(expected)) == expected


async def test_past_the_backlog_bound_the_oldest_are_dropped_with_a_gap_entry(
    prefix: str, client: redis.Redis, batches: list[Batch], proxy: Proxy
) -> None:
    kept = 5
    publisher = RedisPublisher(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, backlog_max=kept)
    publisher.start()
    await proxy.down()
    lost, sent = batches[-20:-kept], batches[-kept:]
    await publish_all(publisher, batches[-20:])
    assert publisher.backlog == kept
    assert publisher.stats.outcomes_dropped == len(lost)
    await proxy.up()
    assert await publisher.flush(FLUSH_S)
    await publisher.close()
    assert publisher.stats.gaps_written == 1
    expected = with_gap(expected_streams(sent, prefix), lost, prefix)
    assert stored_streams(client, list(expected)) == expected
    validate(dict(xrange(client, operator_key(prefix))[0][1]), "RedisGapEntry")


def session_longer_than(entries: int, seed: int) -> list[Batch]:
    """The seeded session, lengthened until every instrument's stream holds more than `entries`.

    A 400-step session falls short of 300 messages on one instrument for about 1 seed in 200,
    and a trimming test on a stream that never reached its bound could not fail.
    """
    steps = STEPS
    while True:
        batches = session(seed, steps)
        streams = expected_streams(batches, "")
        if all(len(streams[stream_key("", symbol)]) > entries for symbol in SYMBOLS):
            return batches
        steps *= 2


async def test_streams_are_trimmed_to_about_stream_max(
    redis_service: tuple[str, int], prefix: str, client: redis.Redis
) -> None:
    batches = session_longer_than(300, SEED)
    await publish_and_close(url(redis_service), prefix, batches, stream_max=100)
    expected = expected_streams(batches, prefix)
    for symbol in SYMBOLS:
        key = stream_key(prefix, symbol)
        # MAXLEN ~ trims whole radix-tree nodes (100 entries each by default).
        assert len(expected[key]) > 300
        assert 100 <= client.xlen(key) <= 300
        newest = client.xrevrange(key, count=1)
        assert newest is not None
        assert newest[0] == expected[key][-1], "the newest was trimmed"


async def test_ipx_tail_prints_each_event_once_per_group(
    redis_service: tuple[str, int], prefix: str, client: redis.Redis, batches: list[Batch]
) -> None:
    await publish_and_close(url(redis_service), prefix, batches)
    symbol = SYMBOLS[0]
    entries = xrange(client, stream_key(prefix, symbol))

    def tail(*options: str) -> list[str]:
        where = ("--redis-url", url(redis_service), "--prefix", prefix, "--group", "g")
        done = subprocess.run(
            [*IPX, "tail", *where, "--from-start", *options, symbol],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_S,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()

    lines = await asyncio.to_thread(tail, "--count", str(len(entries)), "--seconds", "20")
    assert lines == [
        f"{symbol} {fields['journal_seq']} {fields['channel']} {fields['data']}"
        for _, fields in entries
    ]
    assert await asyncio.to_thread(tail, "--seconds", "1") == [], "an event was printed twice"
    assert client.xpending(stream_key(prefix, symbol), "g")["pending"] == 0


async def test_ipx_tail_exits_1_when_redis_is_unreachable(proxy: Proxy) -> None:
    await proxy.down()
    done = await asyncio.to_thread(
        subprocess.run,
        [*IPX, "tail", "--seconds", "1", "--redis-url", f"redis://127.0.0.1:{proxy.port}/0", "X"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_S,
    )
    assert done.returncode == 1 and "cannot read from" in done.stderr


async def test_redis_cli_reads_the_stream_length(
    redis_service: tuple[str, int], prefix: str, batches: list[Batch]
) -> None:
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        pytest.skip("redis-cli is not installed")
    await publish_and_close(url(redis_service), prefix, batches)
    host, port = redis_service
    for key, entries in expected_streams(batches, prefix).items():
        done = subprocess.run(
            [redis_cli, "-h", host, "-p", str(port), "XLEN", key],
            capture_output=True,
            text=True,
            timeout=SUBPROCESS_S,
        )
        assert done.stdout.strip() == str(len(entries)), done.stderr


async def test_outcomes_dropped_while_a_write_hangs_leave_one_gap_in_journal_order(
    prefix: str, client: redis.Redis, batches: list[Batch], proxy: Proxy
) -> None:
    # A chunk is in flight to a Redis that does not answer; meanwhile the backlog overflows.
    # When the write times out, the chunk goes back in front of the newer gap; the bound then
    # drops the chunk too, and one gap covers both, written before the outcomes kept.
    proxy.silent = True
    publisher = RedisPublisher(
        f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix, backlog_max=8, batch_max=3
    )
    publisher.start()
    tail = batches[-13:]
    await publish_all(publisher, tail[:3])
    for _ in range(100):  # Until the writer holds the chunk (bounded: 5 s).
        if publisher.backlog == 0:
            break
        await asyncio.sleep(0.05)
    assert publisher.backlog == 0, "the writer never took the chunk"
    await publish_all(publisher, tail[3:])
    assert publisher.stats.outcomes_dropped == 2
    for _ in range(200):  # Until the hung write times out (bounded: 10 s).
        if publisher.stats.connection_errors:
            break
        await asyncio.sleep(0.05)
    assert publisher.stats.connection_errors >= 1, "the hung write never timed out"
    assert (publisher.backlog, publisher.stats.outcomes_dropped) == (8, 5)
    await proxy.down()
    proxy.silent = False
    await proxy.up()
    assert await publisher.flush(FLUSH_S)
    await publisher.close()
    lost, sent = tail[:5], tail[5:]
    expected = with_gap(expected_streams(sent, prefix), lost, prefix)
    assert stored_streams(client, list(expected)) == expected
    assert publisher.stats.gaps_written == 1


async def test_what_a_run_could_not_write_before_it_stopped_is_a_gap_at_the_next_start(
    redis_service: tuple[str, int],
    prefix: str,
    client: redis.Redis,
    batches: list[Batch],
    proxy: Proxy,
) -> None:
    # Run 1 writes its first outcomes, then Redis goes away and it stops with five unwritten.
    written, lost, later = batches[:10], batches[10:15], batches[15:20]
    first_run = RedisPublisher(f"redis://127.0.0.1:{proxy.port}/0", prefix=prefix)
    first_run.start()
    await publish_all(first_run, written)
    assert await first_run.flush(FLUSH_S)
    await proxy.down()
    await publish_all(first_run, lost)
    await first_run.close(timeout_s=0.2)
    assert first_run.stats.outcomes_dropped == len(lost)
    # Run 2 starts after them: its first write says what is missing, where it is missing.
    await publish_and_close(url(redis_service), prefix, later)
    before = expected_streams(written, prefix)
    after = expected_streams(later, prefix)
    gap = {
        "journal_seq": str(lost[-1][0].seq),
        "channel": "gap",
        "first_journal_seq": str(lost[0][0].seq),
        "dropped_outcomes": str(len(lost)),
    }
    gap_entry = (f"{lost[-1][0].seq}-{GAP_INDEX}", gap)
    # The operator stream, and every instrument stream there was: which lost entries is not
    # known any more.
    gapped = {operator_key(prefix), *before}
    expected = {
        key: before.get(key, []) + ([gap_entry] if key in gapped else []) + after.get(key, [])
        for key in {*gapped, *after}
    }
    assert stored_streams(client, list(expected)) == expected
