"""Market data over a real MQTT v5 broker (Mosquitto on 127.0.0.1:1883): the subscriber's rules.

Rules, each checked below against the real broker (every test has its own topic prefix):
- A subscriber that applies the retained l2/snapshot and then the l2/deltas (LocalBook) holds
  the server's book (MarketData.snapshot) at the same seq after a seeded random session.
- A late subscriber finds the retained status, bbo, reference data and publisher state; a
  clean stop leaves the state "offline".
- When the link to the broker dies, the Last Will says "offline"; the publisher reconnects
  with backoff, says "online", republishes every snapshot, and a subscriber that lost deltas
  detects the gap and resyncs from them.
- Once the state may not be shown (the sequencer failed, or market data switched off), the
  publisher says "offline" and clears every retained market-data topic (bbo, status,
  l2/snapshot, liquidity), publishes no snapshot, periodic or after a reconnection, and
  never says "online" again: a new subscriber finds no stale book.
- With no broker, `publish_messages` still returns at once: the buffer keeps the newest
  BUFFER entries and counts every drop.
- The retained snapshot is readable by mosquitto_sub, with its expiry and seq property.

The sessions replay with IPX_SEED=<seed> (printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiomqtt
import msgspec
import pytest

from gateway import liquidity
from gateway.local_book import LocalBook
from gateway.market_data import L2, STATUS, TICKER, BookL2, Message, Status, Ticker, Trades, decode
from gateway.mqtt_publisher import MqttPublisher
from tests.exchange.rulebook import SECOND
from tests.gateway.test_market_data import (
    SYMBOLS,
    FedMarket,
    random_command,
    server_l2,
    two_instruments,
)

WAIT_S = 5.0  # Bound of every wait on the broker.
pytestmark = pytest.mark.asyncio

BASE_SEED = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))


def unique_prefix() -> str:
    return f"test/{uuid.uuid4().hex[:12]}/ipx/v1"


async def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll until condition() holds; fail with `what` after timeout_s."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout_s)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def publisher_for(market: FedMarket, host: str, port: int, **options: Any) -> MqttPublisher:
    options.setdefault("snapshot_interval_s", 0.2)
    options.setdefault("backoff_min_s", 0.05)
    options.setdefault("backoff_max_s", 0.2)
    return MqttPublisher(
        market.exchange,
        market.data,
        host,
        port,
        prefix=unique_prefix(),
        identifier=f"ipx-test-{uuid.uuid4().hex[:8]}",
        **options,
    )


async def drive(
    market: FedMarket, publisher: MqttPublisher, rng: random.Random, steps: int
) -> None:
    """Run random commands, handing each one's messages to the publisher as the server would."""
    for _ in range(steps):
        start = len(market.messages)
        command = random_command(market, rng)
        if command is None:
            market.tick(rng.choice((SECOND, 30 * SECOND)))
        else:
            market.do(command, rng.randint(1, 5 * SECOND))
        publisher.publish_messages(market.messages[start:])
        await asyncio.sleep(0)  # Between two batches, as in the server.


