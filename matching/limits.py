"""Named limits of one order book; enforced with typed rejections and tested at N and N+1."""

from __future__ import annotations

import msgspec

PRICE_TICKS_MIN = 1
PRICE_TICKS_MAX = 1_000_000_000
QUANTITY_UNITS_MAX = 1_000_000_000
PRICE_LEVELS_PER_SIDE_MAX = 10_000
ORDERS_PER_BOOK_MAX = 1_000_000


class BookLimits(msgspec.Struct, frozen=True):
    price_ticks_min: int = PRICE_TICKS_MIN
    price_ticks_max: int = PRICE_TICKS_MAX
    quantity_units_max: int = QUANTITY_UNITS_MAX
    price_levels_per_side_max: int = PRICE_LEVELS_PER_SIDE_MAX
    orders_per_book_max: int = ORDERS_PER_BOOK_MAX


DEFAULT_LIMITS = BookLimits()
