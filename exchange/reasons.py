"""Why the exchange refused a command: stable string codes, shared with the wire.

Invariants:
- A code is never renamed or reused: clients and the journal depend on it.
- The same bad command always gets the same reason. The order of checks (the precedence) is
  documented where each command is handled (see exchange/core.py) and tested.
"""

from __future__ import annotations

import enum


class Reject(enum.Enum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    FORBIDDEN = "FORBIDDEN"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    UNKNOWN_ASSET = "UNKNOWN_ASSET"
    ASSET_EXPIRED = "ASSET_EXPIRED"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    MARKET_CLOSED = "MARKET_CLOSED"
    TRADING_HALTED = "TRADING_HALTED"
    NOT_ALLOWED_IN_AUCTION = "NOT_ALLOWED_IN_AUCTION"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"
    INSUFFICIENT_SHARES = "INSUFFICIENT_SHARES"
    INVALID_PRICE_INCREMENT = "INVALID_PRICE_INCREMENT"
    INVALID_QUANTITY = "INVALID_QUANTITY"
    PRICE_BAND = "PRICE_BAND"
    DUPLICATE_CL_ORD_ID = "DUPLICATE_CL_ORD_ID"
    DUPLICATE_DISTRIBUTION = "DUPLICATE_DISTRIBUTION"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    TOO_LATE_TO_CANCEL = "TOO_LATE_TO_CANCEL"
    POST_ONLY_WOULD_TRADE = "POST_ONLY_WOULD_TRADE"
    FOK_NOT_FILLABLE = "FOK_NOT_FILLABLE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