class Subscriber:
    """A client of the MQTT topics: one LocalBook per symbol, trades, retained state."""

    def __init__(self, publisher: MqttPublisher, host: str, port: int) -> None:
        self.publisher, self.host, self.port = publisher, host, port
        self.books = {symbol: LocalBook(symbol) for symbol in SYMBOLS}
        self.gaps = self.resyncs = self.snapshots = self.deltas = 0
        self.trades: dict[str, list[Any]] = {symbol: [] for symbol in SYMBOLS}
        self.states: list[bytes] = []
        self.expiries: list[int] = []

    async def run(self, ready: asyncio.Event) -> None:
        publisher = self.publisher
        async with aiomqtt.Client(
            self.host, self.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            # Deltas first: a snapshot then never misses the deltas that follow it.
            for symbol in SYMBOLS:
                await client.subscribe(publisher.topic(symbol, "l2/delta"))
                await client.subscribe(publisher.topic(symbol, "trades"))
            for symbol in SYMBOLS:
                await client.subscribe(publisher.topic(symbol, "l2/snapshot"))
            await client.subscribe(publisher.state_topic(), qos=1)
            ready.set()
            async for message in client.messages:
                self.receive(message)

    def receive(self, message: aiomqtt.Message) -> None:
        if str(message.topic) == self.publisher.state_topic():
            self.states.append(bytes(message.payload))
            return
        decoded = decode(message.payload)
        if isinstance(decoded, Trades):
            self.trades[decoded.symbol] += decoded.trades
            return
        assert isinstance(decoded, BookL2)
        properties = dict(message.properties.UserProperty)  # type: ignore[union-attr]
        assert properties["seq"] == str(decoded.seq)
        if decoded.type == "update":
            assert properties["prev_seq"] == str(decoded.prev_seq)
            self.deltas += 1
        else:
            self.snapshots += 1
            self.expiries.append(message.properties.MessageExpiryInterval)  # type: ignore[union-attr]
        book = self.books[decoded.symbol]
        was_in_sync, had_gap = book.in_sync, "gap" in book.problem
        in_sync = book.apply(decoded)
        if was_in_sync and not in_sync:
            assert "gap" in book.problem, book.problem  # Never a checksum mismatch.
            self.gaps += 1
        elif had_gap and in_sync:
            self.resyncs += 1

    def caught_up(self, market: FedMarket) -> bool:
        return all(
            book.in_sync and book.seq == market.data.seq(L2, symbol)
            for symbol, book in self.books.items()
        )


@contextlib.asynccontextmanager
async def subscribed(publisher: MqttPublisher, host: str, port: int) -> AsyncIterator[Subscriber]:
    subscriber = Subscriber(publisher, host, port)
    ready = asyncio.Event()
    task = asyncio.create_task(subscriber.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), WAIT_S)
        yield subscriber
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task  # Raises what ended the subscriber early, if anything did.


def same_book(message: Message, expected: Message) -> bool:
    """Whether two book.l2 snapshots hold the same book at the same seq."""
    assert isinstance(message, BookL2) and isinstance(expected, BookL2)
    fields = ("type", "symbol", "seq", "bids", "asks", "checksum")
    return all(getattr(message, name) == getattr(expected, name) for name in fields)


def assert_books_equal(subscriber: Subscriber, market: FedMarket) -> None:
    for symbol, book in subscriber.books.items():
        snapshot = market.data.snapshot(L2, symbol)
        assert isinstance(snapshot, BookL2)
        assert book.seq == snapshot.seq
        assert (book.bids(), book.asks()) == (snapshot.bids, snapshot.asks), symbol
        assert (book.bids(), book.asks()) == server_l2(market, symbol)
        assert book.checksum() == snapshot.checksum


async def test_a_subscriber_rebuilds_the_book_from_the_retained_snapshot_and_deltas(
    mqtt_service: tuple[str, int],
) -> None:
    seed = BASE_SEED
    print(f"mqtt session: IPX_SEED={seed}")
    host, port = mqtt_service
    market = two_instruments(seed)
    publisher = publisher_for(market, host, port)
    publisher.start()
    try:
        await wait_until(lambda: publisher.connected, "the publisher to connect")
        async with subscribed(publisher, host, port) as subscriber:
            await wait_until(
                lambda: all(book.in_sync for book in subscriber.books.values()),
                "the retained snapshots",
            )
            trades_before = {s: len(subscriber.trades[s]) for s in SYMBOLS}
            published = len(market.messages)
            await drive(market, publisher, random.Random(seed), 300)
            await wait_until(lambda: subscriber.caught_up(market), "the subscriber to catch up")
            assert_books_equal(subscriber, market)
            assert subscriber.gaps == 0, "a delta was lost on an unbroken connection"
            # Deltas queued together go out merged (gateway/conflation.py): fewer than sent.
            assert subscriber.deltas > 30
            assert subscriber.expiries and all(0 < e <= 60 for e in subscriber.expiries)
            for symbol in SYMBOLS:
                sent = [
                    t
                    for m in market.messages[published:]
                    if isinstance(m, Trades) and m.symbol == symbol
                    for t in m.trades
                ]
                assert subscriber.trades[symbol][trades_before[symbol] :] == sent
            print(
                f"deltas {subscriber.deltas}, snapshots {subscriber.snapshots}, "
                f"published {publisher.stats.published}, conflated {publisher.stats.conflated}, "
                f"dropped {publisher.stats.dropped}"
            )
            assert publisher.stats.dropped == 0
    finally:
        await publisher.stop()


