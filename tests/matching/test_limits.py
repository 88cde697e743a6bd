"""Limits of one book, each tested at N (accepted) and N+1 (a typed rejection).

Tables use the format of test_book_scenarios.py (`command => events => book after`). Small
limits keep the tables short; the named defaults are checked at their own N and N+1 below.
"""

from __future__ import annotations

import pytest

from matching import (
    DEFAULT_LIMITS,
    BookEvent,
    BookLimits,
    OrderBook,
    OrderRejected,
    RejectReason,
    Side,
)
from matching.limits import (
    ORDERS_PER_BOOK_MAX,
    PRICE_LEVELS_PER_SIDE_MAX,
    PRICE_TICKS_MAX,
    PRICE_TICKS_MIN,
    QUANTITY_UNITS_MAX,
)
from tests.matching.test_book_scenarios import run_scenario

LIMIT_SCENARIOS: dict[str, tuple[BookLimits, str]] = {}

LIMIT_SCENARIOS["quantity: 1 to quantity_units_max, market orders and amends too"] = (
    BookLimits(quantity_units_max=100),
    """
#1 B alice 100@100     => ok => bids #1 100@100 | asks -
#2 B alice 101@100     => reject INVALID_QUANTITY => bids #1 100@100 | asks -
#3 B alice 0@100       => reject INVALID_QUANTITY => bids #1 100@100 | asks -
#4 B alice 1@100       => ok => bids #1 100@100, #4 1@100 | asks -
#5 S bob 101@100 mkt ioc => reject INVALID_QUANTITY => bids #1 100@100, #4 1@100 | asks -
amend #1 101@100       => reject INVALID_QUANTITY => bids #1 100@100, #4 1@100 | asks -
amend #1 100@99        => amended #1 100@99 left 100 requeued => bids #4 1@100, #1 100@99 | asks -
""",
)
LIMIT_SCENARIOS["price: price_ticks_min to price_ticks_max, protection prices and amends too"] = (
    BookLimits(price_ticks_min=10, price_ticks_max=1000),
    """
#1 B alice 5@10        => ok => bids #1 5@10 | asks -
#2 B alice 5@9         => reject INVALID_PRICE => bids #1 5@10 | asks -
#3 S bob 5@1000        => ok => bids #1 5@10 | asks #3 5@1000
#4 S bob 5@1001        => reject INVALID_PRICE => bids #1 5@10 | asks #3 5@1000
#5 S bob 5@9 mkt ioc   => reject INVALID_PRICE => bids #1 5@10 | asks #3 5@1000
#6 B carol 5@1001 mkt ioc => reject INVALID_PRICE => bids #1 5@10 | asks #3 5@1000
amend #3 5@1001        => reject INVALID_PRICE => bids #1 5@10 | asks #3 5@1000
amend #1 5@9           => reject INVALID_PRICE => bids #1 5@10 | asks #3 5@1000
#7 S bob 5@10 mkt ioc  => ok; fill 5@10 #1/#7 left 0/0 => bids - | asks #3 5@1000
#8 B carol 5@1000 mkt ioc => ok; fill 5@1000 #8/#3 left 0/0 => bids - | asks -
""",
)
LIMIT_SCENARIOS["orders per book: resting orders count, IOC and market orders do not"] = (
    BookLimits(orders_per_book_max=3),
    """
#1 B alice 5@100       => ok => bids #1 5@100 | asks -
#2 B bob 5@100         => ok => bids #1 5@100, #2 5@100 | asks -
#3 S carol 5@105       => ok => bids #1 5@100, #2 5@100 | asks #3 5@105
#4 B dave 5@99         => reject TOO_MANY_ORDERS => bids #1 5@100, #2 5@100 | asks #3 5@105
#5 B dave 5@105        => reject TOO_MANY_ORDERS => bids #1 5@100, #2 5@100 | asks #3 5@105
#6 B dave 5@105 ioc    => ok; fill 5@105 #6/#3 left 0/0 => bids #1 5@100, #2 5@100 | asks -
#7 S erin 2@100 mkt ioc => ok; fill 2@100 #1/#7 left 3/0 => bids #1 3@100, #2 5@100 | asks -
#8 S erin 5@110        => ok => bids #1 3@100, #2 5@100 | asks #8 5@110
#9 S erin 5@111        => reject TOO_MANY_ORDERS => bids #1 3@100, #2 5@100 | asks #8 5@110
cancel #8              => cancel #8 5 user => bids #1 3@100, #2 5@100 | asks -
#9 S erin 5@111        => ok => bids #1 3@100, #2 5@100 | asks #9 5@111
""",
)
LIMIT_SCENARIOS["price levels per side: each side counts its own levels"] = (
    BookLimits(price_levels_per_side_max=2),
    """
#1 B alice 5@100       => ok => bids #1 5@100 | asks -
#2 B bob 5@99          => ok => bids #1 5@100, #2 5@99 | asks -
#3 B carol 5@98        => reject TOO_MANY_PRICE_LEVELS => bids #1 5@100, #2 5@99 | asks -
#4 B carol 5@100       => ok => bids #1 5@100, #4 5@100, #2 5@99 | asks -
#5 S dave 5@101        => ok => bids #1 5@100, #4 5@100, #2 5@99 | asks #5 5@101
#6 S dave 5@102        => ok => bids #1 5@100, #4 5@100, #2 5@99 | asks #5 5@101, #6 5@102
#7 S dave 5@103        => reject TOO_MANY_PRICE_LEVELS
    => bids #1 5@100, #4 5@100, #2 5@99 | asks #5 5@101, #6 5@102
#8 S erin 5@103 ioc    => ok; cancel #8 5 ioc_remainder
    => bids #1 5@100, #4 5@100, #2 5@99 | asks #5 5@101, #6 5@102
amend #2 5@98          => reject TOO_MANY_PRICE_LEVELS
    => bids #1 5@100, #4 5@100, #2 5@99 | asks #5 5@101, #6 5@102
amend #2 5@100         => amended #2 5@100 left 5 requeued
    => bids #1 5@100, #4 5@100, #2 5@100 | asks #5 5@101, #6 5@102
#9 B fay 5@98          => ok => bids #1 5@100, #4 5@100, #2 5@100, #9 5@98 | asks #5 5@101, #6 5@102
""",
)
LIMIT_SCENARIOS["full-book checks: after the auction rule, before post-only; FOK is exempt"] = (
    BookLimits(orders_per_book_max=3, price_levels_per_side_max=1),
    """
#1 S alice 5@100       => ok => bids - | asks #1 5@100
#2 B bob 5@99          => ok => bids #2 5@99 | asks #1 5@100
#3 S carol 5@99 post   => reject TOO_MANY_PRICE_LEVELS => bids #2 5@99 | asks #1 5@100
#4 B carol 5@100 post  => reject TOO_MANY_PRICE_LEVELS => bids #2 5@99 | asks #1 5@100
#5 B carol 5@99 post   => ok => bids #2 5@99, #5 5@99 | asks #1 5@100
#6 B dave 5@98 post    => reject TOO_MANY_ORDERS => bids #2 5@99, #5 5@99 | asks #1 5@100
#7 B dave 9@100 fok    => reject FOK_NOT_FILLABLE => bids #2 5@99, #5 5@99 | asks #1 5@100
#8 B dave 5@100 ioc    => ok; fill 5@100 #8/#1 left 0/0 => bids #2 5@99, #5 5@99 | asks -
auction                => - => auction bids #2 5@99, #5 5@99 | asks -
#9 B dave 5@100 ioc    => reject NOT_ALLOWED_IN_AUCTION => auction bids #2 5@99, #5 5@99 | asks -
#10 S erin 5@101       => ok => auction bids #2 5@99, #5 5@99 | asks #10 5@101
#11 B dave 5@99        => reject TOO_MANY_ORDERS => auction bids #2 5@99, #5 5@99 | asks #10 5@101
#12 B dave 5@99 mkt ioc => ok => auction bids #2 5@99, #5 5@99, #12 5@99 | asks #10 5@101
uncross 100            => uncrossed 0@100 imbalance 0; cancel #12 5 auction_remainder
    => bids #2 5@99, #5 5@99 | asks #10 5@101
""",
)


