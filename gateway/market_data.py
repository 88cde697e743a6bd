"""Public market data: the channel messages, computed from the core's outcomes.

After every `Exchange.handle`, the sequencer passes the outcome to `MarketData.on_outcome`,
which returns the push messages it caused, in the order they must be sent. Nothing here does
I/O: the server fans the messages out to subscribers (after the outcome's journal record is on
disk, DESIGN.md §2 rule 2), and the same frozen Structs can be published over MQTT or Redis
and described in AsyncAPI (one tagged union, `Message`, tagged by `channel`).

Channels (every message carries `channel`, `type`, `symbol`, `seq`, `journal_seq`, `ts_ns`):
- `book.l2`   top L2_DEPTH (50) aggregated levels per side. A snapshot lists them all; an
              update lists only the levels that changed, with ABSOLUTE quantities (0 deletes
              the level). A level that enters or leaves the top 50 because another level
              appeared or vanished is included too, so a client that applies the updates holds
              exactly the server's top 50. Both carry `checksum` (below).
- `book.l3`   every resting order (id, side, price, leaves; never its owner). A snapshot is a
              list of "add" entries in priority order; an update lists "add" (at the back of
              its level), "update" (new leaves, same priority) and "delete" entries. An order
              that lost priority (amended up or to a new price) is a "delete" then an "add".
- `trades`    every TradeExecuted, in order; a snapshot holds the last TRADES_SNAPSHOT_MAX.
- `ticker`    last price, best bid and ask with their quantities, volume and trade count,
              published when any of them changed.
- `status`    one update per PhaseChanged, IndicativeUpdated and AuctionUncrossed (in event
              order), each carrying the whole status after that event.
- `heartbeat` on demand (the server calls `heartbeat` every second per subscribed symbol):
              its `seq` is the journal seq and `channels` the latest seq of every channel of
              the symbol, so a client sees a lost last update even on a quiet book.

Sequence numbers: per (channel, symbol), starting at the run's base (nothing published yet).
An update has `seq` = previous + 1 and `prev_seq` = the previous; a snapshot has the channel's
current `seq` and no `prev_seq`. The server starts each run at `run_seq_base()` of its start:
its Unix time in milliseconds times 1,000, above every seq an earlier run could reach (a run
would have to publish a million messages a second on one channel of one symbol to reach the
next one's base; two starts in one millisecond cannot happen, recovery alone takes longer)
and below 2^53, which JSON readers hold exactly, until the year 2255. So after a restart a
client that kept its seq sees a gap (the first update's prev_seq is not its seq) and
resubscribes, instead of taking the new run's updates for ones it already has (the state of a
run's channels, and so their seqs, is not in the journal). A client applies an update only
when its `prev_seq` equals the last seq it applied, drops updates with `seq` <= that (already
in its snapshot), and on any other gap resubscribes for a snapshot. Heartbeat seqs never
count as updates.

Prices are decimal strings: price_ticks * tick_size_minor minor units written with the
currency's number of decimals ("10.50" for 1,050 minor units of USD), exactly, no float.
Quantities are integer units.

The L2 checksum, for clients in any language:
    text = ";".join(f"{price}:{quantity}" for the first 10 bids, best (highest) first)
         + "|" + ";".join(f"{price}:{quantity}" for the first 10 asks, best (lowest) first)
    checksum = CRC-32 (ISO-HDLC, as zlib.crc32) of the ASCII bytes of text, unsigned.
`price` is the decimal string exactly as sent, `quantity` the integer in base 10. An empty
side contributes an empty string. Example: bids [("10.10", 5), ("10.00", 7)] and asks
[("10.20", 3)] give "10.10:5;10.00:7|10.20:3", checksum 3620691252.

Books on demand (`books_on_demand=True`, as the server runs it): following a book for
book.l2 and book.l3 is most of this module's cost (measured: without it the gateway acked
~35% more orders a second), and is wasted while nobody subscribes. So a symbol's book is
followed only while it is watched (`watch_books`, once per subscription to its book.l2 or
book.l3), or always once `follow_every_book` was called (a sink such as Redis or MQTT takes
every message). An unfollowed book is marked stale; watching it, or taking its L2 snapshot,
first reloads it from the exchange. Its book.l2/book.l3 seqs do not move meanwhile: nobody
received an update, and a new subscriber starts from a snapshot. Trades, ticker and status
are always computed.

Invariants:
- After `on_outcome(o)` returned, the top L2_DEPTH levels of every followed book equal what the
  book.l2 snapshots and updates published so far add up to, and every resting order what
  book.l3 did.
  This rests on the core's rule that every order whose leaves change is named in an order
  event (accepted, filled, canceled, amended) of that outcome: only those orders are read
  back from the book (`book.order`), and the published levels are kept as totals per price
  from them, so an outcome costs work for the orders and levels it touched, never a read of
  the top 50 levels (measured: about 12 us per outcome on a random session with 200-300
  resting orders, against 31 us when each touched book's `l2(50)` was diffed).
- Messages depend only on the outcomes and the exchange state: replaying the journal into a
  fresh exchange and MarketData gives the same messages.
- Each (channel, symbol) seq rises by exactly 1 per update message.
"""

