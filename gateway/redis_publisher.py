"""Publish market data and operator events to Redis Streams (a fan-out layer, never the truth).

Keys (the `{...}` hash tag keeps one instrument's keys in one Redis Cluster slot):
- `{prefix}:{SYMBOL}:events`  a stream of every market-data message of the symbol (book.l2,
                              book.l3, trades, ticker, status; never heartbeats), trimmed with
                              `MAXLEN ~ stream_max`. Fields: journal_seq, channel, symbol and
                              data (the message as sent on the WebSocket, JSON).
- `{prefix}:operator:events`  a stream of operator events: phase changes (halts included),
                              listings, issuance, offerings, royalty distributions. Fields:
                              journal_seq, type and data (the event, JSON).
- `{prefix}:{SYMBOL}:ticker`  a hash: the last ticker's fields and its journal_seq.
- `{prefix}:{SYMBOL}:bbo`     a hash: best_bid, best_bid_units, best_ask, best_ask_units and
                              journal_seq ("" for an empty side's price).
- `{prefix}:publisher`        a hash: last_journal_seq, of the last outcome written (every
                              outcome is published, with or without entries).

Entry ids are `<journal_seq>-<index>` (index counts the outcome's entries in that stream), so
the ids rise with the journal and writing an entry twice is refused by Redis itself ("ID equal
or smaller than the target stream top item"). That makes a resend after a lost connection
idempotent even when the pipeline was half executed: no duplicate, whatever broke where.

Another journal's keys: a new exchange (its journal starts again at seq 1), or a journal
replaced by a shorter one, needs fresh keys (`ipx serve --redis-prefix`, or delete the keys):
Redis refuses every entry whose id is not above its stream's top. Given the journal's seq at
start (`journal_seq`, as run_server does), the publisher tells a resend from such a loss: an
entry above that seq is new in this run, so unless its pipeline failed before (a resend),
Redis refusing it means the keys hold another journal's entries. It checks once per run, when
it first reaches Redis: stored seqs (`{prefix}:publisher`, the operator stream's top) ahead of
the journal are logged as an ERROR naming the way out; and it counts the outcomes Redis
refused (`stats.outcomes_refused`, /readyz, ipx_publisher_refused_total), never as written.
The exchange keeps running: Redis is a fan-out layer, and may not even be reachable at start.

Outages: `publish` only appends the outcome to an in-memory backlog and returns; a background
task writes the backlog in pipelines, and on a connection error keeps the unwritten outcomes,
waits (backoff from BACKOFF_MIN_S doubling to BACKOFF_MAX_S) and reconnects. Re-deriving from
the journal was rejected: the publisher would need the journal reader and a MarketData of its
own replaying from a snapshot, a second copy of the sequencer's work for a layer that is not
the source of truth. The backlog is bounded (backlog_max outcomes): past it the oldest outcomes
are dropped and counted, and when writing resumes a `gap` entry (fields journal_seq = the last
dropped, first_journal_seq, dropped_outcomes) is written to the operator stream and to every
instrument stream that lost entries, at id `<last dropped seq>-GAP_INDEX`, between the entries
on either side. A consumer that needs every event reads the journal (or the WebSocket
snapshots) from first_journal_seq.

Market data stopped: when market data switches itself off (it raised; the exchange trades on
without it), the gateway calls `market_data_stopped`. With the first write that reaches that
outcome, every instrument stream gets a `stopped` entry (fields journal_seq = the last outcome
of that write, channel "stopped", first_journal_seq = the first outcome without market data)
at id `<journal_seq>-STOP_INDEX`, after everything that write holds, and the ticker and bbo
hashes are deleted: the stream says it ends, and nobody reads a frozen best bid as the
current one (WebSocket subscribers are closed with 1011, MQTT withdraws its retained data).
The restart publishes market data afresh. A stop still unwritten at `close` is lost, as the
outcomes are; the next run's tickers overwrite the hashes.

Across runs: what a run could not write before it stopped (Redis away at shutdown; `close`
counts it as dropped and logs the range) is a gap too. A run's first write reads the last
journal seq the stream holds (`{prefix}:publisher`); when its own first outcome comes later
than the next one, it first writes a gap covering the seqs between, to the operator stream and
to every instrument stream that exists (which of them lost entries is not known any more).

Invariants:
- `publish` never awaits, never blocks and never raises on a Redis failure.
- Per stream, entries are written in journal order, each at most once (ids above).
- Within the backlog bound nothing is lost: an outcome leaves the backlog only after the
  pipeline holding it was executed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgspec
import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from exchange.core import Outcome
from exchange.events import (
    AssetListed,
    OfferingClosed,
    OfferingOpened,
    PhaseChanged,
    RoyaltyDistributed,
    SharesIssued,
)
from gateway.market_data import Heartbeat, Message, Ticker, channel_of, encode

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "ipx"
STREAM_MAX = 100_000  # Entries kept per instrument stream (MAXLEN ~, so about this many).
OPERATOR_STREAM_MAX = 10_000
BACKLOG_MAX = 100_000  # Outcomes kept while Redis is away; older ones are dropped (a gap).
BATCH_MAX = 512  # Outcomes per pipeline.
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
SOCKET_TIMEOUT_S = 2.0
GAP_INDEX = 1 << 62  # Above any entry index of one outcome; below 2**64, Redis's limit.
STOP_INDEX = GAP_INDEX + 1  # The market-data stop: after the gap of its seq too.
OPERATOR_EVENTS = (
    PhaseChanged,
    AssetListed,
    SharesIssued,
    OfferingOpened,
    OfferingClosed,
    RoyaltyDistributed,
)

_event_encoder = msgspec.json.Encoder()


def stream_key(prefix: str, symbol: str) -> str:
    """Return the events stream of one instrument."""
    return f"{prefix}:{{{symbol}}}:events"


def operator_key(prefix: str) -> str:
    """Return the operator events stream."""
    return f"{prefix}:operator:events"


def ticker_key(prefix: str, symbol: str) -> str:
    """Return the hash holding the last ticker of one instrument."""
    return f"{prefix}:{{{symbol}}}:ticker"


def bbo_key(prefix: str, symbol: str) -> str:
    """Return the hash holding the best bid and offer of one instrument."""
    return f"{prefix}:{{{symbol}}}:bbo"


def publisher_key(prefix: str) -> str:
    """Return the hash holding the journal seq of the last outcome written."""
    return f"{prefix}:publisher"


@dataclass
class PublisherStats:
    """Counters for /metrics and tests."""

    outcomes_written: int = 0
    entries_written: int = 0
    outcomes_dropped: int = 0
    gaps_written: int = 0
    connection_errors: int = 0
    last_journal_seq: int = 0  # Of the last outcome written (or refused).
    # Refused by Redis, their ids not above the streams' tops: another journal's keys (module
    # docstring). A refused outcome is not counted as written, nor its entries.
    outcomes_refused: int = 0
    entries_refused: int = 0


@dataclass
class _Gap:
    first_journal_seq: int
    last_journal_seq: int
    dropped_outcomes: int = 0
    keys: dict[str, None] = field(default_factory=dict)  # Streams that lost entries, ordered.


_Batch = tuple[Outcome, Sequence[Message]]


def _first_seq(item: _Batch | _Gap) -> int:
    return item.first_journal_seq if isinstance(item, _Gap) else item[0].seq


def _last_seq(item: _Batch | _Gap) -> int:
    return item.last_journal_seq if isinstance(item, _Gap) else item[0].seq


class RedisPublisher:
    """Writes outcomes and their market-data messages to Redis from a background task.

    Use: `publisher.start()` inside the event loop, `publisher.publish(outcome, messages)`
    after each outcome's journal record is durable, `await publisher.close()` on shutdown.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        stream_max: int = STREAM_MAX,
        operator_stream_max: int = OPERATOR_STREAM_MAX,
        backlog_max: int = BACKLOG_MAX,
        batch_max: int = BATCH_MAX,
        journal_seq: int | None = None,
    ) -> None:
        """Prepare a publisher (no connection yet: `start` begins the background writer).

        journal_seq: the journal's last seq when this run starts, so that Redis refusing a
        later entry is known for a loss, not a resend (module docstring, "Another journal's
        keys"); None: unknown, every refusal is taken for a resend.
        """
        self.url = url
        self.prefix = prefix
        self.stream_max = stream_max
        self.operator_stream_max = operator_stream_max
        self.backlog_max = backlog_max
        self.batch_max = batch_max
        self.stats = PublisherStats()
        # Outcomes in journal order, and where outcomes were dropped, one _Gap in their place.
        self._backlog: deque[_Batch | _Gap] = deque()
        self._outcomes = 0  # Outcomes (not gaps) in the backlog.
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: redis.Redis | None = None
        self._closing = False
        self._connected = False
        self._resumed = False  # Whether the gap since the last run's last write was looked for.
        self.journal_seq = journal_seq
        # Entries up to this seq may be in Redis already (an earlier run of this journal wrote
        # them, or a pipeline failed halfway): Redis refusing one is a resend. None: any.
        self._resend_through = journal_seq
        self._journal_checked = journal_seq is None  # Stored seqs compared with it (once).
        self._other_journal_reported = False
        self._in_flight: list[_Batch | _Gap] = []  # The chunk being written, if any.
        # A market-data stop not yet written: (first journal seq without market data, the
        # symbols whose streams it ends).
        self._stop: tuple[int, tuple[str, ...]] | None = None
        # Called with the last journal seq of each write that reached Redis (publish lag).
        self.on_written: Callable[[int], None] | None = None
        self.enqueued_seq = 0  # Journal seq of the last outcome given to publish.

    @property
    def connected(self) -> bool:
        """Whether the last write reached Redis (False before the first and after an error)."""
        return self._connected

    @property
    def backlog(self) -> int:
        """Outcomes waiting to be written."""
        return self._outcomes

    def start(self) -> None:
        """Start the background writer on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="redis-pub")

    def publish(self, outcome: Outcome, messages: Sequence[Message]) -> None:
        """Enqueue one outcome and the messages MarketData made of it; never waits."""
        self._backlog.append((outcome, messages))
        self.enqueued_seq = outcome.seq
        self._outcomes += 1
        if self._outcomes > self.backlog_max:
            self._trim()
        self._wake.set()

    def market_data_stopped(self, first_journal_seq: int, symbols: Sequence[str]) -> None:
        """End the symbols' streams from first_journal_seq on (module docstring); never waits.

        Call once the outcome first_journal_seq was given to `publish`.
        """
        self._stop = (first_journal_seq, tuple(symbols))
        self._wake.set()

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the backlog is written; return False if timeout_s passed first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._backlog or self._writing:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    async def close(self, timeout_s: float = 1.0) -> None:
        """Write what is left for at most timeout_s, then stop the writer and disconnect.

        What is still unwritten then is counted as dropped; the next run's first write puts a
        gap entry where it belongs (module docstring, "Across runs").
        """
        await self.flush(timeout_s)
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._disconnect()
        # The chunk being written came off the front of the backlog: together, in journal order.
        unwritten = [*self._in_flight, *self._backlog]
        self._outcomes += sum(not isinstance(item, _Gap) for item in self._in_flight)
        self._in_flight = []
        if self._outcomes:
            self.stats.outcomes_dropped += self._outcomes
            log.warning(
                "redis publisher: %d outcomes (journal seqs %d to %d) not written at shutdown; "
                "the next run marks them as a gap",
                self._outcomes,
                _first_seq(unwritten[0]),
                _last_seq(unwritten[-1]),
            )
        self._backlog.clear()
        self._outcomes = 0

    # The background writer.

    _writing = False  # A chunk is out of the backlog, in a pipeline.

    def _trim(self) -> None:
        # Drop the oldest outcomes beyond the bound; one gap, left in their place, covers them
        # and any gap they were next to (gaps only arise at the front, so they stay ordered).
        gap: _Gap | None = None
        backlog = self._backlog
        while self._outcomes > self.backlog_max or (backlog and isinstance(backlog[0], _Gap)):
            item = backlog.popleft()
            if isinstance(item, _Gap):
                if gap is None:
                    gap = item
                else:
                    gap.last_journal_seq = item.last_journal_seq
                    gap.dropped_outcomes += item.dropped_outcomes
                    gap.keys.update(item.keys)
                continue
            outcome, messages = item
            if gap is None:
                gap = _Gap(outcome.seq, outcome.seq)
            gap.last_journal_seq = outcome.seq
            gap.dropped_outcomes += 1
            for message in messages:
                if not isinstance(message, Heartbeat):
                    gap.keys[stream_key(self.prefix, message.symbol)] = None
            self._outcomes -= 1
            self.stats.outcomes_dropped += 1
        if gap is not None:
            backlog.appendleft(gap)

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        if not self._journal_checked:
            # Tell at start, before any outcome, whether the keys are another journal's; with
            # Redis away the first write does (its failure is the writer's to report).
            try:
                await self._check_journal(self._connect())
            except (redis.RedisError, OSError):
                await self._disconnect()
        while not self._closing:
            if not self._backlog:
                self._wake.clear()
                await self._wake.wait()
                continue
            chunk = [
                self._backlog.popleft() for _ in range(min(self.batch_max, len(self._backlog)))
            ]
            outcomes = sum(not isinstance(item, _Gap) for item in chunk)
            self._outcomes -= outcomes
            self._writing = True
            self._in_flight = chunk  # Unwritten if close() cancels the write.
            try:
                entries, refused = await self._write(chunk)
            except Exception as error:
                # A lost connection (or, were it a bug here, anything else: logged with its
                # traceback, since the writer must outlive it). Put the chunk back in front,
                # in order: outcomes dropped meanwhile were newer, so their gap stays behind
                # it. The bound may now drop some of the chunk.
                self._backlog.extendleft(reversed(chunk))
                self._in_flight = []
                if self._resend_through is not None:  # Part of it may be in Redis now.
                    self._resend_through = max(self._resend_through, _last_seq(chunk[-1]))
                self._outcomes += outcomes
                self._trim()
                self._connected = False
                self.stats.connection_errors += 1
                expected = (redis.ConnectionError, redis.TimeoutError, OSError)
                log.log(
                    logging.WARNING if isinstance(error, expected) else logging.ERROR,
                    "redis publisher: %r; retrying in %.2f s",
                    error,
                    backoff,
                    exc_info=not isinstance(error, expected),
                )
                await self._disconnect()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            finally:
                self._writing = False
            self._in_flight = []
            backoff = BACKOFF_MIN_S
            self._connected = True
            self.stats.outcomes_written += outcomes - refused
            self.stats.entries_written += entries
            self.stats.last_journal_seq = _last_seq(chunk[-1])
            if self.on_written is not None:
                self.on_written(self.stats.last_journal_seq)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    def _connect(self) -> redis.Redis:
        if self._client is None:
            # No retries inside redis-py: this loop owns retrying, with its backoff.
            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=SOCKET_TIMEOUT_S,
                socket_connect_timeout=SOCKET_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    async def _write(self, chunk: list[_Batch | _Gap]) -> tuple[int, int]:
        # Returns the entries written and the outcomes Redis refused (another journal's keys).
        client = self._connect()
        if not self._journal_checked:
            await self._check_journal(client)
        if not self._resumed:
            await self._mark_earlier_loss(client, chunk)
        pipe = client.pipeline(transaction=False)
        count = gaps = 0
        owners: list[_Batch | _Gap] = []  # The item each queued command was made of.
        for item in chunk:
            if isinstance(item, _Gap):
                count += self._add_gap(pipe, item)
                gaps += 1
            else:
                count += self._add_outcome(pipe, *item)
            owners += [item] * (len(pipe) - len(owners))
        last_seq = _last_seq(chunk[-1])
        # The stop goes with the write that reaches its seq, after all of it: every entry
        # before it in a stream is older, and later outcomes add none to these streams.
        stop = self._stop if self._stop is not None and last_seq >= self._stop[0] else None
        if stop is not None:
            count += self._add_stop(pipe, last_seq, *stop)
        pipe.hset(publisher_key(self.prefix), "last_journal_seq", last_seq)
        results = await pipe.execute(raise_on_error=False)
        for result in results:
            if isinstance(result, (redis.ConnectionError, redis.TimeoutError)):
                raise result
        refused: dict[int, _Batch | _Gap] = {}  # By id(): the items with a refused entry.
        for item, result in zip(owners, results, strict=False):
            if not isinstance(result, Exception):
                continue
            if "equal or smaller" not in str(result):
                # Not refused by its id: a bug in what we sent; say so, keep going.
                log.error("redis publisher: a command failed: %s", result)
            elif self._resend_through is not None and _last_seq(item) > self._resend_through:
                refused[id(item)] = item
                count -= 1
                self.stats.entries_refused += 1
        self.stats.gaps_written += gaps
        if stop is not None:
            self._stop = None  # Written.
        refused_outcomes = sum(not isinstance(item, _Gap) for item in refused.values())
        self.stats.outcomes_refused += refused_outcomes
        if refused and not self._other_journal_reported:
            self._report_other_journal(max(map(_last_seq, refused.values())), "refused an entry at")
        return count, refused_outcomes

    async def _check_journal(self, client: redis.Redis) -> None:
        # Once per run: seqs the keys hold beyond this journal's are another journal's (module
        # docstring, "Another journal's keys"); Redis will refuse this one's entries up to them.
        if self.journal_seq is None:
            return
        stored = await client.hget(publisher_key(self.prefix), "last_journal_seq")
        # redis-py types one reply for every client; XREVRANGE gives each entry its id.
        top = cast(
            list[tuple[bytes | str, Any]],
            await client.xrevrange(operator_key(self.prefix), count=1),
        )
        stored_seq = max(
            [0 if stored is None else int(stored)]
            + [int(_text_of(entry_id).split("-")[0]) for entry_id, _ in top]
        )
        self._journal_checked = True
        if stored_seq > self.journal_seq:
            self._report_other_journal(stored_seq, "hold entries up to")

    def _report_other_journal(self, seq: int, found: str) -> None:
        self._other_journal_reported = True
        log.error(
            "redis publisher: the keys under prefix %r %s journal seq %d, ahead of this "
            "exchange's journal (seq %d at start): another exchange (or a replaced journal) "
            "wrote them, and Redis refuses this exchange's entries up to that seq (counted as "
            "refused in /readyz and ipx_publisher_refused_total, not as written). Restart with "
            "another --redis-prefix, or delete the keys under %r (redis-cli --scan --pattern "
            "'%s:*' | xargs redis-cli del)",
            self.prefix,
            found,
            seq,
            self.journal_seq,
            f"{self.prefix}:",
            self.prefix,
        )

    async def _mark_earlier_loss(self, client: redis.Redis, chunk: list[_Batch | _Gap]) -> None:
        # Once per run, before its first write: outcomes between the last one an earlier run
        # wrote and this run's first were never written (that run stopped with them unwritten).
        stored = await client.hget(publisher_key(self.prefix), "last_journal_seq")
        first_seq = _first_seq(chunk[0])
        if stored is not None and int(stored) + 1 < first_seq:
            gap = _Gap(int(stored) + 1, first_seq - 1, first_seq - 1 - int(stored))
            pattern = f"{self.prefix}:{{*}}:events"  # Instrument streams (braces are literal).
            async for key in client.scan_iter(match=pattern, count=1_000):
                gap.keys[key.decode() if isinstance(key, bytes) else key] = None
            gap.keys = dict.fromkeys(sorted(gap.keys))
            chunk.insert(0, gap)  # Put back with the chunk if this write fails.
        self._resumed = True

    def _add_gap(self, pipe: Any, gap: _Gap) -> int:
        fields = {
            "journal_seq": gap.last_journal_seq,
            "channel": "gap",
            "first_journal_seq": gap.first_journal_seq,
            "dropped_outcomes": gap.dropped_outcomes,
        }
        entry_id = f"{gap.last_journal_seq}-{GAP_INDEX}"
        pipe.xadd(
            operator_key(self.prefix),
            fields,
            id=entry_id,
            maxlen=self.operator_stream_max,
            approximate=True,
        )
        for key in gap.keys:
            pipe.xadd(key, fields, id=entry_id, maxlen=self.stream_max, approximate=True)
        return 1 + len(gap.keys)

    def _add_stop(
        self, pipe: Any, seq: int, first_journal_seq: int, symbols: tuple[str, ...]
    ) -> int:
        fields = {"journal_seq": seq, "channel": "stopped", "first_journal_seq": first_journal_seq}
        entry_id = f"{seq}-{STOP_INDEX}"
        for symbol in symbols:
            key = stream_key(self.prefix, symbol)
            pipe.xadd(key, fields, id=entry_id, maxlen=self.stream_max, approximate=True)
            pipe.delete(ticker_key(self.prefix, symbol), bbo_key(self.prefix, symbol))
        return len(symbols)

    def _add_outcome(self, pipe: Any, outcome: Outcome, messages: Sequence[Message]) -> int:
        seq, prefix = outcome.seq, self.prefix
        indexes: dict[str, int] = {}
        count = 0
        for message in messages:
            if isinstance(message, Heartbeat):
                continue  # Liveness of a WebSocket feed; stream ids already show gaps.
            symbol = message.symbol
            index = indexes[symbol] = indexes.get(symbol, -1) + 1
            fields = {
                "journal_seq": seq,
                "channel": channel_of(message),
                "symbol": symbol,
                "data": encode(message),
            }
            pipe.xadd(
                stream_key(prefix, symbol),
                fields,
                id=f"{seq}-{index}",
                maxlen=self.stream_max,
                approximate=True,
            )
            count += 1
            if isinstance(message, Ticker):
                pipe.hset(ticker_key(prefix, symbol), mapping=_ticker_fields(message))
                pipe.hset(bbo_key(prefix, symbol), mapping=_bbo_fields(message))
        index = -1
        for event in outcome.events:
            if isinstance(event, OPERATOR_EVENTS):
                index += 1
                fields = {
                    "journal_seq": seq,
                    "type": str(event.__struct_config__.tag),
                    "data": _event_encoder.encode(event),
                }
                pipe.xadd(
                    operator_key(prefix),
                    fields,
                    id=f"{seq}-{index}",
                    maxlen=self.operator_stream_max,
                    approximate=True,
                )
                count += 1
        return count


def _text(value: str | None) -> str:
    return "" if value is None else value


def _text_of(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ticker_fields(ticker: Ticker) -> dict[str, str | int]:
    return {
        "journal_seq": ticker.journal_seq,
        "seq": ticker.seq,
        "ts_ns": ticker.ts_ns,
        "last_price": _text(ticker.last_price),
        "best_bid": _text(ticker.best_bid),
        "best_bid_units": ticker.best_bid_units,
        "best_ask": _text(ticker.best_ask),
        "best_ask_units": ticker.best_ask_units,
        "volume_units": ticker.volume_units,
        "trade_count": ticker.trade_count,
    }


def _bbo_fields(ticker: Ticker) -> dict[str, str | int]:
    return {
        "journal_seq": ticker.journal_seq,
        "best_bid": _text(ticker.best_bid),
        "best_bid_units": ticker.best_bid_units,
        "best_ask": _text(ticker.best_ask),
        "best_ask_units": ticker.best_ask_units,
    }
