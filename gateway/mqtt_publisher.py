"""Public market data over MQTT v5 (aiomqtt): the WebSocket channels' messages, on topics.

Topics, under a prefix (default "ipx/v1"; tests use a unique one each):
- `{prefix}/md/{symbol}/trades`       every Trades update, QoS 0, not retained.
- `{prefix}/md/{symbol}/l2/delta`     every BookL2 update, QoS 0, not retained; user
                                      properties `seq` and `prev_seq`.
- `{prefix}/md/{symbol}/l2/snapshot`  a BookL2 snapshot, retained, with a message expiry
                                      (SNAPSHOT_EXPIRY_S): republished when the book's seq
                                      moved (at most once per snapshot interval), before its
                                      expiry runs out, and after every (re)connection.
- `{prefix}/md/{symbol}/bbo`          every Ticker message (best bid and ask, last price),
                                      retained.
- `{prefix}/md/{symbol}/status`       every Status message, retained.
- `{prefix}/md/{symbol}/liquidity`    every liquidity update the gateway gives it (on change
                                      and about once a second: gateway/liquidity.py),
                                      retained; payload `liquidity.encode(message)`.
- `{prefix}/ref/instrument/{symbol}`  the instrument's reference data (patent, units, tick),
                                      retained.
- `{prefix}/publisher/{identifier}/state`  "online", retained; the Last Will sets "offline"
                                      when the connection dies, a clean stop publishes it,
                                      and so does a withdrawal (below).
Payloads are exactly `market_data.encode(message)`, as on the WebSocket; book.l3 and
heartbeats are not published (the periodic snapshot's seq shows a lost last delta).

A subscriber rebuilds a book as on the WebSocket: subscribe to `l2/delta` first, then
`l2/snapshot`; apply the retained snapshot, then deltas (LocalBook); on a gap wait for the
next snapshot, which comes within one snapshot interval.

Withdrawal: once the state may not be shown any more (`state_showable` turns False: the
sequencer failed, so memory holds a batch the journal does not, or market data switched itself
off, so MarketData is frozen while the exchange trades on), the publisher withdraws, within a
snapshot interval and for good: behind what is buffered (durable when given) it publishes
state "offline" and an empty retained message on each symbol's `l2/snapshot`, `bbo`,
`status` and `liquidity` (which deletes the retained message, MQTT 5.0 section 3.3.1.3), and
from then on no snapshot, no "online" and no reference. A reconnection repeats the
withdrawal. So no subscriber, present or future, takes a frozen or never-written book for the
current one, as WebSocket subscribers are closed (1011) rather than left with it. Reference
data stays retained: it is the durable listing's. The restart publishes afresh.

Invariants:
- `publish_messages` never blocks and never awaits: it appends to a bounded buffer
  (BUFFER_MAX). When the buffer is full the oldest entry is dropped and counted, and every
  snapshot is republished at the next interval, so subscribers resync; a dropped state or
  reference message brings back state "online" and every reference at that interval too.
- Entries leave the buffer in the order they entered, in runs of at most DRAIN_MAX that are
  conflated (gateway/conflation.py) before sending. Snapshots are read from MarketData
  between two sequencer batches and enqueued behind the messages already given, so a
  snapshot never claims a seq whose delta has not been enqueued before it, and never shows
  state that is not yet durable (the sequencer handles, fsyncs and hands out a batch in one
  step of the event loop). Once a batch failed (its journal append raised, and memory holds
  what the journal does not), `state_showable` is False and no snapshot is read at all,
  periodic or after a reconnection: the publisher withdraws instead (above).
- After every (re)connection: state "online", every instrument's reference data and every
  snapshot (L2, bbo, status) are enqueued behind what is buffered; once withdrawn, the
  withdrawal instead.
- Reconnection backs off exponentially from BACKOFF_MIN_S to BACKOFF_MAX_S, reset by a
  successful connection.
- It logs on with the username and password it is given (none: anonymous). A broker that
  refuses them as not authorized is a WARNING at every try (an unreachable broker is INFO):
  retrying cannot mend a wrong password. The password is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import aiomqtt
import msgspec
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.client import MQTT_ERR_SUCCESS
from paho.mqtt.properties import Properties

from exchange.core import Exchange
from gateway import protocol
from gateway.conflation import conflate
from gateway.liquidity import LiquidityMessage
from gateway.liquidity import encode as encode_liquidity
from gateway.market_data import (
    L2,
    STATUS,
    TICKER,
    BookL2,
    MarketData,
    Message,
    Status,
    Ticker,
    Trades,
    encode,
)

DEFAULT_PREFIX = "ipx/v1"
BUFFER_MAX = 10_000  # Entries waiting for the broker.
SNAPSHOT_INTERVAL_S = 1.0  # How often changed snapshots are republished.
SNAPSHOT_EXPIRY_S = 60  # Message expiry of a retained snapshot; refreshed at half of it.
BACKOFF_MIN_S = 0.2
BACKOFF_MAX_S = 10.0
DRAIN_MAX = 1_024  # Queued entries taken, conflated and handed to paho at once.
PUBLISH_TIMEOUT_S = 5.0  # One publish to the broker; past it the connection counts as dead.
ONLINE, OFFLINE = b"online", b"offline"
PUBLISHED = (BookL2, Trades, Ticker, Status)  # The channels on MQTT: no book.l3, no heartbeat.
RETAINED_MARKET_DATA = ("l2/snapshot", "bbo", "status", "liquidity")  # Cleared on withdrawal.

log = logging.getLogger("ipx.mqtt")


class InstrumentReference(msgspec.Struct, frozen=True):
    """What `{prefix}/ref/instrument/{symbol}` carries: the patent and the trading terms."""

    symbol: str
    patent_id: str
    title: str
    jurisdiction: str
    cpc_class: str
    filing_date: str
    expiry_date: str
    currency: str
    tick_size: str  # Decimal string: the cash value of one tick per unit.
    lot_size_units: int
    total_units: int
    trading_mode: str


@dataclass(frozen=True)
class _Raw:
    # An entry that is not a channel message: state and reference data.
    topic: str
    payload: bytes
    retain: bool
    qos: int = 0


_Entry = Message | LiquidityMessage | _Raw


@dataclass
class PublisherStats:
    """Counters for /metrics: entries published, dropped (buffer full or lost), connections."""

    published: int = 0
    dropped: int = 0
    connections: int = 0
    connect_failures: int = 0
    last_journal_seq: int = 0  # Highest journal seq among the messages the broker took.
    conflated: int = 0  # Entries merged into others or superseded (gateway/conflation.py).


class MqttPublisher:
    """Publishes one exchange's market data to an MQTT v5 broker, reconnecting as needed.

    Usage: `start()` once the exchange is recovered, `publish_messages(messages)` from the
    sequencer's batch callback (after the fsync), `await stop()` at shutdown.
    """

    def __init__(
        self,
        exchange: Exchange,
        market_data: MarketData,
        hostname: str,
        port: int = 1883,
        *,
        prefix: str = DEFAULT_PREFIX,
        identifier: str = "ipx-gateway",
        buffer_max: int = BUFFER_MAX,
        snapshot_interval_s: float = SNAPSHOT_INTERVAL_S,
        snapshot_expiry_s: int = SNAPSHOT_EXPIRY_S,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        currency_digits: Mapping[str, int] | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._exchange = exchange
        self._market_data = market_data
        self.hostname, self.port = hostname, port
        self.username = username
        self._password = password  # Never logged.
        self.prefix = prefix.rstrip("/")
        self.identifier = identifier
        self._buffer: deque[_Entry] = deque()
        self._buffer_max = buffer_max
        self._snapshot_interval_s = snapshot_interval_s
        self._snapshot_expiry_s = snapshot_expiry_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._digits = dict(
            protocol.CURRENCY_DIGITS if currency_digits is None else currency_digits
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._snapshot_seqs: dict[str, int] = {}  # symbol -> L2 seq of its last snapshot.
        self._snapshot_at: dict[str, float] = {}  # symbol -> monotonic time of it.
        self._resnapshot = False  # Set by a drop: republish every snapshot next interval.
        self._reannounce = False  # Set by a drop of state or reference: republish them too.
        self._withdrawn = False  # For good: see "Withdrawal" in the module docstring.
        # Symbols whose market-data topics may hold a retained message (this run's, or an
        # earlier run's for a recovered instrument): what a withdrawal clears. Taken from
        # durable state only, never read from the state after a failure.
        self._retained_symbols: dict[str, None] = dict.fromkeys(self._symbols())
        self.connected = False
        self._sending = 0  # Entries of the run being handed to the broker.
        self.stats = PublisherStats()
        # Called with the highest journal seq the broker has taken, after each batch of
        # publishes that carried a channel message (publish lag).
        self.on_written: Callable[[int], None] | None = None
        self.enqueued_seq = 0  # Journal seq of the last channel message given to publish.
        # Whether the state the snapshots read (MarketData, the exchange's instruments) may be
        # shown. The gateway makes it False once the sequencer failed: memory then holds a
        # batch the journal does not (DESIGN.md section 2, rule 2). Asked in the same step as
        # each read, so no read can come between a failure and its answer.
        self.state_showable: Callable[[], bool] = lambda: True

    # Topics.

    def state_topic(self) -> str:
        return f"{self.prefix}/publisher/{self.identifier}/state"

    def topic(self, symbol: str, name: str) -> str:
        """The topic of one symbol's stream: trades, l2/delta, l2/snapshot, bbo, status."""
        return f"{self.prefix}/md/{symbol}/{name}"

    def reference_topic(self, symbol: str) -> str:
        return f"{self.prefix}/ref/instrument/{symbol}"

    # The caller's side: never blocks.

    def publish_messages(self, messages: Iterable[Message]) -> None:
        """Enqueue the channel messages of a batch, in order; drop the oldest when full."""
        symbols = self._retained_symbols
        for message in messages:
            if isinstance(message, PUBLISHED):
                self._enqueue(message)
                self.enqueued_seq = message.journal_seq
                symbols[message.symbol] = None
        self._wake.set()

    def publish_liquidity(self, message: LiquidityMessage) -> None:
        """Enqueue one liquidity update for its retained topic; drop the oldest when full."""
        self._enqueue(message)
        self._retained_symbols[message.symbol] = None
        self._wake.set()

    def snapshot_seq(self, symbol: str) -> int | None:
        """The L2 seq of the symbol's last enqueued snapshot; None before one."""
        return self._snapshot_seqs.get(symbol)

    def buffered(self) -> int:
        """Entries waiting for the broker: queued, or in the run being sent."""
        return len(self._buffer) + self._sending

    def _enqueue(self, entry: _Entry) -> None:
        buffer = self._buffer
        if len(buffer) >= self._buffer_max:
            dropped = buffer.popleft()
            self.stats.dropped += 1
            self._resnapshot = True
            if isinstance(dropped, _Raw):  # Nothing else would ever send it again.
                self._reannounce = True
        buffer.append(entry)

    def _enqueue_snapshots(self, symbols: Iterable[str], everything: bool) -> None:
        # Read between two batches (module docstring): consistent with what was enqueued.
        data = self._market_data
        now = time.monotonic()
        for symbol in symbols:
            self._enqueue(data.snapshot(L2, symbol))
            if everything:
                self._enqueue(data.snapshot(TICKER, symbol))
                self._enqueue(data.snapshot(STATUS, symbol))
            self._snapshot_seqs[symbol] = data.seq(L2, symbol)
            self._snapshot_at[symbol] = now
            self._retained_symbols[symbol] = None
        self._wake.set()

    def _enqueue_reconnect(self) -> None:
        # What a subscriber needs after an outage, behind whatever is still buffered. The
        # Will has just said "offline": a withdrawn publisher says it again and clears again
        # (the last withdrawal may not have reached the broker).
        if self._withdrawn or not self.state_showable():
            self._withdraw()
            return
        self._enqueue_announcements()
        self._enqueue_snapshots(self._symbols(), everything=True)

    def _enqueue_announcements(self) -> None:
        # The retained state and reference data, which are sent only now and then.
        self._reannounce = False
        self._enqueue(_Raw(self.state_topic(), ONLINE, retain=True, qos=1))
        for symbol in self._symbols():
            self._enqueue(_Raw(self.reference_topic(symbol), self._reference(symbol), True, 1))

    def _withdraw(self) -> None:
        # "offline", then every retained market-data topic emptied (module docstring).
        self._withdrawn = True
        self._resnapshot = self._reannounce = False
        self._enqueue(_Raw(self.state_topic(), OFFLINE, retain=True, qos=1))
        for symbol in self._retained_symbols:
            for name in RETAINED_MARKET_DATA:
                self._enqueue(_Raw(self.topic(symbol, name), b"", retain=True))
        self._wake.set()

    def _symbols(self) -> list[str]:
        return sorted(self._exchange.state.instruments)

    def _reference(self, symbol: str) -> bytes:
        instrument = self._exchange.state.instruments[symbol]
        terms, listing = instrument.terms, instrument.asset.listing
        digits = self._digits.get(terms.currency, protocol.DEFAULT_CURRENCY_DIGITS)
        whole, fraction = divmod(terms.tick_size_minor, 10**digits)
        tick = f"{whole}.{fraction:0{digits}d}" if digits else str(whole)
        return msgspec.json.encode(
            InstrumentReference(
                terms.symbol,
                terms.patent_id,
                listing.title,
                listing.jurisdiction,
                listing.cpc_class,
                listing.filing_date,
                listing.expiry_date,
                terms.currency,
                tick,
                terms.lot_size_units,
                terms.total_units,
                terms.trading_mode.value,
            )
        )

    # The broker's side.

    def start(self) -> asyncio.Task[None]:
        """Start connecting and publishing in a task of the running loop."""
        assert self._task is None, "started twice"
        self._task = asyncio.create_task(self.run(), name="ipx-mqtt-publisher")
        return self._task

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Publish what is buffered and "offline", disconnect; give up after timeout_s."""
        self._stopping = True
        self._wake.set()
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def run(self) -> None:
        """Connect, publish, and on any broker error reconnect with backoff, until stop()."""
        delay = self._backoff[0]
        while not self._stopping:
            try:
                await self._connected_session()
                delay = self._backoff[0]
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("MQTT connection to %s:%d lost: %s", self.hostname, self.port, exc)
                    delay = self._backoff[0]
                elif _refused_as_unauthorized(exc):
                    # A configuration error, not an outage: retrying will not mend it, so it
                    # must stand out in the log (every try, at most one per BACKOFF_MAX_S).
                    self.stats.connect_failures += 1
                    log.warning(
                        "MQTT broker %s:%d refused %s as not authorized: %s",
                        self.hostname,
                        self.port,
                        "an anonymous client" if self.username is None else repr(self.username),
                        exc,
                    )
                else:
                    self.stats.connect_failures += 1
                    log.info("MQTT broker %s:%d unreachable: %s", self.hostname, self.port, exc)
            except Exception:
                # Market data is derived: a bug here must not end publishing for good.
                log.exception("MQTT publisher failed; reconnecting")
                self.stats.connect_failures += not self.connected
            finally:
                self.connected = False
            if self._stopping:
                break
            await self._sleep_or_stop(delay)
            delay = min(delay * 2, self._backoff[1])

    async def _sleep_or_stop(self, delay_s: float) -> None:
        # A backoff that stop() cuts short; new messages only accumulate meanwhile.
        deadline = time.monotonic() + delay_s
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _connected_session(self) -> None:
        will = aiomqtt.Will(self.state_topic(), OFFLINE, qos=1, retain=True)
        client = aiomqtt.Client(
            self.hostname,
            self.port,
            username=self.username,
            password=self._password,
            identifier=self.identifier,
            protocol=aiomqtt.ProtocolVersion.V5,
            will=will,
            timeout=PUBLISH_TIMEOUT_S,
            keepalive=10,
        )
        client.pending_calls_threshold = 32  # Else it warns past 10.
        async with client:
            self.connected = True
            self.stats.connections += 1
            log.info("MQTT connected to %s:%d", self.hostname, self.port)
            self._enqueue_reconnect()
            watch = asyncio.create_task(self._watch(client))
            watch.add_done_callback(lambda _: self._wake.set())  # An idle drain sees it end.
            try:
                await self._drain(client, watch)
            finally:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await watch
            if self._stopping:
                await client.publish(self.state_topic(), OFFLINE, qos=1, retain=True)

    @staticmethod
    async def _watch(client: aiomqtt.Client) -> None:
        # Nothing is subscribed: the iterator only returns by raising when the link dies,
        # which is how an idle publisher notices an outage.
        async for _ in client.messages:
            pass

    async def _drain(self, client: aiomqtt.Client, watch: asyncio.Task[None]) -> None:
        buffer = self._buffer
        next_snapshot = time.monotonic() + self._snapshot_interval_s
        while True:
            if watch.done():
                watch.result()  # Raises the MqttError of the lost link.
                raise aiomqtt.MqttError("the connection closed")
            now = time.monotonic()
            if now >= next_snapshot:
                self._periodic_snapshots(now)
                next_snapshot = now + self._snapshot_interval_s
            if not buffer:
                if self._stopping:
                    return
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(0.0, next_snapshot - now))
                continue
            # What is queued is sent as one run, conflated (gateway/conflation.py): under load
            # the run grows and fewer, merged messages say the same.
            run = [buffer.popleft() for _ in range(min(len(buffer), DRAIN_MAX))]
            batch = conflate(run)
            self.stats.conflated += len(run) - len(batch)
            self._sending = len(batch)
            try:
                await self._publish_batch(client, batch)
            finally:
                self._sending = 0

    async def _publish_batch(self, client: aiomqtt.Client, batch: list[_Entry]) -> None:
        # QoS 0 packets go straight to aiomqtt's paho client, which queues them in order and
        # writes them from the event loop; only the last publish of the run (or a QoS 1 one)
        # is awaited through aiomqtt, and its confirmation (written, for QoS 0) means every
        # packet before it was written too. So a run costs a few event-loop turns whatever
        # its length, and paho never holds more than one run: awaiting each publish instead
        # (gathered 16 at a time) left the publisher seconds behind a busy sequencer.
        paho = client._client  # Private to aiomqtt (2.x): the one way to skip its per-publish wait.
        sent = 0
        try:
            for index, entry in enumerate(batch):
                packet = self._packet(entry)
                if packet is not None:
                    topic, payload, qos, retain, properties = packet
                    if qos or index == len(batch) - 1:
                        await client.publish(topic, payload, qos, retain, properties)
                    else:
                        info = paho.publish(topic, payload, 0, retain, properties)
                        if info.rc != MQTT_ERR_SUCCESS:
                            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
                sent += 1
        except BaseException:
            self.stats.published += sent
            # The rest of the run may or may not have gone: the snapshots will tell.
            self.stats.dropped += len(batch) - sent
            raise
        self.stats.published += sent
        seqs = [entry.journal_seq for entry in batch if not isinstance(entry, _Raw)]
        if seqs:
            self.stats.last_journal_seq = max(self.stats.last_journal_seq, *seqs)
            if self.on_written is not None:
                self.on_written(self.stats.last_journal_seq)

    def _periodic_snapshots(self, now: float) -> None:
        if not self.state_showable():
            if not self._withdrawn:
                self._withdraw()
            return
        refresh_s = self._snapshot_expiry_s / 2
        everything, self._resnapshot = self._resnapshot, False
        data = self._market_data
        due = [
            symbol
            for symbol in self._symbols()
            if everything
            or self._snapshot_seqs.get(symbol) != data.seq(L2, symbol)
            or now - self._snapshot_at.get(symbol, 0.0) >= refresh_s
        ]
        if self._reannounce:
            self._enqueue_announcements()
        else:
            for symbol in due:
                if symbol not in self._snapshot_seqs:  # Listed since the last connection.
                    reference = self._reference(symbol)
                    self._enqueue(_Raw(self.reference_topic(symbol), reference, True, 1))
        self._enqueue_snapshots(due, everything)

    def _packet(self, entry: _Entry) -> tuple[str, bytes, int, bool, Properties | None] | None:
        # (topic, payload, qos, retain, properties) of an entry; None for one not sent.
        if isinstance(entry, _Raw):
            return entry.topic, entry.payload, entry.qos, entry.retain, None
        symbol = entry.symbol
        properties = _JSON_ONLY
        if isinstance(entry, BookL2):
            if entry.type == "snapshot":
                properties = packed_properties(self._snapshot_expiry_s, [("seq", str(entry.seq))])
                topic, retain = self.topic(symbol, "l2/snapshot"), True
            else:
                user = [("seq", str(entry.seq)), ("prev_seq", str(entry.prev_seq))]
                properties = packed_properties(None, user)
                topic, retain = self.topic(symbol, "l2/delta"), False
        elif isinstance(entry, Trades):
            if entry.type == "snapshot":
                return None
            topic, retain = self.topic(symbol, "trades"), False
        elif isinstance(entry, Ticker):
            topic, retain = self.topic(symbol, "bbo"), True
        elif isinstance(entry, LiquidityMessage):
            return self.topic(symbol, "liquidity"), encode_liquidity(entry), 0, True, properties
        else:
            topic, retain = self.topic(symbol, "status"), True
        return topic, encode(entry), 0, retain, properties


# CONNACK codes of a refused user: MQTT 3.1.1 (4 bad user name or password, 5 not
# authorized) and MQTT 5 (0x86 bad user name or password, 0x87 not authorized, 0x8C bad
# authentication method).
_UNAUTHORIZED_CODES = frozenset((4, 5, 0x86, 0x87, 0x8C))


def _refused_as_unauthorized(error: aiomqtt.MqttError) -> bool:
    # aiomqtt raises MqttConnectError with the CONNACK's code (a paho ReasonCode, or an int);
    # other MqttCodeErrors carry paho's own error numbers, which reuse 4 and 5.
    if not isinstance(error, MqttConnectError):
        return False
    return getattr(error.rc, "value", error.rc) in _UNAUTHORIZED_CODES


class PackedProperties(Properties):
    """MQTT v5 PUBLISH properties, packed here in the byte order paho's own packing uses.

    paho builds a Properties object attribute by attribute and packs it by scanning every
    property name: ~50 us a message, most of a delta's cost on the exchange's event loop.
    paho's publish only ever calls pack() on the object it is given.
    """

    def __init__(self, packed: bytes) -> None:  # Skips paho's __init__ on purpose.
        object.__setattr__(self, "packed", packed)

    def pack(self) -> bytes:
        packed: bytes = object.__getattribute__(self, "packed")
        return packed


def packed_properties(
    expiry_s: int | None, user: list[tuple[str, str]], content_type: str = "application/json"
) -> PackedProperties:
    """Pack MessageExpiryInterval (0x02), ContentType (0x03), UserProperty (0x26) pairs."""
    body = bytearray()
    if expiry_s is not None:
        body += b"\x02" + expiry_s.to_bytes(4, "big")
    body += b"\x03" + _utf8(content_type)
    for key, value in user:
        body += b"\x26" + _utf8(key) + _utf8(value)
    return PackedProperties(_variable_byte_integer(len(body)) + bytes(body))


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def _variable_byte_integer(value: int) -> bytes:
    # MQTT 5.0 section 1.5.5: 7 bits per byte, low first, high bit set while more follow.
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


_JSON_ONLY = packed_properties(None, [])  # Shared: only ever read.
