"""The rulebook of call auctions: clearing price, allocation, entry STP, market remainders.

Tables use the format of test_book_scenarios.py (`command => events => book after`). The
clearing price maximizes executed volume, then minimizes |imbalance|, then is nearest the
reference price, then is the lower price; the candidate prices are those of the levels and the
reference price itself when it lies between the best ask and the best bid. Allocation is by
price, then time.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matching import IndicativeUncross, clearing_price
from tests.matching.test_book_scenarios import run_scenario

AUCTION_SCENARIOS: dict[str, str] = {}

AUCTION_SCENARIOS["in an auction orders rest without matching, and the book may cross"] = """
auction                => - => auction bids - | asks -
#1 B alice 10@102      => ok => auction bids #1 10@102 | asks -
indicative 100         => none => auction bids #1 10@102 | asks -
#2 S bob 5@99          => ok => auction bids #1 10@102 | asks #2 5@99
indicative 100         => indicative 5@100 imbalance 5 => auction bids #1 10@102 | asks #2 5@99
indicative 104         => indicative 5@102 imbalance 5 => auction bids #1 10@102 | asks #2 5@99
uncross 101            => fill 5@101 #1/#2 left 5/0; uncrossed 5@101 imbalance 5
    => bids #1 5@102 | asks -
"""
AUCTION_SCENARIOS["the clearing price maximizes executed volume"] = """
auction                => - => auction bids - | asks -
#1 B alice 10@102      => ok => auction bids #1 10@102 | asks -
#2 B bob 10@100        => ok => auction bids #1 10@102, #2 10@100 | asks -
#3 S carol 5@99        => ok => auction bids #1 10@102, #2 10@100 | asks #3 5@99
#4 S dave 10@101       => ok => auction bids #1 10@102, #2 10@100 | asks #3 5@99, #4 10@101
indicative 100         => indicative 10@101 imbalance -5
    => auction bids #1 10@102, #2 10@100 | asks #3 5@99, #4 10@101
uncross 100            => fill 5@101 #1/#3 left 5/0; fill 5@101 #1/#4 left 0/5;
    uncrossed 10@101 imbalance -5 => bids #2 10@100 | asks #4 5@101
"""
AUCTION_SCENARIOS["between equal volumes the smaller imbalance wins over the reference"] = """
auction                => - => auction bids - | asks -
#1 B alice 10@101      => ok => auction bids #1 10@101 | asks -
#2 S bob 5@99          => ok => auction bids #1 10@101 | asks #2 5@99
#3 S carol 5@100       => ok => auction bids #1 10@101 | asks #2 5@99, #3 5@100
#4 S dave 3@101        => ok => auction bids #1 10@101 | asks #2 5@99, #3 5@100, #4 3@101
indicative 101         => indicative 10@100 imbalance 0
    => auction bids #1 10@101 | asks #2 5@99, #3 5@100, #4 3@101
uncross 101            => fill 5@100 #1/#2 left 5/0; fill 5@100 #1/#3 left 0/0;
    uncrossed 10@100 imbalance 0 => bids - | asks #4 3@101
"""
AUCTION_SCENARIOS["then the price nearest the reference, the reference itself if it clears"] = """
auction                => - => auction bids - | asks -
#1 B alice 5@101       => ok => auction bids #1 5@101 | asks -
#2 S bob 5@99          => ok => auction bids #1 5@101 | asks #2 5@99
indicative 104         => indicative 5@101 imbalance 0 => auction bids #1 5@101 | asks #2 5@99
indicative 50          => indicative 5@99 imbalance 0 => auction bids #1 5@101 | asks #2 5@99
indicative 100         => indicative 5@100 imbalance 0 => auction bids #1 5@101 | asks #2 5@99
uncross 100            => fill 5@100 #1/#2 left 0/0; uncrossed 5@100 imbalance 0 => bids - | asks -
"""
AUCTION_SCENARIOS["one bid and one ask that cross clear at the reference between them"] = """
auction                => - => auction bids - | asks -
#1 B alice 10@1100     => ok => auction bids #1 10@1100 | asks -
#2 S bob 10@900        => ok => auction bids #1 10@1100 | asks #2 10@900
indicative 1000        => indicative 10@1000 imbalance 0 => auction bids #1 10@1100 | asks #2 10@900
indicative 1100        => indicative 10@1100 imbalance 0 => auction bids #1 10@1100 | asks #2 10@900
indicative 1200        => indicative 10@1100 imbalance 0 => auction bids #1 10@1100 | asks #2 10@900
uncross 1000           => fill 10@1000 #1/#2 left 0/0; uncrossed 10@1000 imbalance 0
    => bids - | asks -