async def retained(
    host: str,
    port: int,
    topic: str,
    count: int,
    settled: Callable[[dict[str, aiomqtt.Message]], bool] = lambda found: True,
) -> dict[str, aiomqtt.Message]:
    """Subscribe afresh to a filter until its first `count` retained messages are settled."""
    found: dict[str, aiomqtt.Message] = {}

    async def collect() -> None:
        while True:
            found.clear()
            async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
                await client.subscribe(topic)
                async for message in client.messages:
                    # A retained topic's message that arrives live is its newest value: the
                    # broker may still be reading the publisher's last packets when we subscribe.
                    if message.retain or not str(message.topic).endswith(("/l2/delta", "/trades")):
                        found[str(message.topic)] = message
                    if len(found) >= count:
                        break
            if settled(found):
                return
            await asyncio.sleep(0.05)  # The publisher's last messages may still be in flight.

    try:
        await asyncio.wait_for(collect(), WAIT_S)
    except TimeoutError:
        pytest.fail(f"found only {sorted(found)} retained under {topic}, or not settled")
    return found


async def retained_now(
    host: str, port: int, topic_filter: str, listen_s: float = 1.0
) -> dict[str, aiomqtt.Message]:
    """What a new subscriber is handed: the retained messages under topic_filter, by topic."""
    found: dict[str, aiomqtt.Message] = {}
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic_filter)

        async def collect() -> None:
            async for message in client.messages:
                if message.retain:
                    found[str(message.topic)] = message

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), listen_s)
    return found


async def withdrawn(host: str, port: int, prefix: str) -> None:
    """Wait (bounded) until a new subscriber under prefix finds the publisher's state
    "offline" and no market data."""
    deadline = time.monotonic() + WAIT_S
    found: dict[str, aiomqtt.Message] = {}
    while time.monotonic() < deadline:
        found = await retained_now(host, port, f"{prefix}/#", listen_s=0.5)
        states = [m.payload for topic, m in found.items() if topic.endswith("/state")]
        market_data = [topic for topic in found if topic.startswith(f"{prefix}/md/")]
        if states == [b"offline"] and not market_data:
            return
    pytest.fail(f"not withdrawn: retained {sorted(found)}")


def seq_of(found: dict[str, aiomqtt.Message], topic: str) -> int:
    return decode(found[topic].payload).seq


