"""The exchange's in-memory state: accounts, assets, instruments, orders and their indexes.

Invariants:
- Everything here is derived from the journal: replaying the same records rebuilds equal state
  (equal `state_hash()`), whatever PYTHONHASHSEED; no set iteration order reaches any output.
- Each open order is in `orders` and in its account's `open_orders`, and in its instrument's
  book with the same leaves; an order leaves all three together.
- The held cash of an account in a currency equals the sum of the reservations of its open
  buy orders in that currency; its held units of an instrument equal the leaves of its open
  sell orders in that instrument.
"""

from __future__ import annotations

from collections import deque

import msgspec

from exchange.commands import IssueShares, ListAsset, OpenOffering, PlaceOrder, Role
from exchange.events import Event, OrderFilled, Phase, TradeExecuted
from exchange.money import BPS_DENOMINATOR
from matching.book import OrderBook
from matching.limits import PRICE_TICKS_MAX, PRICE_TICKS_MIN
from matching.orders import OrderType, Side, TimeInForce

# Internal account collecting maker and taker fees: the venue's, which an operator withdraws
# from (exchange/admin.py); no Account, so nobody can open, fund or trade from it.
FEE_ACCOUNT = "exchange:fees"
SEQUENCER_ACTOR = "@sequencer"  # The actor of Tick commands: the clock, not a client.
RECENT_TRADES_MAX = 50  # Trade prints an instrument keeps (market data's trades snapshot).
NO_TIMER_NS = 1 << 126  # Later than any ts_ns: "no timer pending".