"""
AUCTION_SCENARIOS["market orders on both sides clear at the reference, not at a band edge"] = """
auction                  => - => auction bids - | asks -
#1 S bob 10@90 mkt ioc   => ok => auction bids - | asks #1 10@90
#2 B alice 10@110 mkt ioc => ok => auction bids #2 10@110 | asks #1 10@90
indicative 100           => indicative 10@100 imbalance 0 => auction bids #2 10@110 | asks #1 10@90
uncross 100              => fill 10@100 #2/#1 left 0/0; uncrossed 10@100 imbalance 0
    => bids - | asks -
"""
AUCTION_SCENARIOS["allocation goes by price, then time, at the one clearing price"] = """
auction                => - => auction bids - | asks -
#1 B alice 5@100       => ok => auction bids #1 5@100 | asks -
#2 B bob 5@101         => ok => auction bids #2 5@101, #1 5@100 | asks -
#3 B carol 5@101       => ok => auction bids #2 5@101, #3 5@101, #1 5@100 | asks -
#4 B dave 4@99         => ok => auction bids #2 5@101, #3 5@101, #1 5@100, #4 4@99 | asks -
#5 S erin 8@99         => ok => auction bids #2 5@101, #3 5@101, #1 5@100, #4 4@99 | asks #5 8@99
#6 S fay 4@100         => ok
    => auction bids #2 5@101, #3 5@101, #1 5@100, #4 4@99 | asks #5 8@99, #6 4@100
uncross 90             => fill 5@100 #2/#5 left 0/3; fill 3@100 #3/#5 left 2/0;
    fill 2@100 #3/#6 left 0/2; fill 2@100 #1/#6 left 3/0; uncrossed 12@100 imbalance 3
    => bids #1 3@100, #4 4@99 | asks -
"""
AUCTION_SCENARIOS["with nothing executable the auction ends at the reference, untraded"] = """
auction                => - => auction bids - | asks -
#1 B alice 5@99        => ok => auction bids #1 5@99 | asks -
#2 S bob 5@101         => ok => auction bids #1 5@99 | asks #2 5@101
indicative 100         => none => auction bids #1 5@99 | asks #2 5@101
uncross 100            => uncrossed 0@100 imbalance 0 => bids #1 5@99 | asks #2 5@101
uncross 100            => uncrossed 0@100 imbalance 0 => bids #1 5@99 | asks #2 5@101
"""
AUCTION_SCENARIOS["market orders rest at their protection price; the rest expires at uncross"] = """
auction                  => - => auction bids - | asks -
#1 B alice 3@105 mkt ioc => ok => auction bids #1 3@105 | asks -
#2 S bob 4@100           => ok => auction bids #1 3@105 | asks #2 4@100
#3 B carol 5@101         => ok => auction bids #1 3@105, #3 5@101 | asks #2 4@100
#4 S dave 2@90 mkt ioc   => ok => auction bids #1 3@105, #3 5@101 | asks #4 2@90, #2 4@100
#5 S fay 3@120 mkt ioc   => ok
    => auction bids #1 3@105, #3 5@101 | asks #4 2@90, #2 4@100, #5 3@120
#6 B erin 4@99 mkt ioc   => ok
    => auction bids #1 3@105, #3 5@101, #6 4@99 | asks #4 2@90, #2 4@100, #5 3@120
uncross 100              => fill 2@100 #1/#4 left 1/0; fill 1@100 #1/#2 left 0/3;
    fill 3@100 #3/#2 left 2/0; uncrossed 6@100 imbalance 2;
    cancel #5 3 auction_remainder; cancel #6 4 auction_remainder => bids #3 2@101 | asks -
