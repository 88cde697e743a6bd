"""The reference command stream for order-book benchmarks: one instrument, from a fixed seed.

The stream (the GitHub issue's reference workload, DESIGN.md section 9):
- a warm-up that starts with `initial_resting_orders` resting limit orders around
  `start_price_ticks`, then continues with the mix below;
- then the measured commands, drawn with this mix:
  - 55% limit orders: a third cross the spread (priced 0-10 ticks beyond the opposite best,
    size 1-25); the rest rest 1 + round(Exp(mean 40)) ticks behind the opposite best, size 1-100;
  - 30% cancels of a uniformly chosen resting order;
  - 10% market orders of size 1-25, protected at the opposite best +/- 50 ticks (IOC: the
    remainder, if any, is canceled);
  - 5% amends of a uniformly chosen resting order, done as cancel + new order (new id, same
    owner, side and leaves) 5 ticks higher or lower.

How cancels know which orders rest: the generator drives a small price-time book of its own
(`_ModelBook`) while it draws, with the contract's semantics (best price first, FIFO within a
level, trade at the maker's price, market remainder canceled). So every cancel and amend
targets an order that really rests at that point, in any book with those semantics, and the
model's trade count, volume and final depth are the figures a correct book must reproduce.

No self-trades: each order's owner comes from a pool of `owners` accounts, and an order that
will trade gets an owner none of the makers it will meet has (an amend that would meet its
own owner's order moves away from the spread instead). So self-trade prevention never fires
and books without it (published libraries) see the very same trades.

Everything is generated before any timing, as compact tuples (the layouts are below). Prices
and quantities are ints; `random.Random(seed)` is the only source of randomness, so a seed gives
the same stream in any process under any PYTHONHASHSEED.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Any

# Command kinds: the first field of each command tuple.
LIMIT = 0  # (LIMIT, order_id, owner, side, price_ticks, quantity_units); GTC limit.
MARKET = 1  # (MARKET, order_id, owner, side, protection_price_ticks, quantity_units); IOC.
CANCEL = 2  # (CANCEL, order_id)
AMEND = 3  # (AMEND, old_order_id, new_order_id, owner, side, price_ticks, quantity_units)
KIND_NAMES = ("limit", "market", "cancel", "amend")

# Sides, as ints so the stream does not depend on any book's enum.
BUY = 0
SELL = 1

# The layouts, one alias per kind. Type checkers cannot narrow the `Command` union by its
# first field, so code that has checked the kind casts to the layout it implies.
Limit = tuple[int, int, str, int, int, int]
Market = tuple[int, int, str, int, int, int]
Cancel = tuple[int, int]
Amend = tuple[int, int, int, str, int, int, int]
Command = Limit | Market | Cancel | Amend

DEFAULT_SEED = 20_240_601
STATS_EVERY = 1_000  # Commands between two samples of the book's depth.


@dataclass(frozen=True)
class StreamSpec:
    """What to generate. The defaults are the issue's full reference stream."""

    seed: int = DEFAULT_SEED
    warmup_commands: int = 100_000
    measured_commands: int = 1_000_000
    initial_resting_orders: int = 5_000  # The first warm-up commands: resting limits only.
    start_price_ticks: int = 10_000
    owners: int = 1_000
    # The mix, in percent of commands; it must add up to 100.
    limit_percent: int = 55
    cancel_percent: int = 30
    market_percent: int = 10
    amend_percent: int = 5
    crossing_limit_fraction_denominator: int = 3  # One limit in 3 crosses.
    crossing_ticks_max: int = 10
    crossing_size_max: int = 25
    resting_size_max: int = 100
    resting_distance_mean_ticks: int = 40
    market_size_max: int = 25
    market_protection_ticks: int = 50
    amend_ticks: int = 5

    def __post_init__(self) -> None:
        mix = self.limit_percent + self.cancel_percent + self.market_percent
        if mix + self.amend_percent != 100:
            raise ValueError("the command mix must add up to 100 percent")
        if self.initial_resting_orders > self.warmup_commands:
            raise ValueError("the initial resting orders are part of the warm-up")


QUICK_SPEC = StreamSpec(warmup_commands=20_000, measured_commands=200_000)