def band_edges(center_ticks: int, band_bps: int) -> tuple[int, int]:
    """Return the (lowest, highest) price inside +/- band_bps of center_ticks.

    Edges round towards the centre (floor above it, ceiling below it); but the band is at
    least one tick wide either side. At a low price the rounded width is 0 (a 10% band below
    10 ticks, a 5% one below 20), and a band of one price refuses every order at any other, so
    the price could never move again: the instrument would be frozen.

    Edges stay inside the book's price range (PRICE_TICKS_MIN to PRICE_TICKS_MAX), where the
    band may then be narrower on that side. A market order is a limit at the band's edge: an
    edge beyond the range made the book refuse every market order on that side, however much
    rested inside the band.
    """
    width = max(1, center_ticks * band_bps // BPS_DENOMINATOR)
    return max(PRICE_TICKS_MIN, center_ticks - width), min(PRICE_TICKS_MAX, center_ticks + width)


class Account:
    __slots__ = ("account_id", "execution_seq", "open_orders", "orders_today", "role", "suspended")

    def __init__(self, account_id: str, role: Role) -> None:
        self.account_id = account_id
        self.role = role
        self.suspended = False  # Kill switch engaged: no order entry.
        self.open_orders: dict[int, None] = {}  # Insertion-ordered set of order ids.
        # How many private events (execution reports) the account has had since it opened:
        # the seq of the last one. Part of the state, so it survives restarts.
        self.execution_seq = 0
        # The account's entries in ExchangeState.client_orders (the orders it placed today,
        # refused ones included, and its open orders of earlier days): derived, so not in
        # snapshots (count_orders_today), and bounded by ORDERS_PER_ACCOUNT_PER_DAY_MAX.
        self.orders_today = 0


class Asset:
    __slots__ = ("expiry_ts_ns", "listing", "symbols")

    def __init__(self, listing: ListAsset, expiry_ts_ns: int) -> None:
        self.listing = listing
        self.expiry_ts_ns = expiry_ts_ns
        self.symbols: list[str] = []


class RoyaltyPeriod:
    __slots__ = (
        "amount_minor",
        "payer_account",
        "payments",
        "period_id",
        "seq",
        "total_units",
        "ts_ns",
    )

    def __init__(
        self, period_id: str, seq: int, ts_ns: int, amount: int, units: int, payer: str
    ) -> None:
        self.period_id = period_id
        self.seq = seq
        self.ts_ns = ts_ns
        self.amount_minor = amount
        self.total_units = units
        self.payer_account = payer
        # account -> (units held at the record point, cash received), ascending account order.
        self.payments: dict[str, tuple[int, int]] = {}


class Instrument:
    """One share class: its terms, its book, its phase and its trading statistics."""

    __slots__ = (
        "asset",
        "book",
        "dynamic_high",
        "dynamic_low",
        "guard_high",
        "guard_low",
        "holders",
        "indicative",
        "last_price_ticks",
        "last_uncross",
        "max_fee_bps",
        "offering",
        "offering_order_id",
        "phase",
        "phase_reason",
        "phase_until_ns",
        "recent_trades",
        "reference_price_ticks",
        "royalties",
        "static_high",
        "static_low",
        "terms",
        "trade_count",
        "volume_units",
    )

    def __init__(self, terms: IssueShares, asset: Asset) -> None:
        self.terms = terms
        self.asset = asset
        self.book = OrderBook(in_auction=True)
        self.phase = Phase.PRE_OPEN
        self.phase_reason = ""  # Why the phase was entered, as its PhaseChanged said.
        self.phase_until_ns = 0
        self.last_price_ticks = 0
        # Band edges are cached: every order is checked against them.
        self.set_reference_price(terms.reference_price_ticks)
        self.max_fee_bps = max(terms.maker_fee_bps, terms.taker_fee_bps)
        self.offering: OpenOffering | None = None
        self.offering_order_id = 0
        self.indicative: tuple[int, int, int] = (0, 0, 0)
        # Every account that has ever held units: the candidates at a royalty record point.
        self.holders: dict[str, None] = {terms.issuer_account: None}
        self.royalties: dict[str, RoyaltyPeriod] = {}
        self.trade_count = 0
        self.volume_units = 0
        # What market data shows of the past, kept here so that it is in snapshots and a
        # restart shows it too: the last uncross with volume (price, units) and the last
        # RECENT_TRADES_MAX prints, oldest first.
        self.last_uncross: tuple[int, int] = (0, 0)
        self.recent_trades: deque[TradeExecuted] = deque(maxlen=RECENT_TRADES_MAX)

    def set_reference_price(self, price_ticks: int) -> None:
        """Centre the static band (and, before the first trade, the dynamic one) on a price."""
        self.reference_price_ticks = price_ticks
        self.static_low, self.static_high = band_edges(price_ticks, self.terms.static_band_bps)
        center = self.last_price_ticks or price_ticks
        self.dynamic_low, self.dynamic_high = band_edges(center, self.terms.dynamic_band_bps)
        self._set_guard()

    def set_last_price(self, price_ticks: int) -> None:
        """Record a trade price and centre the dynamic band on it."""
        self.last_price_ticks = price_ticks
        self.dynamic_low, self.dynamic_high = band_edges(price_ticks, self.terms.dynamic_band_bps)
        self._set_guard()

    def _set_guard(self) -> None:
        # Continuous trading prints only inside both bands; a print outside them would start
        # a volatility auction instead.
        self.guard_low = max(self.static_low, self.dynamic_low)
        self.guard_high = min(self.static_high, self.dynamic_high)

    def next_phase_timer_ns(self) -> int:
        """Return when this instrument's phase next changes by itself: the end of a timed
        phase, or delisting at the patent's expiry (GTD expiries aside)."""
        soonest = self.phase_until_ns or NO_TIMER_NS
        if self.phase is not Phase.DELISTED:
            soonest = min(soonest, self.asset.expiry_ts_ns)
        return soonest


class LiveOrder(msgspec.Struct, gc=False):
    """The exchange's side of an order: who owns it and what it reserves.

    A mutable msgspec Struct: built several times faster than a __slots__ class, and one is
    built per order. gc=False is safe: it refers to its instrument, which never refers back.
    """

    order_id: int
    account: str
    instrument: Instrument
    cl_ord_id: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price_ticks: int  # Limit price, or a market order's protection price.
    quantity_units: int
    cum_units: int = 0


class ClientOrder(msgspec.Struct, gc=False):
    """What the first `PlaceOrder` with a cl_ord_id got, replayed to any resend of it."""

    command: PlaceOrder
    order_id: int
    reply: Event
    fills: tuple[OrderFilled, ...] = ()  # Its own fills on arrival, for a resend's answer.


class GatewaySession(msgspec.Struct, gc=False):
    """A gateway session that has open orders or asked for cancel-on-disconnect
    (exchange/disconnect.py). gc=False: it holds a string and a dict of ints, no cycle."""

    account: str
    cancel_scope: str = ""  # "", "session" or "account": what its end cancels.
    open_orders: dict[int, None] = msgspec.field(default_factory=dict)  # Those it placed.


class ExchangeState:
    """Everything the exchange knows, apart from the balances (which live in ledger.Balances)."""

    __slots__ = (
        "accounts",
        "assets",
        "client_orders",
        "client_orders_yesterday",
        "finished_orders",
        "finished_orders_yesterday",
        "instruments",
        "last_ts_ns",
        "next_order_id",
        "next_timer_ns",
        "order_sessions",
        "orders",
        "rejected_orders",
        "rejected_orders_yesterday",
        "seq",
        "sessions",
        "trading_day",
    )

    def __init__(self) -> None:
        self.seq = 0
        self.last_ts_ns = 0
        self.trading_day = -1  # Unknown until the first command.
        self.next_order_id = 1
        # The earliest ts_ns at which any timer may fire (derived, not part of the state hash):
        # commands before it skip the timers entirely.
        self.next_timer_ns = 0
        self.accounts: dict[str, Account] = {}
        self.assets: dict[str, Asset] = {}
        self.instruments: dict[str, Instrument] = {}
        self.orders: dict[int, LiveOrder] = {}  # Open orders.
        # Orders that ended this trading day, for status queries; yesterday's at the day roll.
        self.finished_orders: dict[int, LiveOrder] = {}
        # (account, cl_ord_id) -> the first outcome, for idempotent resends: the day's orders
        # and those still open from earlier days.
        self.client_orders: dict[tuple[str, str], ClientOrder] = {}
        # Orders the book refused after they got an id (FOK not fillable, post-only that
        # would trade, ...): id -> (account, cl_ord_id), so a status query by that id finds
        # them; yesterday's at the day roll.
        self.rejected_orders: dict[int, tuple[str, str]] = {}
        # The same three of the previous trading day, of orders no longer open: a resend that
        # was handled at 23:59:59 and arrives again at 00:00:04 (the client's retry after a
        # timeout or a 5xx) must still get its first outcome, and order.status must still
        # find it. The day roll moves today's here and forgets yesterday's: an order is
        # forgotten at the second roll after it ended.
        self.client_orders_yesterday: dict[tuple[str, str], ClientOrder] = {}
        self.finished_orders_yesterday: dict[int, LiveOrder] = {}
        self.rejected_orders_yesterday: dict[int, tuple[str, str]] = {}
        # Gateway sessions with open orders or cancel-on-disconnect, and the session of each
        # open order placed through one (exchange/disconnect.py).
        self.sessions: dict[str, GatewaySession] = {}
        self.order_sessions: dict[int, str] = {}

    def client_order(self, account: str, cl_ord_id: str) -> ClientOrder | None:
        """Return the first outcome under an account's cl_ord_id: today's, else yesterday's."""
        key = (account, cl_ord_id)
        found = self.client_orders.get(key)
        return found if found is not None else self.client_orders_yesterday.get(key)

    def finished_order(self, order_id: int) -> LiveOrder | None:
        """Return an order that ended today or on the previous trading day."""
        found = self.finished_orders.get(order_id)
        return found if found is not None else self.finished_orders_yesterday.get(order_id)

    def rejected_order(self, order_id: int) -> tuple[str, str] | None:
        """Return (account, cl_ord_id) of an order the book refused today or yesterday."""
        found = self.rejected_orders.get(order_id)
        return found if found is not None else self.rejected_orders_yesterday.get(order_id)


def count_orders_today(state: ExchangeState) -> None:
    """Set every account's orders_today from client_orders (after a day roll, a restore)."""
    for account in state.accounts.values():
        account.orders_today = 0
    accounts = state.accounts
    for account_id, _ in state.client_orders:
        accounts[account_id].orders_today += 1
