"""Liquidity figures per instrument, computed incrementally from the core's outcomes.

After every `Exchange.handle` the sequencer passes the outcome to `Liquidity.on_outcome` (next
to `MarketData.on_outcome`); it costs O(events) plus one best-bid/best-ask read per symbol the
outcome touched. `view(symbol, now_ns)` writes one `LiquidityMessage` (channel "liquidity")
from what was accumulated and from the book's levels near the top. Nothing here does I/O,
reads a clock or uses a float: the server passes the time in, and publishes the messages.

Definitions and units (every ratio an integer in the unit its name ends with, rounded down):
- A two-sided quote is a best bid below a best ask in continuous trading (an auction's book
  may be crossed and nothing trades at its prices): without one, mid, spreads and depth are
  absent and the no_two_sided_quote flag is raised (best_bid and best_ask still show).
- mid = (best bid + best ask) / 2. On the wire it is written with the currency's decimals
  when exact, otherwise with one decimal more, which is then always 5 ("99.995").
- quoted_spread_bps = (ask - bid) / mid * 10_000; depth_Xbps = [bid units, ask units] resting
  at prices within X bps of mid, inclusive: bid >= mid * (1 - X/10_000), ask <=
  mid * (1 + X/10_000); [0, 0] without a two-sided quote.
- The rolling window is [now - window_s rounded down to a whole second, now]: it lasts from
  window_s to window_s + 1 seconds, because what happened is kept per second (BUCKET_NS), so
  memory is at most window_s + 2 buckets per symbol whatever the rate. It is clipped at the
  start of tracking (the tracker's start: the later of the journal's last record and the
  start_ns it is given, which a server sets to its clock at its start; or the symbol's issue):
  before that nothing was seen. two_sided_ppm is the share of that time with a bid and an ask, and
  time_weighted_spread_bps the mean quoted spread over the two-sided part of it, weighted by
  nanoseconds: integer sums of ns and of spread x ns, exact per second.
- effective_spread_bps = mean over the window's trades of 2 * |price - mid_before| /
  mid_before, mid_before being the mid before the command that traded. Auction trades and
  trades without a two-sided quote before them are left out (None when none is left).
- Day figures count since 00:00 UTC of the day of the exchange clock (calendar.trading_day):
  volume, trades, notional (price x tick x units, minor), orders entered (OrderAccepted),
  turnover_ppm = day units / total issued units * 1e6, order_to_trade_milli = orders / trades
  * 1000 (None without trades).
- Amihud illiquidity: |day return| / day notional, where day return = last price of the day
  / base - 1 and base the last trade price before the day's first trade (the reference price
  if the instrument never traded). Written as ppb of return per million minor units of
  notional: |last - base| * 10**15 / (base * notional_minor). None on a day without trades.
- Royalties: TTM = the distributions recorded within 365 days before now (as in
  gateway/accounts.py). royalty_ttm_per_unit_minor = TTM / total units; royalty_yield_bps =
  TTM / (total units * last price in minor units) * 10_000, from the TTM total, not from the
  rounded per-unit figure; None before the first trade.
- Internally, spreads are kept in millionths of a bp (SUB_BPS) so that means of spreads round
  once, at the end.

Invariants:
- After `on_outcome(o)`, each symbol's buckets hold exactly what happened in their second
  (a bucket is dropped only once it is before every later window) up to the time its current
  quote began (quote_start_ns); the current quote's stretch since then is added to the buckets
  when the quote changes or a trade adds to a later second, and counted from quote_start_ns by
  every read. The window's total equals the sum over its buckets. (A quote is added once per
  change, not once per outcome: most outcomes leave the best prices as they were.)
- Nothing reads all resting orders: depth reads the book's aggregated levels from the top,
  only as far as DEPTH_BPS_MAX from mid, and only for symbols whose book changed.
- The figures depend only on the outcomes, the exchange state and `now_ns`.
- Each symbol's seq rises by exactly 1 per update message; a snapshot carries the current seq.
  A server starts them at market_data.run_seq_base() of its start, above any earlier run's.
- After a restart the window and the day start again at the restart (the journal before it
  is not replayed through here): the figures say so only through the shorter coverage.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Literal

import msgspec

from exchange.calendar import NS_PER_SECOND, NS_PER_YEAR, trading_day
from exchange.core import Exchange, Outcome
from exchange.currencies import decimal_text
from exchange.events import (
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    Phase,
    PhaseChanged,
    RoyaltyDistributed,
    SharesIssued,
    TradeExecuted,
)
from exchange.money import BPS_DENOMINATOR
from exchange.state import Instrument
from gateway.market_data import DEFAULT_CURRENCY_DIGITS
from matching.book import OrderBook

CHANNEL = "liquidity"
WINDOW_S = 300  # Default rolling window.
WIDE_SPREAD_BPS = 500  # Above this quoted spread, the "wide_spread" flag.
DEPTH_BPS = (10, 50, 100)
DEPTH_BPS_MAX = DEPTH_BPS[-1]
DEPTH_READ_LEVELS = 16  # Levels read per side at first; doubled while all are within reach.
SUB_BPS = 1_000_000  # Internal spreads are in millionths of a bp.
PPM = 1_000_000
AMIHUD_SCALE = 10**15  # ppb of return (1e9) per million minor units (1e6) of notional.
_BOOK_OR_STATUS = frozenset(
    (OrderCanceled, OrderAmended, OrderFilled, PhaseChanged, RoyaltyDistributed)
)  # Events that change a book, a phase or a royalty figure, beyond trades and orders entered.
BUCKET_NS = NS_PER_SECOND  # The window is kept per second.

NO_TWO_SIDED_QUOTE = "no_two_sided_quote"
WIDE_SPREAD = "wide_spread"

MessageType = Literal["snapshot", "update"]
Depth = tuple[int, int]  # (bid_units, ask_units); on the wire [12, 7].


class LiquidityMessage(
    msgspec.Struct, frozen=True, tag_field="channel", tag=CHANNEL, omit_defaults=True
):
    """The liquidity figures of one instrument at ts_ns (module docstring: definitions)."""

    type: MessageType
    symbol: str
    seq: int
    journal_seq: int  # The last journal record the figures include.
    ts_ns: int  # The time the figures are computed at (window end, day, expiry countdown).
    window_s: int
    best_bid: str | None
    best_ask: str | None
    mid: str | None  # One decimal more than the currency when it falls on a half.
    quoted_spread: str | None
    quoted_spread_bps: int | None
    time_weighted_spread_bps: int | None
    two_sided_ppm: int
    depth_10bps: Depth
    depth_50bps: Depth
    depth_100bps: Depth
    window_volume_units: int
    window_trades: int
    window_notional_minor: int
    day_volume_units: int
    day_trades: int
    day_notional_minor: int
    day_orders: int  # Orders entered (accepted) since the day began.
    turnover_ppm: int
    effective_spread_bps: int | None
    amihud_ppb_per_million_minor: int | None
    order_to_trade_milli: int | None
    last_price: str | None
    royalty_ttm_minor: int  # Distributed in the trailing twelve months, all units.
    royalty_ttm_per_unit_minor: int | None
    royalty_yield_bps: int | None
    last_distribution_period: str | None
    last_distribution_ts_ns: int | None
    expiry_ts_ns: int
    seconds_to_expiry: int
    flags: list[str]
    prev_seq: int | None = None  # On updates only.


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LiquidityMessage)


def encode(message: LiquidityMessage) -> bytes:
    """Encode a message as one JSON text (encode once, send to every subscriber)."""
    return _encoder.encode(message)


def decode(data: bytes | str) -> LiquidityMessage:
    """Decode a liquidity message (for clients and tests)."""
    return _decoder.decode(data)


def spread_sub_bps(bid_ticks: int, ask_ticks: int) -> int:
    """Return (ask - bid) / mid in millionths of a bp, rounded down."""
    # mid = (bid + ask) / 2, so (ask - bid) / mid = 2 * (ask - bid) / (bid + ask).
    return 2 * (ask_ticks - bid_ticks) * BPS_DENOMINATOR * SUB_BPS // (bid_ticks + ask_ticks)


def effective_sub_bps(price_ticks: int, mid_doubled_ticks: int) -> int:
    """Return 2 * |price - mid| / mid in millionths of a bp, mid given doubled (bid + ask)."""
    # With mid = m2 / 2: 2 * |p - m2/2| / (m2/2) = 2 * |2p - m2| / m2.
    distance = abs(2 * price_ticks - mid_doubled_ticks)
    return 2 * distance * BPS_DENOMINATOR * SUB_BPS // mid_doubled_ticks


def mid_text(mid_doubled_minor: int, digits: int) -> str:
    """Write half of an amount of minor units exactly: one decimal more when it is a half."""
    if mid_doubled_minor % 2 == 0:
        return decimal_text(mid_doubled_minor // 2, digits)
    return decimal_text(mid_doubled_minor * 5, digits + 1)


def depth_within(book: OrderBook, bid_ticks: int, ask_ticks: int) -> list[Depth]:
    """Return [bid, ask] units within each of DEPTH_BPS of mid, reading levels from the top."""
    mid_doubled = bid_ticks + ask_ticks
    # A bid p is within X bps when (mid - p) / mid <= X / 10_000, that is
    # 2 * p * 10_000 >= m2 * (10_000 - X); an ask when 2 * p * 10_000 <= m2 * (10_000 + X).
    bid_floors = [mid_doubled * (BPS_DENOMINATOR - bps) for bps in DEPTH_BPS]
    ask_ceilings = [mid_doubled * (BPS_DENOMINATOR + bps) for bps in DEPTH_BPS]
    count = DEPTH_READ_LEVELS
    while True:
        bids, asks = book.l2(count)
        # Read more only while the farthest level read is still within the widest band.
        bids_short = len(bids) == count and 2 * bids[-1][0] * BPS_DENOMINATOR >= bid_floors[-1]
        asks_short = len(asks) == count and 2 * asks[-1][0] * BPS_DENOMINATOR <= ask_ceilings[-1]
        if not (bids_short or asks_short):
            break
        count *= 2
    result: list[Depth] = []
    for floor, ceiling in zip(bid_floors, ask_ceilings, strict=True):
        bid_units = sum(units for price, units in bids if 2 * price * BPS_DENOMINATOR >= floor)
        ask_units = sum(units for price, units in asks if 2 * price * BPS_DENOMINATOR <= ceiling)
        result.append((bid_units, ask_units))
    return result


class _Bucket:
    """What happened in one second: two-sided time, spread x time, trades."""

    __slots__ = (
        "effective_count",
        "effective_sum",
        "notional_minor",
        "second",
        "spread_ns",
        "trades",
        "two_sided_ns",
        "volume_units",
    )

    def __init__(self, second: int) -> None:
        self.second = second  # ts_ns // BUCKET_NS.
        self.two_sided_ns = 0
        self.spread_ns = 0  # Sum of spread_sub_bps x ns.
        self.trades = 0
        self.volume_units = 0
        self.notional_minor = 0
        self.effective_sum = 0  # Sum of effective_sub_bps over the trades that have one.
        self.effective_count = 0

    def add(self, other: _Bucket, sign: int) -> None:
        self.two_sided_ns += sign * other.two_sided_ns
        self.spread_ns += sign * other.spread_ns
        self.trades += sign * other.trades
        self.volume_units += sign * other.volume_units
        self.notional_minor += sign * other.notional_minor
        self.effective_sum += sign * other.effective_sum
        self.effective_count += sign * other.effective_count


class _Window:
    """Per-second buckets, oldest first, and their sum: at most window_s + 2 of them."""

    __slots__ = ("buckets", "total", "window_ns")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.buckets: deque[_Bucket] = deque()
        self.total = _Bucket(0)

    def bucket(self, second: int) -> _Bucket:
        # Buckets are only ever added at the end: time moves forwards.
        buckets = self.buckets
        if buckets and buckets[-1].second == second:
            return buckets[-1]
        assert not buckets or buckets[-1].second < second, "time went backwards"
        bucket = _Bucket(second)
        buckets.append(bucket)
        return bucket

    def add_quote(self, start_ns: int, end_ns: int, spread: int) -> None:
        """Add a two-sided stretch [start_ns, end_ns), split at whole seconds."""
        # Seconds before the earliest window still to come are never read: skip them.
        start_ns = max(start_ns, first_second(end_ns, self.window_ns) * BUCKET_NS)
        total = self.total
        while start_ns < end_ns:
            second = start_ns // BUCKET_NS
            stop_ns = min(end_ns, (second + 1) * BUCKET_NS)
            bucket = self.bucket(second)
            duration = stop_ns - start_ns
            bucket.two_sided_ns += duration
            bucket.spread_ns += spread * duration
            total.two_sided_ns += duration
            total.spread_ns += spread * duration
            start_ns = stop_ns

    def add_trade(self, ts_ns: int, units: int, notional: int, effective: int | None) -> None:
        total = self.total
        for bucket in (self.bucket(ts_ns // BUCKET_NS), total):
            bucket.trades += 1
            bucket.volume_units += units
            bucket.notional_minor += notional
            if effective is not None:
                bucket.effective_sum += effective
                bucket.effective_count += 1

    def evict(self, now_ns: int) -> None:
        """Drop the seconds before the window ending at now_ns (they never count again)."""
        first = first_second(now_ns, self.window_ns)
        buckets = self.buckets
        while buckets and buckets[0].second < first:
            self.total.add(buckets.popleft(), -1)


def first_second(now_ns: int, window_ns: int) -> int:
    """Return the first whole second of the window ending at now_ns (its start, rounded down)."""
    return (now_ns - window_ns) // BUCKET_NS


class _Symbol:
    """What the tracker accumulated for one instrument."""

    __slots__ = (
        "ask_ticks",
        "bid_ticks",
        "day",
        "day_base_ticks",
        "day_last_ticks",
        "day_notional_minor",
        "day_orders",
        "day_trades",
        "day_volume_units",
        "depth",
        "digits",
        "instrument",
        "last_trade_ticks",
        "quote_start_ns",
        "quoted",
        "reference_ticks",
        "tracked_from_ns",
        "viewed_ns",
        "window",
    )

    def __init__(self, instrument: Instrument, digits: int, ts_ns: int, window_ns: int) -> None:
        self.instrument = instrument
        self.digits = digits
        self.tracked_from_ns = self.viewed_ns = ts_ns
        self.bid_ticks, self.ask_ticks, self.quoted = _quote(instrument)
        self.quote_start_ns = ts_ns  # Time up to which the quote is in the window's buckets.
        self.window = _Window(window_ns)
        self.depth: list[Depth] | None = None  # Cached until the book changes.
        self.last_trade_ticks = instrument.last_price_ticks
        # The reference price as it was before the outcome being read: an uncross moves the
        # instrument's to its clearing price before the tracker sees the auction's trades.
        self.reference_ticks = instrument.reference_price_ticks
        self.day = trading_day(ts_ns)
        self._start_day(self.day)

    def _start_day(self, day: int) -> None:
        self.day = day
        self.day_volume_units = 0
        self.day_trades = 0
        self.day_notional_minor = 0
        self.day_orders = 0
        self.day_base_ticks = 0
        self.day_last_ticks = 0

    def roll(self, ts_ns: int) -> None:
        """Start a new day's figures if ts_ns is in a later UTC day."""
        day = trading_day(ts_ns)
        if day != self.day:
            self._start_day(day)

    def advance(self, ts_ns: int) -> None:
        """Add the quote shown up to ts_ns to the buckets (it is about to change)."""
        if self.quoted and ts_ns > self.quote_start_ns:
            spread = spread_sub_bps(self.bid_ticks, self.ask_ticks)
            self.window.add_quote(self.quote_start_ns, ts_ns, spread)
        self.quote_start_ns = max(self.quote_start_ns, ts_ns)
        self.window.evict(ts_ns)  # Bounded memory even when nobody reads the figures.

    def trade(self, ts_ns: int, event: TradeExecuted) -> None:
        self.roll(ts_ns)
        # Buckets only grow at the end: the quote's stretch goes in before this later second.
        self.advance(ts_ns)
        terms = self.instrument.terms
        notional = event.price_ticks * terms.tick_size_minor * event.quantity_units
        effective = None
        if event.aggressor_side is not None and self.quoted:
            # The quote is still the one before this outcome: requote runs after its events.
            effective = effective_sub_bps(event.price_ticks, self.bid_ticks + self.ask_ticks)
        self.window.add_trade(ts_ns, event.quantity_units, notional, effective)
        if not self.day_trades:
            self.day_base_ticks = self.last_trade_ticks or self.reference_ticks
        self.day_trades += 1
        self.day_volume_units += event.quantity_units
        self.day_notional_minor += notional
        self.day_last_ticks = self.last_trade_ticks = event.price_ticks

    def requote(self, ts_ns: int) -> None:
        """Read the best bid and ask after an outcome at ts_ns; a new quote starts at ts_ns."""
        self.depth = None
        self.reference_ticks = self.instrument.reference_price_ticks
        quote = _quote(self.instrument)
        if quote != (self.bid_ticks, self.ask_ticks, self.quoted):
            self.advance(ts_ns)  # The old quote lasted until this outcome.
            self.bid_ticks, self.ask_ticks, self.quoted = quote

    def time_weighted(self, now_ns: int, window_start_ns: int) -> tuple[int, int]:
        """Return (two-sided ns, spread_sub_bps x ns) within [window_start_ns, now_ns]."""
        total = self.window.total
        two_sided, spread_ns = total.two_sided_ns, total.spread_ns
        if self.quoted:  # The quote shown since the last outcome.
            duration = now_ns - max(self.quote_start_ns, window_start_ns)
            if duration > 0:
                two_sided += duration
                spread_ns += spread_sub_bps(self.bid_ticks, self.ask_ticks) * duration
        return two_sided, spread_ns