from __future__ import annotations

import enum
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Literal

import msgspec
from sortedcontainers import SortedList  # type: ignore[import-untyped]  # No stubs shipped.

from exchange.core import Exchange, Outcome
from exchange.currencies import decimal_text
from exchange.events import (
    AuctionUncrossed,
    IndicativeUpdated,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    Phase,
    PhaseChanged,
    SharesIssued,
    TradeExecuted,
)
from exchange.state import RECENT_TRADES_MAX, Instrument
from matching.book import OrderBook
from matching.orders import Side

L2_DEPTH = 50  # Levels per side on book.l2.
CHECKSUM_DEPTH = 10  # Levels per side covered by the book.l2 checksum.
TRADES_SNAPSHOT_MAX = RECENT_TRADES_MAX  # Trades in a trades snapshot: all the core keeps.
DEFAULT_CURRENCY_DIGITS = 2
_NO_PRICE = 1 << 126  # Above any price: "every ask is inside the top".
_BUY = Side.BUY  # A global load: enum attribute lookups and hashes are slow on this path.
PRICE_CACHE_MAX = 4_096  # Wire prices kept per symbol (formatting is most of an update's cost).

L2 = "book.l2"
L3 = "book.l3"
TRADES = "trades"
TICKER = "ticker"
STATUS = "status"
HEARTBEAT = "heartbeat"
CHANNELS = (L2, L3, TRADES, TICKER, STATUS)  # The channels with snapshots and updates.

MessageType = Literal["snapshot", "update"]
Level = tuple[str, int]  # (price, quantity_units); on the wire ["10.50", 7].


class L3Action(enum.Enum):
    ADD = "add"  # At the back of its price level.
    UPDATE = "update"  # New leaves, priority kept.
    DELETE = "delete"


class _Push(msgspec.Struct, frozen=True, tag_field="channel", omit_defaults=True):
    type: MessageType
    symbol: str
    seq: int
    journal_seq: int  # The journal record (command) that produced it; for a snapshot, the last.
    ts_ns: int


class BookL2(_Push, frozen=True, tag=L2):
    """Top L2_DEPTH levels (snapshot) or the levels that changed (update), best first."""

    bids: list[Level]
    asks: list[Level]
    checksum: int  # Of the book after this message; see the module docstring.
    prev_seq: int | None = None  # On updates only.


class L3Order(msgspec.Struct, frozen=True):
    action: L3Action
    order_id: int
    side: Side
    price: str
    quantity_units: int  # The order's leaves; 0 on a delete.


class BookL3(_Push, frozen=True, tag=L3):
    """Every resting order as "add" entries in priority order (snapshot), or its changes."""

    orders: list[L3Order]
    prev_seq: int | None = None


class TradePrint(msgspec.Struct, frozen=True):
    trade_id: int
    price: str
    quantity_units: int
    aggressor_side: Side | None  # None for an auction trade.
    ts_ns: int


class Trades(_Push, frozen=True, tag=TRADES):
    """The trades of one command in order (update), or the last TRADES_SNAPSHOT_MAX."""

    trades: list[TradePrint]
    prev_seq: int | None = None


class Ticker(_Push, frozen=True, tag=TICKER):
    """Last price, best bid and ask, volume and trade count, whenever one of them changes."""

    last_price: str | None  # None before the first trade.
    best_bid: str | None
    best_bid_units: int
    best_ask: str | None
    best_ask_units: int
    volume_units: int  # Since listing.
    trade_count: int
    prev_seq: int | None = None


class StatusEvent(enum.Enum):
    SNAPSHOT = "snapshot"
    PHASE_CHANGED = "phase_changed"
    INDICATIVE_UPDATED = "indicative_updated"
    AUCTION_UNCROSSED = "auction_uncrossed"