@dataclass
class SectionStats:
    """What one section of the stream (warm-up or measured) did to the model book."""

    commands: int = 0
    kinds: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # Indexed by kind.
    crossing_limits: int = 0  # Limit orders priced to cross when drawn.
    trades: int = 0
    volume_units: int = 0
    resting_samples: list[int] = field(default_factory=list)
    level_samples: list[int] = field(default_factory=list)
    spread_samples: list[int] = field(default_factory=list)
    best_bid_min: int = 0
    best_ask_max: int = 0
    resting_end: int = 0
    bid_levels_end: int = 0
    ask_levels_end: int = 0
    best_bid_end: int | None = None
    best_ask_end: int | None = None

    @property
    def levels_end(self) -> int:
        return self.bid_levels_end + self.ask_levels_end


@dataclass
class ReferenceStream:
    spec: StreamSpec
    warmup: list[Command]
    measured: list[Command]
    warmup_stats: SectionStats
    measured_stats: SectionStats


_Order = list[Any]  # [order_id, owner, side, price, leaves, index in `resting`]


class _ModelBook:
    """A small price-time book: just enough to know what rests and what trades.

    Orders are lists [order_id, owner, side, price, leaves, index in `resting`]; each side maps
    a price to an insertion-ordered dict (FIFO) of its orders, and keeps its prices sorted.
    `resting` lists the live order ids so that a uniform random pick is O(1).
    """

    def __init__(self) -> None:
        self.levels: tuple[dict[int, dict[int, _Order]], dict[int, dict[int, _Order]]] = ({}, {})
        self.prices: tuple[list[int], list[int]] = ([], [])  # Ascending, per side.
        self.orders: dict[int, _Order] = {}
        self.resting: list[int] = []
        self.trades = 0
        self.volume_units = 0
        self.last_price_ticks = 0

    def best(self, side: int) -> int | None:
        prices = self.prices[side]
        if not prices:
            return None
        return prices[-1] if side == BUY else prices[0]

    def rest(self, order_id: int, owner: str, side: int, price: int, quantity: int) -> None:
        level = self.levels[side].get(price)
        if level is None:
            level = self.levels[side][price] = {}
            bisect.insort(self.prices[side], price)
        order = [order_id, owner, side, price, quantity, len(self.resting)]
        level[order_id] = order
        self.orders[order_id] = order
        self.resting.append(order_id)

    def remove(self, order: _Order) -> None:
        order_id, _, side, price = order[0], order[1], order[2], order[3]
        level = self.levels[side][price]
        del level[order_id]
        if not level:
            del self.levels[side][price]
            prices = self.prices[side]
            del prices[bisect.bisect_left(prices, price)]
        del self.orders[order_id]
        index = order[5]
        last_id = self.resting.pop()
        if last_id != order_id:
            self.resting[index] = last_id
            self.orders[last_id][5] = index

    def _makers(self, side: int, price: int) -> list[_Order]:
        """Opposite orders a taker at `price` could meet, best first, FIFO (lazily enough)."""
        opposite = 1 - side
        found: list[_Order] = []
        prices = self.prices[opposite]
        ordered = prices if side == BUY else reversed(prices)
        for level_price in ordered:
            if (side == BUY and level_price > price) or (side == SELL and level_price < price):
                break
            found.extend(self.levels[opposite][level_price].values())
            if len(found) > 64:  # Sizes are small: a taker never gets this deep.
                break
        return found

    def maker_owners(self, side: int, price: int, quantity: int) -> set[str]:
        owners: set[str] = set()
        for maker in self._makers(side, price):
            owners.add(maker[1])
            quantity -= maker[4]
            if quantity <= 0:
                break
        return owners

    def take(self, side: int, price: int, quantity: int) -> int:
        """Match a taker; return its leaves."""
        opposite = 1 - side
        prices = self.prices[opposite]
        while quantity and prices:
            best = prices[0] if side == BUY else prices[-1]
            if (side == BUY and best > price) or (side == SELL and best < price):
                break
            level = self.levels[opposite][best]
            while quantity and level:
                maker = next(iter(level.values()))
                filled = min(quantity, maker[4])
                quantity -= filled
                maker[4] -= filled
                self.trades += 1
                self.volume_units += filled
                self.last_price_ticks = best
                if not maker[4]:
                    self.remove(maker)
                    if best not in self.levels[opposite]:
                        break
        return quantity

    def level_count(self) -> int:
        return len(self.prices[BUY]) + len(self.prices[SELL])


