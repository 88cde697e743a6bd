"""The vocabulary of orders: sides, order types, time in force, STP modes and reasons.

Invariants:
- Every enum value is a stable lower-case string: it is written to the journal and sent on the
  wire, so a value is never renamed or reused.
- Nothing here reads a clock, draws randomness or performs I/O.
"""

from __future__ import annotations

import enum
from typing import NewType

OrderId = NewType("OrderId", int)
Owner = NewType("Owner", str)


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.Enum):
    LIMIT = "limit"
    # A protected market order: it never trades beyond its protection price and its
    # remainder expires; it never rests.
    MARKET = "market"


class TimeInForce(enum.Enum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    GTD = "gtd"
    DAY = "day"


class StpMode(enum.Enum):
    """Self-trade prevention, decided by the taker's mode."""

    EXPIRE_TAKER = "expire_taker"
    EXPIRE_MAKER = "expire_maker"
    EXPIRE_BOTH = "expire_both"
    DECREMENT = "decrement"


class RejectReason(enum.Enum):
    """Why the book refused a command; the codes match the wire's error codes where one fits."""

    VALIDATION_ERROR = "VALIDATION_ERROR"
    INVALID_PRICE = "INVALID_PRICE"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    POST_ONLY_WOULD_TRADE = "POST_ONLY_WOULD_TRADE"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    NOT_ALLOWED_IN_AUCTION = "NOT_ALLOWED_IN_AUCTION"
    TOO_MANY_ORDERS = "TOO_MANY_ORDERS"
    TOO_MANY_PRICE_LEVELS = "TOO_MANY_PRICE_LEVELS"


class CancelReason(enum.Enum):
    """Why (part of) an order left the book without trading."""

    USER = "user"
    OPERATOR = "operator"
    IOC_REMAINDER = "ioc_remainder"
    MARKET_REMAINDER = "market_remainder"
    SELF_TRADE = "self_trade"
    GTD_EXPIRED = "gtd_expired"
    DAY_EXPIRED = "day_expired"
    AUCTION_REMAINDER = "auction_remainder"
    DELISTED = "delisted"
    KILL_SWITCH = "kill_switch"
    DISCONNECT = "disconnect"  # Cancel-on-disconnect: the session that asked for it ended.