def _quote(instrument: Instrument) -> tuple[int, int, bool]:
    # (best bid, best ask, quoted): prices in ticks, 0 for an empty side. A crossed book (while
    # orders rest in an auction) or one that cannot trade now is no quote: its "spread" would
    # be negative or not a price anyone can deal at.
    book = instrument.book
    best_bid, best_ask = book.best_bid(), book.best_ask()
    bid = best_bid[0] if best_bid else 0
    ask = best_ask[0] if best_ask else 0
    return bid, ask, 0 < bid < ask and instrument.phase is Phase.CONTINUOUS


class Liquidity:
    """Accumulates each outcome of one exchange into liquidity figures per instrument.

    Run `on_outcome` in the sequencer right after each `Exchange.handle`, before the next:
    it reads the best prices as that command left them. Call `view` between commands.
    """

    def __init__(
        self,
        exchange: Exchange,
        currency_digits: Mapping[str, int] | None = None,
        window_s: int = WINDOW_S,
        wide_spread_bps: int = WIDE_SPREAD_BPS,
        seq_base: int = 0,
        start_ns: int = 0,
    ) -> None:
        """Start from the exchange as it is (fresh, or restored from the journal).

        Args:
            exchange: the exchange whose outcomes will be passed to `on_outcome`.
            currency_digits: decimals per currency code; DEFAULT_CURRENCY_DIGITS otherwise.
            window_s: the rolling window, in seconds.
            wide_spread_bps: the quoted spread above which a symbol is flagged "wide_spread".
            seq_base: each symbol's seq before its first update (a server passes
                market_data.run_seq_base() of its start, so seqs never repeat across runs).
            start_ns: when tracking starts, if later than the journal's last record: a
                server passes its clock at its start, so the time it was down (the journal
                silent, the book unseen and untradable) is not counted as quoted.
        """
        self._seq_base = seq_base
        assert window_s > 0, "the window must last a positive time"
        self._exchange = exchange
        self._digits = dict(currency_digits or {})
        self.window_s = window_s
        self.wide_spread_bps = wide_spread_bps
        self._journal_seq = exchange.seq
        # Time only moves forwards: a clock behind the journal's last record starts there.
        self._ts_ns = max(exchange.state.last_ts_ns, start_ns)
        self._seqs: dict[str, int] = {}
        self._changed: dict[str, None] = {}
        self._symbols: dict[str, _Symbol] = {}
        for symbol in exchange.state.instruments:
            self._track(symbol, self._ts_ns)

    def _track(self, symbol: str, ts_ns: int) -> None:
        instrument = self._exchange.state.instruments[symbol]
        digits = self._digits.get(instrument.terms.currency, DEFAULT_CURRENCY_DIGITS)
        window_ns = self.window_s * NS_PER_SECOND
        self._symbols[symbol] = _Symbol(instrument, digits, ts_ns, window_ns)

    @property
    def symbols(self) -> list[str]:
        """The tracked symbols, in listing order."""
        return list(self._symbols)

    def seq(self, symbol: str) -> int:
        """Return the seq of the symbol's last update; the base if none."""
        return self._seqs.get(symbol, self._seq_base)

    def window_buckets(self, symbol: str) -> int:
        """Return how many per-second buckets the symbol holds (at most window_s + 2)."""
        return len(self._symbols[symbol].window.buckets)

    def on_outcome(self, outcome: Outcome) -> None:
        """Accumulate one outcome; remember which symbols' figures it changed."""
        ts_ns = outcome.ts_ns
        self._journal_seq, self._ts_ns = outcome.seq, ts_ns
        symbols = self._symbols
        touched: dict[str, None] = {}
        for event in outcome.events:
            kind = event.__class__
            if kind is SharesIssued:
                assert isinstance(event, SharesIssued)
                self._track(event.symbol, ts_ns)
                touched[event.symbol] = None
                continue
            if not (kind is TradeExecuted or kind is OrderAccepted or kind in _BOOK_OR_STATUS):
                continue
            symbol: str = event.symbol  # type: ignore[union-attr]
            touched[symbol] = None
            if kind is TradeExecuted:
                assert isinstance(event, TradeExecuted)
                symbols[symbol].trade(ts_ns, event)
            elif kind is OrderAccepted:
                tracked = symbols[symbol]
                tracked.roll(ts_ns)
                tracked.day_orders += 1
        for symbol in touched:
            symbols[symbol].requote(ts_ns)
        self._changed.update(touched)

    def take_changed(self) -> list[str]:
        """Return the symbols whose figures outcomes changed since the last call, and forget them.

        Time-weighted and windowed figures also move with time alone: publish a refresh of
        every watched symbol periodically as well.
        """
        changed = list(self._changed)
        self._changed.clear()
        return changed

    def view(
        self, symbol: str, now_ns: int, message_type: MessageType = "snapshot"
    ) -> LiquidityMessage:
        """Return the symbol's figures at now_ns (raised to the latest outcome or view time).

        Time only moves forwards here: what left the window for one view is gone for good, so
        a now_ns earlier than a previous view's is taken as that time (the message's ts_ns).

        A "snapshot" carries the symbol's current seq; an "update" takes the next one.

        Raises:
            KeyError: the symbol is not listed.
        """
        tracked = self._symbols[symbol]
        now_ns = tracked.viewed_ns = max(now_ns, self._ts_ns, tracked.viewed_ns)
        previous = self._seqs.get(symbol, self._seq_base)
        seq, prev_seq = previous, None
        if message_type == "update":
            seq = self._seqs[symbol] = previous + 1
            prev_seq = previous
        return self._message(tracked, symbol, now_ns, message_type, seq, prev_seq)

    def update(self, symbol: str, now_ns: int) -> LiquidityMessage:
        """Return an update of the symbol's figures at now_ns, with the next seq."""
        return self.view(symbol, now_ns, "update")

    def _message(
        self,
        tracked: _Symbol,
        symbol: str,
        now_ns: int,
        message_type: MessageType,
        seq: int,
        prev_seq: int | None,
    ) -> LiquidityMessage:
        instrument = tracked.instrument
        window_start = first_second(now_ns, self.window_s * NS_PER_SECOND) * BUCKET_NS
        tracked.window.evict(now_ns)
        quote = _QuoteFigures(tracked, self.wide_spread_bps)
        window = _window_figures(tracked, now_ns, window_start)
        day = _DayFigures(tracked, now_ns)
        royalties = _royalty_figures(instrument, now_ns)
        expiry = instrument.asset.expiry_ts_ns
        return LiquidityMessage(
            type=message_type,
            symbol=symbol,
            seq=seq,
            journal_seq=self._journal_seq,
            ts_ns=now_ns,
            window_s=self.window_s,
            best_bid=quote.best_bid,
            best_ask=quote.best_ask,
            mid=quote.mid,
            quoted_spread=quote.spread,
            quoted_spread_bps=quote.spread_bps,
            time_weighted_spread_bps=window[0],
            two_sided_ppm=window[1],
            depth_10bps=quote.depth[0],
            depth_50bps=quote.depth[1],
            depth_100bps=quote.depth[2],
            window_volume_units=tracked.window.total.volume_units,
            window_trades=tracked.window.total.trades,
            window_notional_minor=tracked.window.total.notional_minor,
            day_volume_units=day.volume_units,
            day_trades=day.trades,
            day_notional_minor=day.notional_minor,
            day_orders=day.orders,
            turnover_ppm=day.turnover_ppm,
            effective_spread_bps=window[2],
            amihud_ppb_per_million_minor=day.amihud,
            order_to_trade_milli=day.order_to_trade_milli,
            last_price=_price(tracked, instrument.last_price_ticks),
            royalty_ttm_minor=royalties[0],
            royalty_ttm_per_unit_minor=royalties[1],
            royalty_yield_bps=royalties[2],
            last_distribution_period=royalties[3],
            last_distribution_ts_ns=royalties[4],
            expiry_ts_ns=expiry,
            seconds_to_expiry=max(0, (expiry - now_ns) // NS_PER_SECOND),
            flags=quote.flags,
            prev_seq=prev_seq,
        )


def _price(tracked: _Symbol, price_ticks: int) -> str | None:
    if not price_ticks:
        return None
    return decimal_text(price_ticks * tracked.instrument.terms.tick_size_minor, tracked.digits)


class _QuoteFigures:
    """The quote now: best prices, mid, spread, depth and the flags they raise."""

    __slots__ = ("best_ask", "best_bid", "depth", "flags", "mid", "spread", "spread_bps")

    def __init__(self, tracked: _Symbol, wide_spread_bps: int) -> None:
        bid, ask = tracked.bid_ticks, tracked.ask_ticks
        tick = tracked.instrument.terms.tick_size_minor
        self.best_bid = _price(tracked, bid)
        self.best_ask = _price(tracked, ask)
        self.mid: str | None = None
        self.spread: str | None = None
        self.spread_bps: int | None = None
        self.depth: list[Depth] = [(0, 0)] * len(DEPTH_BPS)
        self.flags: list[str] = []
        if not tracked.quoted:
            self.flags.append(NO_TWO_SIDED_QUOTE)
            return
        self.mid = mid_text((bid + ask) * tick, tracked.digits)
        self.spread = decimal_text((ask - bid) * tick, tracked.digits)
        self.spread_bps = spread_sub_bps(bid, ask) // SUB_BPS
        if tracked.depth is None:
            tracked.depth = depth_within(tracked.instrument.book, bid, ask)
        self.depth = tracked.depth
        if self.spread_bps > wide_spread_bps:
            self.flags.append(WIDE_SPREAD)


def _window_figures(
    tracked: _Symbol, now_ns: int, window_start_ns: int
) -> tuple[int | None, int, int | None]:
    # (time-weighted spread bps, two-sided ppm, effective spread bps) over the window.
    covered = now_ns - max(window_start_ns, tracked.tracked_from_ns)
    two_sided, spread_ns = tracked.time_weighted(now_ns, window_start_ns)
    quoted = tracked.quoted
    # Before any time has passed the share is what holds now.
    two_sided_ppm = two_sided * PPM // covered if covered > 0 else (PPM if quoted else 0)
    if two_sided > 0:
        weighted: int | None = spread_ns // two_sided // SUB_BPS
    elif quoted:
        weighted = spread_sub_bps(tracked.bid_ticks, tracked.ask_ticks) // SUB_BPS
    else:
        weighted = None
    effective = None
    total = tracked.window.total
    if total.effective_count:
        effective = total.effective_sum // total.effective_count // SUB_BPS
    return weighted, two_sided_ppm, effective


class _DayFigures:
    """The figures of the UTC day containing now (zero on a day nothing happened yet)."""

    __slots__ = (
        "amihud",
        "notional_minor",
        "order_to_trade_milli",
        "orders",
        "trades",
        "turnover_ppm",
        "volume_units",
    )

    def __init__(self, tracked: _Symbol, now_ns: int) -> None:
        today = trading_day(now_ns) == tracked.day
        self.volume_units = tracked.day_volume_units if today else 0
        self.trades = tracked.day_trades if today else 0
        self.notional_minor = tracked.day_notional_minor if today else 0
        self.orders = tracked.day_orders if today else 0
        self.turnover_ppm = self.volume_units * PPM // tracked.instrument.terms.total_units
        self.amihud: int | None = None
        self.order_to_trade_milli: int | None = None
        if self.trades:
            base = tracked.day_base_ticks
            move = abs(tracked.day_last_ticks - base)
            if self.notional_minor:
                self.amihud = move * AMIHUD_SCALE // (base * self.notional_minor)
            self.order_to_trade_milli = self.orders * 1_000 // self.trades


def _royalty_figures(
    instrument: Instrument, now_ns: int
) -> tuple[int, int, int | None, str | None, int | None]:
    # (TTM total, TTM per unit, yield bps, last period, last distribution ts) at now_ns.
    terms = instrument.terms
    ttm_minor = 0
    last = None
    for period in instrument.royalties.values():  # A handful per year, in record order.
        if period.ts_ns > now_ns - NS_PER_YEAR:
            ttm_minor += period.amount_minor
        last = period
    last_minor = instrument.last_price_ticks * terms.tick_size_minor
    yield_bps = None
    if last_minor:
        yield_bps = ttm_minor * BPS_DENOMINATOR // (terms.total_units * last_minor)
    return (
        ttm_minor,
        ttm_minor // terms.total_units,
        yield_bps,
        None if last is None else last.period_id,
        None if last is None else last.ts_ns,
    )