class Status(_Push, frozen=True, tag=STATUS):
    """The trading status after one phase change, indicative or uncross (or now: snapshot)."""

    event: StatusEvent
    phase: Phase
    reason: str  # Why the phase was entered ("" before any phase change).
    until_ts_ns: int  # When a timed phase ends; 0 otherwise.
    indicative_price: str | None  # While an auction is open and something crosses.
    indicative_volume_units: int
    indicative_imbalance_units: int
    auction_price: str | None  # Of the last uncross with volume; None before one.
    auction_volume_units: int
    prev_seq: int | None = None
    # An auction_uncrossed update's own volume: 0 when this auction ended without a trade (the
    # auction_* fields then still tell the last uncross that traded). 0 in any other message.
    uncross_volume_units: int = 0


class Heartbeat(_Push, frozen=True, tag=HEARTBEAT):
    """Liveness of one symbol: seq is the journal seq; channels their latest update seqs."""

    channels: dict[str, int]  # Channel -> its latest seq for this symbol.


Message = BookL2 | BookL3 | Trades | Ticker | Status | Heartbeat

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)


def encode(message: Message) -> bytes:
    """Encode a message as one JSON text frame (encode once, send to every subscriber)."""
    return _encoder.encode(message)


def decode(data: bytes | str) -> Message:
    """Decode a JSON push message into its typed form (for clients and tests)."""
    return _decoder.decode(data)


def channel_of(message: Message) -> str:
    """Return a message's channel (its tag: on the wire, but not an attribute)."""
    return str(message.__struct_config__.tag)


def checksum(bids: Iterable[Level], asks: Iterable[Level]) -> int:
    """Return the CRC32 of the top CHECKSUM_DEPTH levels, best first (module docstring)."""
    bid_text = ";".join(f"{price}:{quantity}" for price, quantity in list(bids)[:CHECKSUM_DEPTH])
    ask_text = ";".join(f"{price}:{quantity}" for price, quantity in list(asks)[:CHECKSUM_DEPTH])
    return zlib.crc32(f"{bid_text}|{ask_text}".encode("ascii"))


class _Side:
    """One side of a book as published: every level's total, the top L2_DEPTH on the wire.

    Kept from the book.l3 changes (each order's leaves at its price), so an outcome costs
    work for the levels it touched, not a read of the top 50 levels of the book.
    """

    __slots__ = ("bids", "prices", "top_cache", "totals")

    def __init__(self, bids: bool) -> None:
        self.bids = bids  # Best is highest.
        self.prices = SortedList()  # Ascending, every level with a positive total.
        self.totals: dict[int, int] = {}
        self.top_cache: tuple[list[tuple[int, int]], str] = ([], "")

    def threshold(self) -> int:
        # The worst price inside the top L2_DEPTH; with fewer levels, a price beyond any.
        count = len(self.prices)
        if count <= L2_DEPTH:
            return 0 if self.bids else _NO_PRICE
        return int(self.prices[count - L2_DEPTH] if self.bids else self.prices[L2_DEPTH - 1])

    def inside(self, price: int, threshold: int) -> bool:
        return price >= threshold if self.bids else price <= threshold

    def top(self, depth: int) -> list[tuple[int, int]]:
        """The best `depth` levels, best first."""
        prices = self.prices[-depth:][::-1] if self.bids else self.prices[:depth]
        totals = self.totals
        return [(price, totals[price]) for price in prices]

    def checksum_text(self, tracked: _Symbol) -> str:
        """The side's part of the checksum text (module docstring), cached while unchanged."""
        top = self.top(CHECKSUM_DEPTH)
        if top != self.top_cache[0]:
            text = ";".join([f"{tracked.price(price)}:{units}" for price, units in top])
            self.top_cache = (top, text)
        return self.top_cache[1]

    def apply(self, deltas: dict[int, int]) -> list[tuple[int, int]]:
        """Add leaves changes per price; return the top-L2_DEPTH changes to publish, best first.

        A level is published when its total changed inside the top, when it enters the top
        (with its total) and when it leaves it (with 0), whether it moved or others did.
        """
        before = self.threshold()
        totals, prices = self.totals, self.prices
        old: dict[int, int] = {}
        for price, delta in deltas.items():
            if not delta:
                continue
            total = totals.get(price, 0)
            old[price] = total
            now = total + delta
            assert now >= 0, f"level {price} would hold {now} units"
            if now:
                totals[price] = now
                if not total:
                    prices.add(price)
            else:
                del totals[price]
                prices.remove(price)
        if not old:
            return []
        after = self.threshold()
        inside = self.inside
        changes: list[tuple[int, int]] = []
        for price, total in old.items():
            now = totals.get(price, 0)
            was_in = total > 0 and inside(price, before)
            if now and inside(price, after):
                if not was_in or now != total:
                    changes.append((price, now))
            elif was_in:
                changes.append((price, 0))
        if after != before:
            # Untouched levels that crossed the edge of the top because others came or went.
            # Bids: those in [low, high) of the two edges; asks: those in (low, high].
            low, high = min(before, after), max(before, after)
            crossed = prices.irange(low, high, inclusive=(self.bids, not self.bids))
            entered = after < before if self.bids else after > before
            changes += [
                (price, totals[price] if entered else 0) for price in crossed if price not in old
            ]
        changes.sort(reverse=self.bids)
        return changes


