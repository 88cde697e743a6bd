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

from exchange.commands import IssueShares, ListAsset, OpenOffering, PlaceOrder, Role
from exchange.events import Event, Phase
from matching.book import OrderBook
from matching.orders import OrderType, Side, TimeInForce

FEE_ACCOUNT = "exchange:fees"  # Internal account collecting maker and taker fees.
SEQUENCER_ACTOR = "@sequencer"  # The actor of Tick commands: the clock, not a client.


class Account:
    __slots__ = ("account_id", "open_orders", "role", "suspended")

    def __init__(self, account_id: str, role: Role) -> None:
        self.account_id = account_id
        self.role = role
        self.suspended = False  # Kill switch engaged: no order entry.
        self.open_orders: dict[int, None] = {}  # Insertion-ordered set of order ids.


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
        "holders",
        "indicative",
        "last_price_ticks",
        "max_fee_bps",
        "offering",
        "offering_order_id",
        "phase",
        "phase_until_ns",
        "reference_price_ticks",
        "royalties",
        "terms",
        "trade_count",
        "volume_units",
    )

    def __init__(self, terms: IssueShares, asset: Asset) -> None:
        self.terms = terms
        self.asset = asset
        self.book = OrderBook(in_auction=True)
        self.phase = Phase.PRE_OPEN
        self.phase_until_ns = 0
        self.reference_price_ticks = terms.reference_price_ticks
        self.last_price_ticks = 0
        self.max_fee_bps = max(terms.maker_fee_bps, terms.taker_fee_bps)
        self.offering: OpenOffering | None = None
        self.offering_order_id = 0
        self.indicative: tuple[int, int, int] = (0, 0, 0)
        # Every account that has ever held units: the candidates at a royalty record point.
        self.holders: dict[str, None] = {terms.issuer_account: None}
        self.royalties: dict[str, RoyaltyPeriod] = {}
        self.trade_count = 0
        self.volume_units = 0


class LiveOrder:
    """The exchange's side of an order: who owns it and what it reserves."""

    __slots__ = (
        "account",
        "cl_ord_id",
        "cum_units",
        "instrument",
        "order_id",
        "order_type",
        "price_ticks",
        "quantity_units",
        "side",
        "time_in_force",
    )

    def __init__(
        self,
        order_id: int,
        account: str,
        instrument: Instrument,
        cl_ord_id: str,
        side: Side,
        order_type: OrderType,
        time_in_force: TimeInForce,
        price_ticks: int,
        quantity_units: int,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.instrument = instrument
        self.cl_ord_id = cl_ord_id
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.price_ticks = price_ticks  # Limit price, or a market order's protection price.
        self.quantity_units = quantity_units
        self.cum_units = 0


class ClientOrder:
    """What the first `PlaceOrder` with a cl_ord_id got, replayed to any resend of it."""

    __slots__ = ("command", "order_id", "reply")

    def __init__(self, command: PlaceOrder, order_id: int, reply: Event) -> None:
        self.command = command
        self.order_id = order_id
        self.reply = reply


class ExchangeState:
    """Everything the exchange knows, apart from the balances (which live in ledger.Balances)."""

    __slots__ = (
        "accounts",
        "assets",
        "client_orders",
        "finished_orders",
        "instruments",
        "last_ts_ns",
        "next_order_id",
        "orders",
        "seq",
        "trading_day",
    )

    def __init__(self) -> None:
        self.seq = 0
        self.last_ts_ns = 0
        self.trading_day = -1  # Unknown until the first command.
        self.next_order_id = 1
        self.accounts: dict[str, Account] = {}
        self.assets: dict[str, Asset] = {}
        self.instruments: dict[str, Instrument] = {}
        self.orders: dict[int, LiveOrder] = {}  # Open orders.
        # Orders that ended this trading day, for status queries; cleared at the day roll.
        self.finished_orders: dict[int, LiveOrder] = {}
        # (account, cl_ord_id) -> the first outcome, for idempotent resends within the day.
        self.client_orders: dict[tuple[str, str], ClientOrder] = {}