async def test_a_late_subscriber_finds_status_bbo_reference_and_publisher_state(
    mqtt_service: tuple[str, int],
) -> None:
    seed = BASE_SEED + 1
    print(f"mqtt late subscriber: IPX_SEED={BASE_SEED} run seed={seed}")
    host, port = mqtt_service
    market = two_instruments(seed)
    publisher = publisher_for(market, host, port)
    publisher.start()
    try:
        await wait_until(lambda: publisher.connected, "the publisher to connect")
        await drive(market, publisher, random.Random(seed), 100)
        await wait_until(lambda: publisher.buffered() == 0, "the buffer to drain")
        symbol = SYMBOLS[0]
        topics = {name: publisher.topic(symbol, name) for name in ("status", "bbo", "l2/snapshot")}
        md = await retained(
            host,
            port,
            f"{publisher.prefix}/md/{symbol}/#",
            3,
            lambda found: (
                seq_of(found, topics["bbo"]) == market.data.seq(TICKER, symbol)
                and seq_of(found, topics["l2/snapshot"]) == market.data.seq(L2, symbol)
                and seq_of(found, topics["status"]) == market.data.seq(STATUS, symbol)
            ),
        )
        status = decode(md[publisher.topic(symbol, "status")].payload)
        assert isinstance(status, Status)
        expected = market.data.snapshot(STATUS, symbol)
        assert isinstance(expected, Status)
        assert (status.phase, status.seq) == (expected.phase, expected.seq)
        bbo = decode(md[publisher.topic(symbol, "bbo")].payload)
        book = market.instrument(symbol).book
        assert isinstance(bbo, Ticker)
        assert bbo.best_bid_units == (book.best_bid() or (0, 0))[1]
        assert bbo.best_ask_units == (book.best_ask() or (0, 0))[1]
        snapshot = decode(md[publisher.topic(symbol, "l2/snapshot")].payload)
        assert same_book(snapshot, market.data.snapshot(L2, symbol))
        references = await retained(host, port, f"{publisher.prefix}/ref/instrument/+", 2)
        reference = msgspec.json.decode(references[publisher.reference_topic(symbol)].payload)
        terms = market.instrument(symbol).terms
        assert reference["patent_id"] == terms.patent_id
        assert reference["total_units"] == terms.total_units
        assert reference["tick_size"] == "0.10"
        state = await retained(host, port, publisher.state_topic(), 1)
        assert state[publisher.state_topic()].payload == b"online"
    finally:
        await publisher.stop()
    state = await retained(host, port, publisher.state_topic(), 1)
    assert state[publisher.state_topic()].payload == b"offline", "a clean stop says offline"


async def test_a_dropped_state_or_reference_message_is_sent_again(
    mqtt_service: tuple[str, int],
) -> None:
    # After a reconnection the state and reference messages queue behind what is buffered; a
    # flood can push them out before they are sent. Only those are never made again, so a
    # drop of one must bring them all back, or the broker keeps "offline" (the Will's) for good.
    host, port = mqtt_service
    market = two_instruments(BASE_SEED + 7)
    publisher = publisher_for(market, host, port, buffer_max=50)
    publisher.start()
    try:
        await wait_until(lambda: publisher.connected, "the publisher to connect")
        await wait_until(lambda: publisher.buffered() == 0, "the buffer to drain")
        topics = [publisher.state_topic(), *map(publisher.reference_topic, SYMBOLS)]
        async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            for topic in topics:  # Clear them, to see them come back.
                await client.publish(topic, b"", qos=1, retain=True)
        publisher._enqueue_reconnect()  # As a reconnection does; then, at once, the flood:
        flood = [market.data.snapshot(TICKER, SYMBOLS[0])] * 60
        publisher.publish_messages(flood)
        assert publisher.stats.dropped > 0
        found = await retained(
            host,
            port,
            f"{publisher.prefix}/#",
            len(topics),
            lambda found: all(topic in found and found[topic].payload for topic in topics),
        )
        assert found[publisher.state_topic()].payload == b"online"
    finally:
        await publisher.stop()