@pytest.mark.parametrize("name", list(LIMIT_SCENARIOS))
def test_limit_scenario(name: str) -> None:
    limits, table = LIMIT_SCENARIOS[name]
    run_scenario(table, limits=limits)


def test_the_default_limits_are_the_named_constants() -> None:
    assert (
        BookLimits(
            price_ticks_min=PRICE_TICKS_MIN,
            price_ticks_max=PRICE_TICKS_MAX,
            quantity_units_max=QUANTITY_UNITS_MAX,
            price_levels_per_side_max=PRICE_LEVELS_PER_SIDE_MAX,
            orders_per_book_max=ORDERS_PER_BOOK_MAX,
        )
        == DEFAULT_LIMITS
    )


def _reason(events: list[BookEvent]) -> RejectReason | None:
    first = events[0]
    return first.reason if isinstance(first, OrderRejected) else None


def test_default_price_and_quantity_limits_at_n_and_n_plus_one() -> None:
    book = OrderBook()
    assert _reason(book.place(1, "alice", Side.BUY, PRICE_TICKS_MIN, QUANTITY_UNITS_MAX)) is None
    assert _reason(book.place(2, "alice", Side.BUY, PRICE_TICKS_MIN - 1, 1)) is (
        RejectReason.INVALID_PRICE
    )
    assert _reason(book.place(3, "bob", Side.SELL, PRICE_TICKS_MAX, 1)) is None
    assert _reason(book.place(4, "bob", Side.SELL, PRICE_TICKS_MAX + 1, 1)) is (
        RejectReason.INVALID_PRICE
    )
    assert _reason(book.place(5, "bob", Side.SELL, PRICE_TICKS_MAX, QUANTITY_UNITS_MAX + 1)) is (
        RejectReason.INVALID_QUANTITY
    )
    assert len(book) == 2


def test_default_price_levels_per_side_at_n_and_n_plus_one() -> None:
    book = OrderBook()
    for index in range(PRICE_LEVELS_PER_SIDE_MAX):
        assert _reason(book.place(index, "alice", Side.BUY, 1 + index, 1)) is None
    n_plus_one = book.place(-1, "alice", Side.BUY, PRICE_LEVELS_PER_SIDE_MAX + 1, 1)
    assert _reason(n_plus_one) is RejectReason.TOO_MANY_PRICE_LEVELS
    # The ask side counts its own levels.
    assert _reason(book.place(-2, "bob", Side.SELL, PRICE_TICKS_MAX, 1)) is None
    assert len(book.l2(PRICE_LEVELS_PER_SIDE_MAX + 5)[0]) == PRICE_LEVELS_PER_SIDE_MAX
