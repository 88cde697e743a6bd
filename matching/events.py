"""Events the order book emits: the only way the outside world learns what a command did.

Invariants:
- Events are frozen values in a tagged union; the same commands on the same book give the
  same events, in the same order, in any process.
- For every order at every moment:
  quantity_units = filled units + leaves_units + canceled units (STP-prevented included).
- An `OrderFilled` never has the same owner on both sides.
"""

from __future__ import annotations

import msgspec

from matching.orders import CancelReason, OrderType, RejectReason, Side, TimeInForce

# gc=False: events hold only ints, strings and enums, so they cannot form reference cycles;
# skipping GC tracking keeps the hot path fast.


class OrderAccepted(msgspec.Struct, frozen=True, gc=False, tag="order_accepted"):
    """The order passed the book's checks; fills (if any) follow, then it rests or ends."""

    order_id: int
    owner: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price_ticks: int  # For a market order: its protection price.
    quantity_units: int


class OrderRejected(msgspec.Struct, frozen=True, gc=False, tag="order_rejected"):
    """The command changed nothing."""

    order_id: int
    owner: str
    reason: RejectReason
    message: str


class OrderFilled(msgspec.Struct, frozen=True, gc=False, tag="order_filled"):
    """One match between a buy and a sell order: a trade, reported for both sides."""

    trade_id: int  # Per book, counting from 1.
    price_ticks: int
    quantity_units: int
    buy_order_id: int
    buy_owner: str
    buy_leaves_units: int
    sell_order_id: int
    sell_owner: str
    sell_leaves_units: int
    # The taker's side in continuous trading; None for a trade made by an auction uncross.
    aggressor_side: Side | None


class OrderCanceled(msgspec.Struct, frozen=True, gc=False, tag="order_canceled"):
    """Units of an order left the book without trading (cancel, expiry, STP, remainder)."""

    order_id: int
    owner: str
    side: Side
    price_ticks: int
    canceled_units: int
    # Units still live after this event: 0 unless an STP decrement only reduced the order.
    leaves_units: int
    reason: CancelReason


class OrderAmended(msgspec.Struct, frozen=True, gc=False, tag="order_amended"):
    """A resting order took a new price and/or total quantity."""

    order_id: int
    owner: str
    side: Side
    price_ticks: int
    quantity_units: int  # The new total quantity (filled units included).
    leaves_units: int
    priority_kept: bool


class AuctionUncrossed(msgspec.Struct, frozen=True, gc=False, tag="auction_uncrossed"):
    """A call auction cleared at one price; its fills came just before this event."""

    price_ticks: int
    volume_units: int
    # Buy surplus at the clearing price if positive, sell surplus if negative.
    imbalance_units: int


class IndicativeUncross(msgspec.Struct, frozen=True, gc=False):
    """What an uncross would do now: published while an auction is open."""

    price_ticks: int
    volume_units: int
    imbalance_units: int


BookEvent = (
    OrderAccepted | OrderRejected | OrderFilled | OrderCanceled | OrderAmended | AuctionUncrossed
)