class _Symbol:
    """What was last published for one symbol, to diff the next outcome against."""

    __slots__ = (
        "asks",
        "bids",
        "digits",
        "orders",
        "prices",
        "status",
        "tick_minor",
        "ticker",
        "trades",
    )

    def __init__(self, instrument: Instrument, digits: int) -> None:
        self.tick_minor = instrument.terms.tick_size_minor
        self.digits = digits
        self.prices: dict[int, str] = {}  # price_ticks -> wire price, a bounded cache.
        self.load_book(instrument)
        self.ticker = _ticker_values(instrument)
        # From the exchange's own state: after a restart it holds the last trades and why the
        # phase was entered, as a never-restarted server's market data would.
        self.trades: deque[TradePrint] = deque(
            (self.print_of(trade) for trade in instrument.recent_trades),
            maxlen=TRADES_SNAPSHOT_MAX,
        )
        # (phase, reason, until_ts_ns, indicative (price, volume, imbalance), last uncross).
        self.status: tuple[Phase, str, int, tuple[int, int, int], tuple[int, int]] = (
            instrument.phase,
            instrument.phase_reason,
            instrument.phase_until_ns,
            instrument.indicative,
            instrument.last_uncross,
        )

    def load_book(self, instrument: Instrument) -> None:
        """Take the book's resting orders and level totals as published (start, or resync)."""
        bids, asks = instrument.book.l3()
        # order_id -> (side, price_ticks, leaves_units), as published on book.l3.
        self.orders = {o.order_id: (o.side, o.price_ticks, o.leaves_units) for o in (*bids, *asks)}
        self.bids, self.asks = _Side(bids=True), _Side(bids=False)
        for side, price_ticks, leaves_units in self.orders.values():
            (self.bids if side is _BUY else self.asks).apply({price_ticks: leaves_units})

    def print_of(self, trade: TradeExecuted) -> TradePrint:
        return TradePrint(
            trade.trade_id,
            self.price(trade.price_ticks),
            trade.quantity_units,
            trade.aggressor_side,
            trade.ts_ns,
        )

    def price(self, price_ticks: int) -> str:
        text = self.prices.get(price_ticks)
        if text is None:
            if len(self.prices) >= PRICE_CACHE_MAX:
                self.prices.clear()
            text = self.prices[price_ticks] = decimal_text(
                price_ticks * self.tick_minor, self.digits
            )
        return text

    def levels(self, levels: Iterable[tuple[int, int]]) -> list[Level]:
        return [(self.price(price), quantity) for price, quantity in levels]

    def checksum(self) -> int:
        bids = self.bids.checksum_text(self)
        asks = self.asks.checksum_text(self)
        return zlib.crc32(f"{bids}|{asks}".encode("ascii"))


def _ticker_values(instrument: Instrument) -> tuple[int, int, int, int, int, int, int]:
    book = instrument.book
    bid = book.best_bid() or (0, 0)
    ask = book.best_ask() or (0, 0)
    return (
        instrument.last_price_ticks,
        *bid,
        *ask,
        instrument.volume_units,
        instrument.trade_count,
    )


SEQ_BASE_PER_MS = 1_000


def run_seq_base(unix_ms: int) -> int:
    """The seq a run started at this Unix time (ms) publishes its channels from (see above)."""
    return unix_ms * SEQ_BASE_PER_MS


