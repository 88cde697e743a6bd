"""Matching engine of IPX: one price-time priority order book per instrument.

Invariants:
- A leaf package: imports nothing from ledger/, exchange/ or gateway/.
- Pure: no clock, no randomness, no I/O; integers only for prices and quantities.
"""

from __future__ import annotations

from matching.auction import clearing_price
from matching.book import OrderBook
from matching.events import (
    AuctionUncrossed,
    BookEvent,
    IndicativeUncross,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from matching.limits import DEFAULT_LIMITS, BookLimits
from matching.orders import (
    CancelReason,
    OrderId,
    OrderType,
    Owner,
    RejectReason,
    Side,
    StpMode,
    TimeInForce,
)
from matching.views import OrderView, book_state_hash

__all__ = [
    "DEFAULT_LIMITS",
    "AuctionUncrossed",
    "BookEvent",
    "BookLimits",
    "CancelReason",
    "IndicativeUncross",
    "OrderAccepted",
    "OrderAmended",
    "OrderBook",
    "OrderCanceled",
    "OrderFilled",
    "OrderId",
    "OrderRejected",
    "OrderType",
    "OrderView",
    "Owner",
    "RejectReason",
    "Side",
    "StpMode",
    "TimeInForce",
    "book_state_hash",
    "clearing_price",
]