async def test_once_the_state_may_not_be_shown_it_says_offline_and_clears_what_it_retained(
    mqtt_service: tuple[str, int],
) -> None:
    seed = BASE_SEED + 8
    print(f"mqtt withdrawn: IPX_SEED={BASE_SEED} run seed={seed}")
    host, port = mqtt_service
    market = two_instruments(seed)
    proxy = Proxy(host, port)  # Cut below: a reconnection must not bring the state back.
    await proxy.open()
    # A snapshot refresh is due every second: a withdrawn publisher must not make it either.
    publisher = publisher_for(market, "127.0.0.1", proxy.port, snapshot_expiry_s=2)
    publisher.start()
    prefix = publisher.prefix
    live: list[aiomqtt.Message] = []  # Published while subscribed (not handed as retained).

    async def watch(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not message.retain:
                live.append(message)

    try:
        await wait_until(lambda: publisher.connected, "the publisher to connect")
        await drive(market, publisher, random.Random(seed), 100)
        figures = liquidity.Liquidity(market.exchange, {"USD": 2})
        for symbol in SYMBOLS:
            publisher.publish_liquidity(figures.update(symbol, market.ts_ns))
        await wait_until(lambda: publisher.buffered() == 0, "the buffer to drain")
        # Every retained market-data topic of both symbols is there: l2/snapshot, bbo,
        # status and liquidity.
        await retained(host, port, f"{prefix}/md/#", 4 * len(SYMBOLS))
        async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(f"{prefix}/#")
            watcher = asyncio.create_task(watch(client))
            try:
                publisher.state_showable = lambda: False  # As the gateway's, after a failure.
                await withdrawn(host, port, prefix)
                await proxy.cut()
                await wait_until(lambda: not publisher.connected, "the publisher to see the cut")
                await proxy.open()
                await wait_until(lambda: publisher.stats.connections >= 2, "the reconnection")
                await asyncio.sleep(1.5)  # Past a refresh and several snapshot intervals.
                await withdrawn(host, port, prefix)
            finally:
                watcher.cancel()
        # What was published before the withdrawal may arrive first (a refresh): from the
        # first "offline" on, nothing but "offline" and emptied retained topics.
        payloads = [m.payload for m in live]
        after = live[payloads.index(b"offline") :]
        said = [(str(m.topic), m.payload) for m in after if m.payload not in (b"", b"offline")]
        assert said == [], "after the withdrawal only offline and empty retained messages"
        assert any(str(m.topic).endswith("/l2/snapshot") and not m.payload for m in after)
    finally:
        await publisher.stop()
        with contextlib.suppress(AssertionError):
            await proxy.cut()
    state = await retained(host, port, publisher.state_topic(), 1)
    assert state[publisher.state_topic()].payload == b"offline"


class Proxy:
    """A TCP relay to the broker that the test can cut (every link closed, port refused)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, upstream_writer]

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65_536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


async def test_after_an_outage_it_republishes_snapshots_and_the_subscriber_resyncs(
    mqtt_service: tuple[str, int],
) -> None:
    seed = BASE_SEED + 2
    print(f"mqtt outage: IPX_SEED={BASE_SEED} run seed={seed}")
    host, port = mqtt_service
    rng = random.Random(seed)
    market = two_instruments(seed)
    proxy = Proxy(host, port)
    await proxy.open()
    # A small buffer, so the outage loses deltas the subscriber must notice; no periodic
    # snapshot within the test, so only the reconnection's snapshots can heal the gap.
    publisher = publisher_for(
        market, "127.0.0.1", proxy.port, buffer_max=40, snapshot_interval_s=60.0
    )
    publisher.start()
    try:
        await wait_until(lambda: publisher.connected, "the publisher to connect")
        async with subscribed(publisher, host, port) as subscriber:
            await drive(market, publisher, rng, 100)
            await wait_until(lambda: subscriber.caught_up(market), "the first catch-up")
            await proxy.cut()
            await wait_until(lambda: not publisher.connected, "the publisher to see the cut")
            await wait_until(lambda: subscriber.states[-1:] == [b"offline"], "the Last Will")
            await drive(market, publisher, rng, 150)  # Nothing reaches the broker meanwhile.
            assert publisher.stats.dropped > 0 and publisher.buffered() == 40
            snapshots_before = subscriber.snapshots
            await proxy.open()  # The same port again.
            await wait_until(lambda: publisher.connected, "the reconnection")
            await wait_until(lambda: subscriber.caught_up(market), "the resync")
            assert_books_equal(subscriber, market)
            assert subscriber.states[-1] == b"online"
            assert subscriber.snapshots == snapshots_before + len(SYMBOLS)
            assert subscriber.gaps >= 1, "the lost deltas went unnoticed"
            assert subscriber.resyncs >= 1
            gaps = subscriber.gaps
            await drive(market, publisher, rng, 50)  # And deltas flow on from the snapshots.
            await wait_until(lambda: subscriber.caught_up(market), "the deltas after it")
            assert_books_equal(subscriber, market)
            assert subscriber.gaps == gaps
            assert publisher.stats.connections >= 2
            print(
                f"dropped {publisher.stats.dropped}, gaps {subscriber.gaps}, resyncs "
                f"{subscriber.resyncs}, connections {publisher.stats.connections}"
            )
    finally:
        await publisher.stop()
        with contextlib.suppress(AssertionError):
            await proxy.cut()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_without_a_broker_the_buffer_drops_and_counts_and_never_blocks() -> None:
    seed = BASE_SEED + 3
    print(f"mqtt no broker: IPX_SEED={BASE_SEED} run seed={seed}")
    market = two_instruments(seed)
    publisher = publisher_for(market, "127.0.0.1", closed_port(), buffer_max=100)
    publisher.start()
    rng = random.Random(seed)
    enqueued = 0
    slowest_ns = 0
    loop_started = time.monotonic()
    for _ in range(300):
        start = len(market.messages)
        command = random_command(market, rng)
        if command is None:
            market.tick(SECOND)
        else:
            market.do(command, rng.randint(1, 5 * SECOND))
        batch = market.messages[start:]
        enqueued += sum(isinstance(m, BookL2 | Trades | Ticker | Status) for m in batch)
        started = time.perf_counter_ns()
        publisher.publish_messages(batch)
        slowest_ns = max(slowest_ns, time.perf_counter_ns() - started)
        await asyncio.sleep(0)
    await wait_until(lambda: publisher.stats.connect_failures >= 2, "a retry with backoff")
    assert not publisher.connected
    assert enqueued > 100
    assert publisher.buffered() == 100
    assert publisher.stats.dropped == enqueued - 100
    assert publisher.stats.published == 0
    assert slowest_ns < 20_000_000, f"publish_messages took {slowest_ns / 1e6:.1f} ms"
    stopped = time.monotonic()
    await publisher.stop(timeout_s=WAIT_S)
    assert time.monotonic() - stopped < WAIT_S
    print(
        f"enqueued {enqueued}, dropped {publisher.stats.dropped}, connect failures "
        f"{publisher.stats.connect_failures}, slowest publish_messages "
        f"{slowest_ns / 1_000:.0f} us, session {time.monotonic() - loop_started:.1f} s"
    )


@pytest.mark.skipif(shutil.which("mosquitto_sub") is None, reason="mosquitto_sub is not installed")
async def test_mosquitto_sub_reads_the_retained_snapshot_with_expiry_and_seq(
    mqtt_service: tuple[str, int],
) -> None:
    seed = BASE_SEED + 4
    print(f"mqtt mosquitto_sub: IPX_SEED={BASE_SEED} run seed={seed}")
    host, port = mqtt_service
    market = two_instruments(seed)
    publisher = publisher_for(market, host, port, snapshot_expiry_s=30)
    publisher.start()
    try:
        await wait_until(lambda: publisher.connected, "the publisher to connect")
        await drive(market, publisher, random.Random(seed), 50)
        symbol = SYMBOLS[0]
        seq = market.data.seq(L2, symbol)
        topic = publisher.topic(symbol, "l2/snapshot")
        await wait_until(
            lambda: publisher.buffered() == 0 and publisher.snapshot_seq(symbol) == seq,
            "the snapshot at the last seq",
        )
        fields: list[str] = []
        deadline = time.monotonic() + WAIT_S
        # The last snapshot may still be on its way to the broker: read until it is there.
        while f"seq:{seq}" not in fields[2:3] and time.monotonic() < deadline:
            process = await asyncio.create_subprocess_exec(
                "mosquitto_sub", "-h", host, "-p", str(port), "-V", "mqttv5", "-t", topic,
                "-C", "1", "-W", "5", "-F", "%r\t%E\t%P\t%p",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            output, _ = await asyncio.wait_for(process.communicate(), WAIT_S + 1)
            fields = output.decode().rstrip("\n").split("\t")
        retain, expiry, properties, payload = fields
        assert retain == "1"
        assert 0 < int(expiry) <= 30
        assert properties == f"seq:{seq}"
        snapshot = decode(payload)
        assert same_book(snapshot, market.data.snapshot(L2, symbol))
    finally:
        await publisher.stop()