class _Generator:
    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.book = _ModelBook()
        self.book.last_price_ticks = spec.start_price_ticks
        self.owners = [f"acct-{index:04d}" for index in range(spec.owners)]
        self.next_order_id = 1
        self.prices: dict[int, int] = {}  # Interning: one int object per price in the stream.
        # Cumulative thresholds of the mix on a uniform [0, 100) draw.
        self.limit_below = spec.limit_percent
        self.cancel_below = self.limit_below + spec.cancel_percent
        self.market_below = self.cancel_below + spec.market_percent
        self.distance_rate = 1 / spec.resting_distance_mean_ticks

    def _uniform(self, high: int) -> int:
        """An int in 1..high (random() is several times faster than randint())."""
        return 1 + int(self.rng.random() * high)

    def _price(self, price: int) -> int:
        return self.prices.setdefault(max(price, 1), max(price, 1))

    def _new_id(self) -> int:
        order_id = self.next_order_id
        self.next_order_id += 1
        return order_id

    def _reference(self, side: int) -> int:
        """The opposite best, or where it would be when that side is empty."""
        opposite_best = self.book.best(1 - side)
        if opposite_best is not None:
            return opposite_best
        own_best = self.book.best(side)
        if own_best is not None:
            return own_best + 1 if side == BUY else own_best - 1
        return self.book.last_price_ticks

    def _owner_for(self, side: int, price: int, quantity: int) -> str:
        index = int(self.rng.random() * len(self.owners))
        blocked = self.book.maker_owners(side, price, quantity)
        while self.owners[index] in blocked:
            index = (index + 1) % len(self.owners)
        return self.owners[index]

    def resting_limit(self, stats: SectionStats) -> Limit:
        side = BUY if self.rng.random() < 0.5 else SELL
        distance = 1 + round(self.rng.expovariate(self.distance_rate))
        reference = self._reference(side)
        price = self._price(reference - distance if side == BUY else reference + distance)
        quantity = self._uniform(self.spec.resting_size_max)
        owner = self.owners[int(self.rng.random() * len(self.owners))]
        return self._place_limit(stats, side, price, quantity, owner)

    def crossing_limit(self, stats: SectionStats) -> Limit:
        side = BUY if self.rng.random() < 0.5 else SELL
        beyond = int(self.rng.random() * (self.spec.crossing_ticks_max + 1))
        reference = self._reference(side)
        price = self._price(reference + beyond if side == BUY else reference - beyond)
        quantity = self._uniform(self.spec.crossing_size_max)
        stats.crossing_limits += 1
        return self._place_limit(
            stats, side, price, quantity, self._owner_for(side, price, quantity)
        )

    def _place_limit(
        self, stats: SectionStats, side: int, price: int, quantity: int, owner: str
    ) -> Limit:
        order_id = self._new_id()
        leaves = self.book.take(side, price, quantity)
        if leaves:
            self.book.rest(order_id, owner, side, price, leaves)
        stats.kinds[LIMIT] += 1
        return (LIMIT, order_id, owner, side, price, quantity)

    def market(self, stats: SectionStats) -> Market:
        side = BUY if self.rng.random() < 0.5 else SELL
        reference = self._reference(side)
        protection = self.spec.market_protection_ticks
        price = self._price(reference + protection if side == BUY else reference - protection)
        quantity = self._uniform(self.spec.market_size_max)
        owner = self._owner_for(side, price, quantity)
        order_id = self._new_id()
        self.book.take(side, price, quantity)  # The remainder is canceled: IOC.
        stats.kinds[MARKET] += 1
        return (MARKET, order_id, owner, side, price, quantity)

    def cancel(self, stats: SectionStats) -> Cancel:
        resting = self.book.resting
        order_id = resting[int(self.rng.random() * len(resting))]
        self.book.remove(self.book.orders[order_id])
        stats.kinds[CANCEL] += 1
        return (CANCEL, order_id)

    def amend(self, stats: SectionStats) -> Amend:
        resting = self.book.resting
        old = self.book.orders[resting[int(self.rng.random() * len(resting))]]
        old_id, owner, side, old_price, leaves = old[0], old[1], old[2], old[3], old[4]
        step = self.spec.amend_ticks if self.rng.random() < 0.5 else -self.spec.amend_ticks
        self.book.remove(old)
        price = self._price(old_price + step)
        if owner in self.book.maker_owners(side, price, leaves):
            # It would meet its own owner's order: move away from the spread instead.
            price = self._price(
                old_price - self.spec.amend_ticks
                if side == BUY
                else old_price + self.spec.amend_ticks
            )
        new_id = self._new_id()
        remaining = self.book.take(side, price, leaves)
        if remaining:
            self.book.rest(new_id, owner, side, price, remaining)
        stats.kinds[AMEND] += 1
        return (AMEND, old_id, new_id, owner, side, price, leaves)

    def _crossing_probability(self) -> float:
        # With a fixed mix nothing pulls the depth back: the book would random-walk (it drifts
        # down by about 0.3 orders per 100 commands). So the share of crossing limits is steered
        # around its nominal value by the depth: a crossing limit removes liquidity, a resting one
        # adds an order. The realized share is in the stats (it stays within a percent or so).
        depth = len(self.book.resting) / self.spec.initial_resting_orders
        nominal = 1 / self.spec.crossing_limit_fraction_denominator
        return nominal * min(max(depth, 0.5), 1.5)

    def draw(self, stats: SectionStats) -> Command:
        roll = self.rng.random() * 100
        if not self.book.resting and roll >= self.limit_below and roll < self.cancel_below:
            roll = 0  # Nothing to cancel: place a limit instead (the stats show the real mix).
        if roll < self.limit_below:
            if self.rng.random() < self._crossing_probability():
                return self.crossing_limit(stats)
            return self.resting_limit(stats)
        if roll < self.cancel_below:
            return self.cancel(stats)
        if roll < self.market_below:
            return self.market(stats)
        if not self.book.resting:
            return self.resting_limit(stats)
        return self.amend(stats)

    def sample(self, stats: SectionStats) -> None:
        book = self.book
        stats.resting_samples.append(len(book.resting))
        stats.level_samples.append(book.level_count())
        bid, ask = book.best(BUY), book.best(SELL)
        if bid is not None and ask is not None:
            stats.spread_samples.append(ask - bid)
        if bid is not None:
            stats.best_bid_min = bid if not stats.best_bid_min else min(stats.best_bid_min, bid)
        if ask is not None:
            stats.best_ask_max = max(stats.best_ask_max, ask)

    def finish(self, stats: SectionStats) -> None:
        book = self.book
        stats.trades = book.trades
        stats.volume_units = book.volume_units
        stats.resting_end = len(book.resting)
        stats.bid_levels_end = len(book.prices[BUY])
        stats.ask_levels_end = len(book.prices[SELL])
        stats.best_bid_end = book.best(BUY)
        stats.best_ask_end = book.best(SELL)
        book.trades = 0
        book.volume_units = 0


def generate(spec: StreamSpec = StreamSpec()) -> ReferenceStream:
    """Draw the whole stream (warm-up and measured) for `spec`; deterministic in its seed."""
    generator = _Generator(spec)
    warmup: list[Command] = []
    warmup_stats = SectionStats()
    for index in range(spec.warmup_commands):
        if index < spec.initial_resting_orders:
            warmup.append(generator.resting_limit(warmup_stats))
        else:
            warmup.append(generator.draw(warmup_stats))
        if index % STATS_EVERY == STATS_EVERY - 1:
            generator.sample(warmup_stats)
    warmup_stats.commands = len(warmup)
    generator.finish(warmup_stats)

    measured: list[Command] = []
    measured_stats = SectionStats()
    for index in range(spec.measured_commands):
        measured.append(generator.draw(measured_stats))
        if index % STATS_EVERY == STATS_EVERY - 1:
            generator.sample(measured_stats)
    measured_stats.commands = len(measured)
    generator.finish(measured_stats)
    return ReferenceStream(spec, warmup, measured, warmup_stats, measured_stats)
