"""The reference stream of the benchmarks: the same seed gives the same commands, in the mix
the issue states, and its cancels and amends target orders that really rest.

The seed is fixed; set IPX_BENCH_SEED to replay the checks on another one.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import cast

import pytest

from bench import reference_stream as rs

SEED = int(os.environ.get("IPX_BENCH_SEED", rs.DEFAULT_SEED))
# Small enough to generate in a fraction of a second, long enough for the mix to settle.
SPEC = rs.StreamSpec(seed=SEED, warmup_commands=10_000, measured_commands=40_000)


@pytest.fixture(scope="module")
def stream() -> rs.ReferenceStream:
    print(f"reference stream seed {SEED} (replay with IPX_BENCH_SEED={SEED})")
    return rs.generate(SPEC)


def test_the_same_seed_gives_the_same_stream(stream: rs.ReferenceStream) -> None:
    again = rs.generate(SPEC)
    assert again.warmup == stream.warmup
    assert again.measured == stream.measured


def test_another_seed_gives_another_stream(stream: rs.ReferenceStream) -> None:
    other = rs.generate(rs.StreamSpec(seed=SEED + 1, warmup_commands=10_000, measured_commands=2))
    assert other.warmup != stream.warmup


def test_the_warmup_opens_with_the_initial_resting_orders(stream: rs.ReferenceStream) -> None:
    opening = stream.warmup[: SPEC.initial_resting_orders]
    assert all(command[0] == rs.LIMIT for command in opening)
    assert len(stream.warmup) == SPEC.warmup_commands
    assert len(stream.measured) == SPEC.measured_commands


def test_the_measured_mix_is_55_30_10_5(stream: rs.ReferenceStream) -> None:
    kinds = Counter(command[0] for command in stream.measured)
    shares = {kind: 100 * kinds[kind] / len(stream.measured) for kind in kinds}
    # At 40,000 draws one standard deviation of a share is at most 0.25 points.
    assert shares[rs.LIMIT] == pytest.approx(55, abs=1.5)
    assert shares[rs.CANCEL] == pytest.approx(30, abs=1.5)
    assert shares[rs.MARKET] == pytest.approx(10, abs=1.0)
    assert shares[rs.AMEND] == pytest.approx(5, abs=1.0)
    stats = stream.measured_stats
    assert stats.kinds == [kinds[rs.LIMIT], kinds[rs.MARKET], kinds[rs.CANCEL], kinds[rs.AMEND]]
    assert stats.crossing_limits / stats.kinds[rs.LIMIT] == pytest.approx(1 / 3, abs=0.03)


def test_prices_and_sizes_are_integers_in_their_ranges(stream: rs.ReferenceStream) -> None:
    for command in [*stream.warmup, *stream.measured]:
        assert all(type(value) is int for value in command if not isinstance(value, str))
        kind = command[0]
        if kind == rs.CANCEL:
            continue
        quantity = command[-1]
        price = command[-2]
        assert 9_000 < price < 11_000  # "Prices around 10,000 ticks".
        if kind == rs.MARKET:
            assert 1 <= quantity <= SPEC.market_size_max
        else:
            assert 1 <= quantity <= SPEC.resting_size_max


def test_the_book_holds_about_5000_orders_over_about_400_levels(
    stream: rs.ReferenceStream,
) -> None:
    stats = stream.measured_stats
    assert 4_000 <= min(stats.resting_samples) <= max(stats.resting_samples) <= 6_000
    assert 300 <= min(stats.level_samples) <= max(stats.level_samples) <= 480
    assert stats.trades > 0 and stats.volume_units >= stats.trades


def test_a_contract_book_replays_it_without_a_rejection(stream: rs.ReferenceStream) -> None:
    # Cancels and amends must hit resting orders, and no order may meet its own owner's, in any
    # book with the contract's semantics: the engine then ends exactly where the model did.
    from matching.book import OrderBook
    from matching.events import OrderCanceled, OrderFilled, OrderRejected
    from matching.orders import OrderType, Side, TimeInForce

    sides = (Side.BUY, Side.SELL)
    book, trades, volume = OrderBook(), 0, 0
    for command in [*stream.warmup, *stream.measured]:
        kind = command[0]
        if kind == rs.CANCEL:
            events = book.cancel(command[1])
        elif kind == rs.AMEND:
            _, old_id, new_id, owner, side, price, quantity = cast(rs.Amend, command)
            events = book.cancel(old_id) + book.place(new_id, owner, sides[side], price, quantity)
        else:  # A limit or a market order: one layout.
            _, order_id, owner, side, price, quantity = cast(rs.Limit, command)
            flags = (OrderType.MARKET, TimeInForce.IOC) if kind == rs.MARKET else ()
            events = book.place(order_id, owner, sides[side], price, quantity, *flags)
        for event in events:
            assert not isinstance(event, OrderRejected), (command, event)
            if isinstance(event, OrderCanceled):
                assert event.reason.value in ("user", "market_remainder"), (command, event)
            if isinstance(event, OrderFilled):
                trades += 1
                volume += event.quantity_units
    end = stream.measured_stats
    assert len(book) == end.resting_end
    bids, asks = book.l2(10_000)
    assert (len(bids), len(asks)) == (end.bid_levels_end, end.ask_levels_end)
    assert trades == stream.warmup_stats.trades + end.trades
    assert volume == stream.warmup_stats.volume_units + end.volume_units
