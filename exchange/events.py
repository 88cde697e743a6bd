"""Events: what happened, in the past tense, for the gateway to route and publish.

Invariants:
- Events are frozen values in one tagged union, derived deterministically from the journal:
  replaying the same records yields the same events.
- Private events (orders, fills, balances, royalty payments) name the account they belong to;
  public events (trades, phases, auctions) never name an account.
"""

from __future__ import annotations

import enum

import msgspec

from exchange.commands import Role
from exchange.reasons import Reject
from matching.orders import CancelReason, OrderType, Side, TimeInForce


class Phase(enum.Enum):
    PRE_OPEN = "pre_open"  # Listed and issued; orders may rest, nothing matches.
    OFFERING = "offering"  # A uniform-price offering auction is open.
    AUCTION = "auction"  # A call auction (opening, volatility, periodic) is collecting orders.
    CONTINUOUS = "continuous"
    HALTED = "halted"  # No new orders or amends; cancels allowed.
    CLOSED = "closed"
    DELISTED = "delisted"  # Terminal: the patent expired. Units stay on record.


class Liquidity(enum.Enum):
    MAKER = "maker"
    TAKER = "taker"
    AUCTION = "auction"


class _Event(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    pass


class CommandRejected(_Event, frozen=True, tag="command_rejected"):
    """A non-order command was refused; nothing changed."""

    actor: str
    command: str
    reason: Reject
    message: str


class OrderRejected(_Event, frozen=True, tag="order_rejected"):
    account: str
    symbol: str
    cl_ord_id: str
    order_id: int  # 0 when the order never existed.
    reason: Reject
    message: str


class OrderAccepted(_Event, frozen=True, tag="order_accepted"):
    account: str
    symbol: str
    cl_ord_id: str
    order_id: int
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price_ticks: int  # For a market order: its protection price.
    quantity_units: int


class OrderFilled(_Event, frozen=True, tag="order_filled"):
    """One side of one trade: the execution report for that order's owner."""

    account: str
    symbol: str
    cl_ord_id: str
    order_id: int
    trade_id: int
    side: Side
    price_ticks: int
    quantity_units: int
    cum_units: int
    leaves_units: int
    liquidity: Liquidity
    fee_minor: int


class OrderCanceled(_Event, frozen=True, tag="order_canceled"):
    account: str
    symbol: str
    cl_ord_id: str
    order_id: int
    side: Side
    canceled_units: int
    leaves_units: int  # > 0 only when self-trade prevention reduced a live order.
    reason: CancelReason
    cum_units: int  # Filled so far: with leaves_units, the order's status after this event.


class OrderAmended(_Event, frozen=True, tag="order_amended"):
    account: str
    symbol: str
    cl_ord_id: str
    order_id: int
    price_ticks: int
    quantity_units: int
    leaves_units: int
    priority_kept: bool
    cum_units: int


class TradeExecuted(_Event, frozen=True, tag="trade_executed"):
    """The public print of a trade: no accounts."""

    symbol: str
    trade_id: int
    price_ticks: int
    quantity_units: int
    aggressor_side: Side | None  # None for an auction trade.
    ts_ns: int  # When it traded: the command's time, or the timer's that uncrossed an auction.


class AuctionUncrossed(_Event, frozen=True, tag="auction_uncrossed"):
    symbol: str
    price_ticks: int
    volume_units: int
    imbalance_units: int


class IndicativeUpdated(_Event, frozen=True, tag="indicative_updated"):
    """In a call phase (pre-open, offering, auction): what the book would clear at now (0/0
    when nothing crosses); 0/0 too when the instrument leaves them (halt, close, delisting)."""

    symbol: str
    price_ticks: int
    volume_units: int
    imbalance_units: int


class PhaseChanged(_Event, frozen=True, tag="phase_changed"):
    symbol: str
    phase: Phase
    reason: str
    until_ts_ns: int  # When a timed phase (auction, offering) ends; 0 otherwise.


class AccountOpened(_Event, frozen=True, tag="account_opened"):
    account: str
    role: Role


class CashDeposited(_Event, frozen=True, tag="cash_deposited"):
    account: str
    currency: str
    amount_minor: int


class CashWithdrawn(_Event, frozen=True, tag="cash_withdrawn"):
    account: str
    currency: str
    amount_minor: int


class AssetListed(_Event, frozen=True, tag="asset_listed"):
    patent_id: str
    title: str
    expiry_date: str


class SharesIssued(_Event, frozen=True, tag="shares_issued"):
    symbol: str
    patent_id: str
    account: str
    total_units: int


class OfferingOpened(_Event, frozen=True, tag="offering_opened"):
    symbol: str
    units: int
    min_price_ticks: int
    end_ts_ns: int
    all_or_none: bool


class OfferingClosed(_Event, frozen=True, tag="offering_closed"):
    symbol: str
    succeeded: bool
    price_ticks: int  # The clearing price; 0 if nothing was sold.
    units_sold: int
    reason: str


class RoyaltyDistributed(_Event, frozen=True, tag="royalty_distributed"):
    symbol: str
    period_id: str
    payer_account: str
    amount_minor: int
    total_units: int
    holders: int


class RoyaltyPaid(_Event, frozen=True, tag="royalty_paid"):
    """One holder's part of a distribution."""

    account: str
    symbol: str
    period_id: str
    units_held: int
    amount_minor: int


class RoyaltyCharged(_Event, frozen=True, tag="royalty_charged"):
    """The payer's side of a distribution: amount_minor paid out to the holders, of which
    own_share_minor came back to the payer as a holder (its cash went down by the rest)."""

    account: str
    symbol: str
    period_id: str
    amount_minor: int
    own_share_minor: int


class KillSwitchChanged(_Event, frozen=True, tag="kill_switch_changed"):
    account: str
    engaged: bool


class AllOrdersCanceled(_Event, frozen=True, tag="all_orders_canceled"):
    """The reply to CancelAll: how many open orders it canceled."""

    account: str
    symbol: str  # "" for every symbol.
    orders_canceled: int


class CancelOnDisconnectSet(_Event, frozen=True, tag="cancel_on_disconnect_set"):
    """The reply to SetCancelOnDisconnect."""

    account: str
    session_id: str
    scope: str  # "" when switched off.


class SessionEnded(_Event, frozen=True, tag="session_ended"):
    """The reply to EndSession: how many open orders its cancel-on-disconnect canceled."""

    account: str
    session_id: str
    orders_canceled: int


Event = (
    CommandRejected
    | OrderRejected
    | OrderAccepted
    | OrderFilled
    | OrderCanceled
    | OrderAmended
    | TradeExecuted
    | AuctionUncrossed
    | IndicativeUpdated
    | PhaseChanged
    | AccountOpened
    | CashDeposited
    | CashWithdrawn
    | AssetListed
    | SharesIssued
    | OfferingOpened
    | OfferingClosed
    | RoyaltyDistributed
    | RoyaltyPaid
    | RoyaltyCharged
    | KillSwitchChanged
    | AllOrdersCanceled
    | CancelOnDisconnectSet
    | SessionEnded
)

# The events that name an account (the private ones): each is one execution report of that
# account, numbered by Account.execution_seq in the order the exchange made them.
PRIVATE_EVENTS: frozenset[type] = frozenset(
    {
        OrderRejected,
        OrderAccepted,
        OrderFilled,
        OrderCanceled,
        OrderAmended,
        AccountOpened,
        CashDeposited,
        CashWithdrawn,
        SharesIssued,
        RoyaltyPaid,
        RoyaltyCharged,
        KillSwitchChanged,
        AllOrdersCanceled,
        CancelOnDisconnectSet,
        SessionEnded,
    }
)