class MarketData:
    """Turns each outcome of one exchange into the public channel messages it caused.

    Run it in the sequencer, right after each `Exchange.handle` and before the next, since it
    reads the books as that command left them.
    """

    def __init__(
        self,
        exchange: Exchange,
        currency_digits: Mapping[str, int] | None = None,
        *,
        books_on_demand: bool = False,
        seq_base: int = 0,
    ):
        """Start from the exchange as it is (fresh, or restored from the journal).

        Args:
            exchange: the exchange whose outcomes will be passed to `on_outcome`.
            currency_digits: decimals per currency code; DEFAULT_CURRENCY_DIGITS otherwise.
            books_on_demand: follow a symbol's book.l2 and book.l3 only while it is watched
                (`watch_books`); see "Books on demand" in the module docstring.
            seq_base: the seq of every channel before its first update (a server passes
                run_seq_base() of its start).
        """
        self._seq_base = seq_base
        self._exchange = exchange
        self._digits = dict(currency_digits or {})
        self._books_on_demand = books_on_demand
        self._book_watchers: dict[str, int] = {}  # symbol -> watchers (books on demand).
        self._stale_books: set[str] = set()  # Symbols whose published book is behind.
        self._seqs: dict[tuple[str, str], int] = {}
        self._journal_seq = exchange.seq
        self._ts_ns = exchange.state.last_ts_ns  # Snapshots before any outcome: as restored.
        self._symbols: dict[str, _Symbol] = {}
        for symbol in exchange.state.instruments:
            self._track(symbol)

    def _track(self, symbol: str) -> _Symbol:
        instrument = self._exchange.state.instruments[symbol]
        digits = self._digits.get(instrument.terms.currency, DEFAULT_CURRENCY_DIGITS)
        tracked = self._symbols[symbol] = _Symbol(instrument, digits)
        return tracked

    def _next_seq(self, channel: str, symbol: str) -> tuple[int, int]:
        key = (channel, symbol)
        previous = self._seqs.get(key, self._seq_base)
        self._seqs[key] = previous + 1
        return previous + 1, previous

    def seq(self, channel: str, symbol: str) -> int:
        """Return the seq of the last update published on (channel, symbol); the base if none."""
        return self._seqs.get((channel, symbol), self._seq_base)

    def on_outcome(self, outcome: Outcome) -> list[Message]:
        """Return the messages one outcome caused, in the order they must be sent."""
        self._journal_seq, self._ts_ns = outcome.seq, outcome.ts_ns
        messages: list[Message] = []
        touched: dict[str, None] = {}  # Symbols whose book may have changed, in event order.
        orders: dict[str, dict[int, bool]] = {}  # symbol -> order_id -> lost priority?
        trades: dict[str, list[TradePrint]] = {}
        for event in outcome.events:
            kind = event.__class__
            if kind is OrderAccepted or kind is OrderFilled or kind is OrderCanceled:
                touched[event.symbol] = None  # type: ignore[union-attr]
                ids = orders.setdefault(event.symbol, {})  # type: ignore[union-attr]
                ids[event.order_id] = ids.get(event.order_id, False)  # type: ignore[union-attr]
            elif kind is OrderAmended:
                assert isinstance(event, OrderAmended)
                touched[event.symbol] = None
                ids = orders.setdefault(event.symbol, {})
                ids[event.order_id] = ids.get(event.order_id, False) or not event.priority_kept
            elif kind is TradeExecuted:
                assert isinstance(event, TradeExecuted)
                touched[event.symbol] = None
                trades.setdefault(event.symbol, []).append(
                    self._symbols[event.symbol].print_of(event)
                )
            elif kind is PhaseChanged or kind is IndicativeUpdated or kind is AuctionUncrossed:
                messages.append(self._status_update(event))  # type: ignore[arg-type]
                touched[event.symbol] = None  # type: ignore[union-attr]
            elif kind is SharesIssued:
                assert isinstance(event, SharesIssued)
                self._track(event.symbol)
        for symbol, prints in trades.items():
            self._symbols[symbol].trades.extend(prints)
            seq, prev = self._next_seq(TRADES, symbol)
            messages.append(
                Trades("update", symbol, seq, outcome.seq, outcome.ts_ns, prints, prev_seq=prev)
            )
        on_demand, watchers = self._books_on_demand, self._book_watchers
        for symbol in touched:
            if on_demand and not watchers.get(symbol):
                self._stale_books.add(symbol)  # Nobody follows its book: only the ticker.
                self._ticker_update(symbol, self._exchange.state.instruments[symbol], messages)
            else:
                self._book_updates(symbol, orders.get(symbol, {}), messages)
        return messages

    def watch_books(self, symbol: str) -> None:
        """Follow the symbol's book.l2 and book.l3 from now on (counted; see unwatch_books).

        A book that was not followed is first brought up to date from the exchange, without
        an update: nobody received its updates meanwhile, and a subscriber starts from a
        snapshot, which carries the channel's seq as it stands.
        """
        self._book_watchers[symbol] = self._book_watchers.get(symbol, 0) + 1
        self._freshen(symbol)

    def unwatch_books(self, symbol: str) -> None:
        """Undo one watch_books; at zero (and books on demand) the book is no longer followed."""
        left = self._book_watchers.get(symbol, 0) - 1
        if left > 0:
            self._book_watchers[symbol] = left
        else:
            self._book_watchers.pop(symbol, None)

    def follow_every_book(self) -> None:
        """Follow every book from now on (a sink that takes every message, e.g. Redis)."""
        self._books_on_demand = False
        for symbol in list(self._stale_books):
            self._freshen(symbol)

    def _freshen(self, symbol: str) -> None:
        if symbol in self._stale_books:
            self._stale_books.discard(symbol)
            self._symbols[symbol].load_book(self._exchange.state.instruments[symbol])

    def _status_update(self, event: PhaseChanged | IndicativeUpdated | AuctionUncrossed) -> Status:
        tracked = self._symbols[event.symbol]
        phase, reason, until, indicative, uncross = tracked.status
        if isinstance(event, PhaseChanged):
            status_event = StatusEvent.PHASE_CHANGED
            phase, reason, until = event.phase, event.reason, event.until_ts_ns
        elif isinstance(event, IndicativeUpdated):
            status_event = StatusEvent.INDICATIVE_UPDATED
            indicative = (event.price_ticks, event.volume_units, event.imbalance_units)
        else:
            status_event = StatusEvent.AUCTION_UNCROSSED
            if event.volume_units:
                uncross = (event.price_ticks, event.volume_units)
        tracked.status = (phase, reason, until, indicative, uncross)
        seq, prev = self._next_seq(STATUS, event.symbol)
        status = self._status(event.symbol, "update", seq, status_event, prev)
        if isinstance(event, AuctionUncrossed) and event.volume_units:
            status = msgspec.structs.replace(status, uncross_volume_units=event.volume_units)
        return status

    def _status(
        self, symbol: str, kind: MessageType, seq: int, event: StatusEvent, prev: int | None
    ) -> Status:
        tracked = self._symbols[symbol]
        phase, reason, until, indicative, uncross = tracked.status
        return Status(
            kind,
            symbol,
            seq,
            self._journal_seq,
            self._ts_ns,
            event,
            phase,
            reason,
            until,
            tracked.price(indicative[0]) if indicative[1] else None,
            indicative[1],
            indicative[2],
            tracked.price(uncross[0]) if uncross[1] else None,
            uncross[1],
            prev_seq=prev,
        )

    def _book_updates(self, symbol: str, orders: dict[int, bool], out: list[Message]) -> None:
        tracked = self._symbols[symbol]
        instrument = self._exchange.state.instruments[symbol]
        if orders:
            deltas: tuple[dict[int, int], dict[int, int]] = ({}, {})  # Bids, asks.
            changes = self._order_changes(tracked, instrument.book, orders, deltas)
            bids = tracked.bids.apply(deltas[0])
            asks = tracked.asks.apply(deltas[1])
            if bids or asks:
                seq, prev = self._next_seq(L2, symbol)
                out.append(
                    BookL2(
                        "update",
                        symbol,
                        seq,
                        self._journal_seq,
                        self._ts_ns,
                        tracked.levels(bids),
                        tracked.levels(asks),
                        tracked.checksum(),
                        prev_seq=prev,
                    )
                )
            if changes:
                seq, prev = self._next_seq(L3, symbol)
                out.append(
                    BookL3("update", symbol, seq, self._journal_seq, self._ts_ns, changes, prev)
                )
        self._ticker_update(symbol, instrument, out)

    def _ticker_update(self, symbol: str, instrument: Instrument, out: list[Message]) -> None:
        tracked = self._symbols[symbol]
        values = _ticker_values(instrument)
        if values != tracked.ticker:
            tracked.ticker = values
            seq, prev = self._next_seq(TICKER, symbol)
            out.append(self._ticker(symbol, "update", seq, prev))

    @staticmethod
    def _order_changes(
        tracked: _Symbol,
        book: OrderBook,
        orders: dict[int, bool],
        deltas: tuple[dict[int, int], dict[int, int]],
    ) -> list[L3Order]:
        # The book.l3 entries for the orders an outcome named, and per side and price the
        # change of leaves they make (what book.l2 publishes).
        published = tracked.orders
        changes: list[L3Order] = []
        for order_id, requeued in orders.items():
            view = book.order(order_id)
            old = published.get(order_id)
            if old is not None:
                side_deltas = deltas[old[0] is not _BUY]
                side_deltas[old[1]] = side_deltas.get(old[1], 0) - old[2]
            if view is None:
                if old is not None:
                    del published[order_id]
                    changes.append(
                        L3Order(L3Action.DELETE, order_id, old[0], tracked.price(old[1]), 0)
                    )
                continue
            now = (view.side, view.price_ticks, view.leaves_units)
            side_deltas = deltas[now[0] is not _BUY]
            side_deltas[now[1]] = side_deltas.get(now[1], 0) + now[2]
            if old is not None and (requeued or old[1] != now[1]):
                changes.append(L3Order(L3Action.DELETE, order_id, old[0], tracked.price(old[1]), 0))
                old = None
            if old is None or old[2] != now[2]:
                action = L3Action.ADD if old is None else L3Action.UPDATE
                changes.append(L3Order(action, order_id, now[0], tracked.price(now[1]), now[2]))
            published[order_id] = now
        return changes

    def _ticker(self, symbol: str, kind: MessageType, seq: int, prev: int | None) -> Ticker:
        tracked = self._symbols[symbol]
        last, bid, bid_units, ask, ask_units, volume, count = tracked.ticker
        return Ticker(
            kind,
            symbol,
            seq,
            self._journal_seq,
            self._ts_ns,
            tracked.price(last) if last else None,
            tracked.price(bid) if bid_units else None,
            bid_units,
            tracked.price(ask) if ask_units else None,
            ask_units,
            volume,
            count,
            prev_seq=prev,
        )

    def snapshot(self, channel: str, symbol: str) -> Message:
        """Return the current snapshot of (channel, symbol), carrying the channel's seq.

        Raises:
            KeyError: the symbol is not listed, or the channel has no snapshots.
        """
        tracked = self._symbols[symbol]
        seq = self.seq(channel, symbol)
        journal_seq, ts_ns = self._journal_seq, self._ts_ns
        if channel == L2:
            self._freshen(symbol)  # A book nobody followed is read afresh first.
            bids = tracked.levels(tracked.bids.top(L2_DEPTH))
            asks = tracked.levels(tracked.asks.top(L2_DEPTH))
            return BookL2(
                "snapshot", symbol, seq, journal_seq, ts_ns, bids, asks, checksum(bids, asks)
            )
        if channel == L3:
            book_bids, book_asks = self._exchange.state.instruments[symbol].book.l3()
            entries = [
                L3Order(
                    L3Action.ADD, o.order_id, o.side, tracked.price(o.price_ticks), o.leaves_units
                )
                for o in (*book_bids, *book_asks)
            ]
            return BookL3("snapshot", symbol, seq, journal_seq, ts_ns, entries)
        if channel == TRADES:
            return Trades("snapshot", symbol, seq, journal_seq, ts_ns, list(tracked.trades))
        if channel == TICKER:
            return self._ticker(symbol, "snapshot", seq, None)
        if channel == STATUS:
            return self._status(symbol, "snapshot", seq, StatusEvent.SNAPSHOT, None)
        raise KeyError(f"channel {channel!r} has no snapshots")

    def heartbeat(self, symbol: str, ts_ns: int) -> Heartbeat:
        """Return a heartbeat for a symbol: the journal seq and every channel's latest seq.

        Send it in order with the updates already sent: a heartbeat must never overtake an
        update whose seq it reports (compute it between two outcomes, queue it behind them).

        Raises:
            KeyError: the symbol is not listed.
        """
        if symbol not in self._symbols:
            raise KeyError(symbol)
        channels = {channel: self.seq(channel, symbol) for channel in CHANNELS}
        return Heartbeat("update", symbol, self._journal_seq, self._journal_seq, ts_ns, channels)
