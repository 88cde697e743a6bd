"""Read-only views of a book, and the canonical digest that says two books are equal.

Invariants:
- `book_state_hash` depends only on what a book holds (mode, trade counter, and every live
  order with its priority), never on how it is stored inside (lazy-cancel tombstones, caches),
  so a fast book and a naive reference book holding the same orders give the same digest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import msgspec

from matching.orders import OrderType, Side, StpMode, TimeInForce


class OrderView(msgspec.Struct, frozen=True, gc=False):
    order_id: int
    owner: str
    side: Side
    price_ticks: int
    quantity_units: int  # Total quantity; filled + leaves + canceled (STP) units.
    filled_units: int
    leaves_units: int
    time_in_force: TimeInForce
    stp_mode: StpMode
    post_only: bool
    expire_ts_ns: int  # 0 unless GTD.
    # A market order rests only in auction mode (at its protection price) until the uncross.
    order_type: OrderType = OrderType.LIMIT


_hash_encoder = msgspec.msgpack.Encoder()


def _order_row(order: OrderView) -> tuple[object, ...]:
    return (
        order.order_id,
        order.owner,
        order.price_ticks,
        order.quantity_units,
        order.filled_units,
        order.leaves_units,
        order.time_in_force.value,
        order.stp_mode.value,
        order.post_only,
        order.expire_ts_ns,
        order.order_type.value,
    )


def book_state_hash(
    in_auction: bool,
    next_trade_id: int,
    bids: Iterable[OrderView],
    asks: Iterable[OrderView],
) -> bytes:
    """Digest a book: bids and asks each in priority order (best price first, then FIFO)."""
    payload = (
        in_auction,
        next_trade_id,
        [_order_row(order) for order in bids],
        [_order_row(order) for order in asks],
    )
    return hashlib.sha256(_hash_encoder.encode(payload)).digest()