"""
AUCTION_SCENARIOS["IOC and FOK limits and market FOK cannot enter; post-only may cross"] = """
auction                => - => auction bids - | asks -
#1 B alice 5@100 ioc   => reject NOT_ALLOWED_IN_AUCTION => auction bids - | asks -
#2 B alice 5@100 fok   => reject NOT_ALLOWED_IN_AUCTION => auction bids - | asks -
#3 B alice 5@100 mkt fok => reject NOT_ALLOWED_IN_AUCTION => auction bids - | asks -
#4 B alice 5@100 mkt   => reject VALIDATION_ERROR => auction bids - | asks -
#5 B alice 5@100 post  => ok => auction bids #5 5@100 | asks -
#6 S bob 5@100 post    => ok => auction bids #5 5@100 | asks #6 5@100
uncross 100            => fill 5@100 #5/#6 left 0/0; uncrossed 5@100 imbalance 0 => bids - | asks -
"""
AUCTION_SCENARIOS["auction entry STP expire_taker: the incoming order never rests"] = """
auction                => - => auction bids - | asks -
#1 S alice 5@100       => ok => auction bids - | asks #1 5@100
#2 S alice 5@103       => ok => auction bids - | asks #1 5@100, #2 5@103
#3 B alice 5@101       => ok; cancel #3 5 self_trade => auction bids - | asks #1 5@100, #2 5@103
#4 B alice 5@99        => ok => auction bids #4 5@99 | asks #1 5@100, #2 5@103
#5 B bob 5@101         => ok => auction bids #5 5@101, #4 5@99 | asks #1 5@100, #2 5@103
"""
AUCTION_SCENARIOS["auction entry STP expire_maker: every crossing own order is canceled"] = """
auction                => - => auction bids - | asks -
#1 S alice 5@100       => ok => auction bids - | asks #1 5@100
#2 S bob 5@100         => ok => auction bids - | asks #1 5@100, #2 5@100
#3 S alice 5@101       => ok => auction bids - | asks #1 5@100, #2 5@100, #3 5@101
#4 S alice 5@104       => ok => auction bids - | asks #1 5@100, #2 5@100, #3 5@101, #4 5@104
#5 B alice 6@102 stp:maker => ok; cancel #1 5 self_trade; cancel #3 5 self_trade
    => auction bids #5 6@102 | asks #2 5@100, #4 5@104
"""
AUCTION_SCENARIOS[
    "auction entry STP expire_both: the first crossing own order and the new one"
] = """
auction                => - => auction bids - | asks -
#1 B alice 5@101       => ok => auction bids #1 5@101 | asks -
#2 B alice 5@100       => ok => auction bids #1 5@101, #2 5@100 | asks -
#3 S alice 6@99 stp:both => ok; cancel #1 5 self_trade; cancel #3 6 self_trade
    => auction bids #2 5@100 | asks -
"""
AUCTION_SCENARIOS["auction entry STP decrement: pairwise, the remainder rests"] = """
auction                => - => auction bids - | asks -
#1 S alice 2@100       => ok => auction bids - | asks #1 2@100
#2 S alice 3@101       => ok => auction bids - | asks #1 2@100, #2 3@101
#3 S bob 4@100         => ok => auction bids - | asks #1 2@100, #3 4@100, #2 3@101
#4 B alice 4@101 stp:dec => ok; cancel #1 2 self_trade; cancel #4 2 self_trade left 2;
    cancel #2 2 self_trade left 1; cancel #4 2 self_trade
    => auction bids - | asks #3 4@100, #2 1@101
#5 B alice 3@101 stp:dec => ok; cancel #2 1 self_trade; cancel #5 1 self_trade left 2
    => auction bids #5 2@101 | asks #3 4@100
uncross 100            => fill 2@100 #5/#3 left 0/2; uncrossed 2@100 imbalance -2
    => bids - | asks #3 2@100
"""
AUCTION_SCENARIOS["an amend in an auction rests without matching, under the entry STP rule"] = """
auction                => - => auction bids - | asks -
#1 S alice 5@105       => ok => auction bids - | asks #1 5@105
#2 B alice 5@100       => ok => auction bids #2 5@100 | asks #1 5@105
#3 S bob 5@101         => ok => auction bids #2 5@100 | asks #3 5@101, #1 5@105
amend #2 5@102         => amended #2 5@102 left 5 requeued
    => auction bids #2 5@102 | asks #3 5@101, #1 5@105
amend #2 4@102         => amended #2 4@102 left 4 kept
    => auction bids #2 4@102 | asks #3 5@101, #1 5@105
amend #2 4@105         => amended #2 4@105 left 4 requeued; cancel #2 4 self_trade
    => auction bids - | asks #3 5@101, #1 5@105
"""
AUCTION_SCENARIOS["after the uncross continuous trading resumes"] = """
auction                => - => auction bids - | asks -
#1 B alice 5@101       => ok => auction bids #1 5@101 | asks -
#2 S bob 3@100         => ok => auction bids #1 5@101 | asks #2 3@100
uncross 100            => fill 3@100 #1/#2 left 2/0; uncrossed 3@100 imbalance 2
    => bids #1 2@101 | asks -
#3 S carol 1@101       => ok; fill 1@101 #1/#3 left 1/0 => bids #1 1@101 | asks -
#4 S dave 3@101 ioc    => ok; fill 1@101 #1/#4 left 0/2; cancel #4 2 ioc_remainder
    => bids - | asks -
auction                => - => auction bids - | asks -
"""
AUCTION_SCENARIOS["cancel, amend down and expiry work during an auction"] = """
auction                  => - => auction bids - | asks -
#1 B alice 5@100 gtd:50  => ok => auction bids #1 5@100 | asks -
#2 B bob 5@100 day       => ok => auction bids #1 5@100, #2 5@100 | asks -
#3 S carol 5@100         => ok => auction bids #1 5@100, #2 5@100 | asks #3 5@100
expire 50                => cancel #1 5 gtd_expired => auction bids #2 5@100 | asks #3 5@100
amend #3 2@100           => amended #3 2@100 left 2 kept => auction bids #2 5@100 | asks #3 2@100
expire_day               => cancel #2 5 day_expired => auction bids - | asks #3 2@100
cancel #3                => cancel #3 2 user => auction bids - | asks -
uncross 100              => uncrossed 0@100 imbalance 0 => bids - | asks -
"""


@pytest.mark.parametrize("name", list(AUCTION_SCENARIOS))
def test_auction_scenario(name: str) -> None:
    run_scenario(AUCTION_SCENARIOS[name])


def test_a_book_can_open_in_auction_mode() -> None:
    run_scenario(
        """
#1 B alice 5@101       => ok => auction bids #1 5@101 | asks -
#2 S bob 5@100         => ok => auction bids #1 5@101 | asks #2 5@100
uncross 101            => fill 5@101 #1/#2 left 0/0; uncrossed 5@101 imbalance 0 => bids - | asks -
""",
        in_auction=True,
    )


# ---------------------------------------------------------------------------- clearing price


def test_clearing_price_needs_a_crossed_book() -> None:
    assert clearing_price([], [], 100) is None
    assert clearing_price([(100, 5)], [], 100) is None
    assert clearing_price([(99, 5)], [(100, 5)], 100) is None


def test_clearing_price_worked_example_of_the_module_docstring() -> None:
    bids, asks = [(102, 10), (100, 10)], [(99, 5), (101, 10)]
    assert clearing_price(bids, asks, 100) == IndicativeUncross(101, 10, -5)
    # Far above the range, the reference pulls to the higher of the tied prices.
    assert clearing_price(bids, asks, 200) == IndicativeUncross(102, 10, -5)
    # The second example: the reference between the best ask and the best bid is a candidate.
    assert clearing_price([(1100, 10)], [(900, 10)], 1000) == IndicativeUncross(1000, 10, 0)


def test_the_reference_price_is_a_candidate_only_between_the_best_ask_and_the_best_bid() -> None:
    bids, asks = [(102, 10), (98, 5)], [(98, 10), (102, 5)]
    # At 98 the buyers have 5 more, at 102 the sellers do: between, 10 against 10 clears evenly.
    assert clearing_price(bids, asks, 100) == IndicativeUncross(100, 10, 0)
    assert clearing_price(bids, asks, 99) == IndicativeUncross(99, 10, 0)
    # Outside [best ask, best bid] only the levels compete; the nearer one wins the tie.
    assert clearing_price(bids, asks, 150) == IndicativeUncross(102, 10, -5)
    assert clearing_price(bids, asks, 50) == IndicativeUncross(98, 10, 5)
    # A reference price between the levels never turns an uncrossed book into an auction.
    assert clearing_price([(99, 5)], [(101, 5)], 100) is None


def _brute_force(
    bids: list[tuple[int, int]], asks: list[tuple[int, int]], reference: int
) -> IndicativeUncross | None:
    # The rule as written, over every distinct price of the book and the reference price when
    # it lies between the best ask and the best bid, no shortcut.
    best: tuple[int, int, int, int] | None = None
    prices = {p for p, _ in bids} | {p for p, _ in asks}
    if bids and asks and min(p for p, _ in asks) <= reference <= max(p for p, _ in bids):
        prices.add(reference)
    for price in sorted(prices):
        buy = sum(q for p, q in bids if p >= price)
        sell = sum(q for p, q in asks if p <= price)
        if min(buy, sell) == 0:
            continue
        key = (-min(buy, sell), abs(buy - sell), abs(price - reference), price)
        best = key if best is None or key < best else best
    if best is None:
        return None
    price = best[3]
    buy = sum(q for p, q in bids if p >= price)
    sell = sum(q for p, q in asks if p <= price)
    return IndicativeUncross(price, min(buy, sell), buy - sell)


_levels = st.dictionaries(st.integers(90, 110), st.integers(1, 20), max_size=8)


@settings(max_examples=400, derandomize=True, deadline=None)
@given(bid_levels=_levels, ask_levels=_levels, reference=st.integers(80, 120))
def test_clearing_price_agrees_with_the_rule_as_written(
    bid_levels: dict[int, int], ask_levels: dict[int, int], reference: int
) -> None:
    # derandomize=True: the examples are a fixed function of the test, replayable as is.
    bids = sorted(bid_levels.items(), reverse=True)
    asks = sorted(ask_levels.items())
    assert clearing_price(bids, asks, reference) == _brute_force(bids, asks, reference)
