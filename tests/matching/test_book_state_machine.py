"""Hypothesis drives the book with any sequence of commands; the rules of the exchange must hold.

After every step (invariants) and for every event (checked as it is observed):
- the book is never crossed outside an auction, and `indicative` finds nothing to clear;
- bids descend and asks ascend in l3; within a level orders keep arrival order (FIFO), where
  arrival is what the events told us (acceptance, or an amend that lost priority);
- every order conserves its units: quantity = filled + canceled + leaves, summed from the
  events, and equal to what l3 and order(id) report;
- no fill has the same owner on both sides; a continuous fill prints at the maker's price;
  an auction's fills all print at its clearing price and add up to its volume;
- l2 quantities are the sums of l3 leaves; best bid/ask are l2's first levels;
- len(book) is the number of live orders; a rejection changes nothing (same state_hash);
- in an auction no owner has a buy at or above its own sell (STP at entry).

The same machine runs on the naive reference book too, as a check of the checker.
Replay: IPX_SEED=<seed> .venv/bin/pytest tests/matching/test_book_state_machine.py
(IPX_STATEFUL_EXAMPLES=<n> runs more examples on the engine, for a longer hunt).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    initialize,
    invariant,
    precondition,
    rule,
)

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
from matching.limits import BookLimits
from matching.orders import CancelReason, OrderType, Side, StpMode, TimeInForce
from matching.views import OrderView, book_state_hash
from tests.matching.random_commands import Book
from tests.matching.reference_book import ReferenceBook

ENGINE_EXAMPLES = int(os.environ.get("IPX_STATEFUL_EXAMPLES", "1000"))
REFERENCE_EXAMPLES = 40
STEPS_PER_EXAMPLE = 40
SEED = (
    int(os.environ["IPX_SEED"])
    if os.environ.get("IPX_SEED")
    else random.SystemRandom().randrange(1 << 32)
)

LIMITS = (
    BookLimits(
        price_ticks_min=96,
        price_ticks_max=104,
        quantity_units_max=20,
        price_levels_per_side_max=3,
        orders_per_book_max=8,
    ),
    BookLimits(price_ticks_min=96, price_ticks_max=104, quantity_units_max=20),
)
OWNERS = ("ann", "bob", "cat")
# Mostly valid shapes of an order, plus three the contract rejects (VALIDATION_ERROR).
ORDER_SHAPES = (
    (OrderType.LIMIT, TimeInForce.GTC, False),
    (OrderType.LIMIT, TimeInForce.GTC, True),
    (OrderType.LIMIT, TimeInForce.GTD, False),
    (OrderType.LIMIT, TimeInForce.GTD, True),
    (OrderType.LIMIT, TimeInForce.DAY, False),
    (OrderType.LIMIT, TimeInForce.IOC, False),
    (OrderType.LIMIT, TimeInForce.FOK, False),
    (OrderType.MARKET, TimeInForce.IOC, False),
    (OrderType.MARKET, TimeInForce.FOK, False),
    (OrderType.MARKET, TimeInForce.GTC, False),
    (OrderType.MARKET, TimeInForce.IOC, True),
    (OrderType.LIMIT, TimeInForce.IOC, True),
)
order_ids = st.integers(1, 24)
prices = st.integers(95, 105)  # One tick beyond each limit: INVALID_PRICE is reachable.
quantities = st.integers(0, 21)


@dataclass
class Tracked:
    """One order as the events describe it (never read from the book)."""

    owner: str
    side: Side
    order_type: OrderType
    price_ticks: int
    quantity_units: int
    arrival: int
    filled_units: int = 0
    canceled_units: int = 0
    leaves_units: int = 0

    def check_conservation(self, order_id: int) -> None:
        used = self.filled_units + self.canceled_units
        assert self.quantity_units == used + self.leaves_units, (
            f"order {order_id}: quantity {self.quantity_units} != filled {self.filled_units}"
            f" + canceled {self.canceled_units} + leaves {self.leaves_units}"
        )
        assert self.leaves_units >= 0, f"order {order_id}: negative leaves"


class BookMachine(RuleBasedStateMachine):
    """Any command sequence on one book; the subclass says which book."""

    make_book: Callable[[BookLimits, bool], Book]
    examples_run = 0
    steps_run = 0

    def __init__(self) -> None:
        super().__init__()
        type(self).examples_run += 1
        self.book: Book = self.make_book(LIMITS[1], False)
        self.orders: dict[int, Tracked] = {}
        self.next_arrival = 1
        self.fills_seen = 0
        self.now_ts_ns = 1

    @initialize(limits=st.sampled_from(LIMITS), in_auction=st.booleans())
    def open_book(self, limits: BookLimits, in_auction: bool) -> None:
        self.book = self.make_book(limits, in_auction)

    # ----------------------------------------------------------------------------- rules

    @rule(
        order_id=order_ids,
        owner=st.sampled_from(OWNERS),
        side=st.sampled_from(Side),
        price_ticks=prices,
        quantity_units=quantities,
        shape=st.sampled_from(ORDER_SHAPES),
        stp_mode=st.sampled_from(StpMode),
        expire_in=st.integers(0, 12),
        bad_expiry=st.integers(0, 15),
    )
    def place(
        self,
        order_id: int,
        owner: str,
        side: Side,
        price_ticks: int,
        quantity_units: int,
        shape: tuple[OrderType, TimeInForce, bool],
        stp_mode: StpMode,
        expire_in: int,
        bad_expiry: int,
    ) -> None:
        order_type, time_in_force, post_only = shape
        expire_ts_ns = self.now_ts_ns + expire_in if time_in_force is TimeInForce.GTD else 0
        if bad_expiry == 0:  # Now and then a GTD without expiry, or a GTC with one.
            expire_ts_ns = 0 if expire_ts_ns else self.now_ts_ns
        self._run(
            lambda: self.book.place(
                order_id,
                owner,
                side,
                price_ticks,
                quantity_units,
                order_type=order_type,
                time_in_force=time_in_force,
                post_only=post_only,
                stp_mode=stp_mode,
                expire_ts_ns=expire_ts_ns,
            )
        )

    @rule(order_id=order_ids, reason=st.sampled_from(CancelReason))
    def cancel(self, order_id: int, reason: CancelReason) -> None:
        self._run(lambda: self.book.cancel(order_id, reason))

    @rule(order_id=order_ids, price_ticks=prices, quantity_units=st.integers(0, 24))
    def amend(self, order_id: int, price_ticks: int, quantity_units: int) -> None:
        self._run(lambda: self.book.amend(order_id, price_ticks, quantity_units))

    @rule(elapsed=st.integers(0, 8))
    def expire(self, elapsed: int) -> None:
        self.now_ts_ns += elapsed
        self._run(lambda: self.book.expire(self.now_ts_ns))

    @rule()
    def expire_day(self) -> None:
        self._run(self.book.expire_day)

    @precondition(lambda self: not self.book.in_auction)
    @rule()
    def start_auction(self) -> None:
        self._run(self._start_auction)
        assert self.book.in_auction

    def _start_auction(self) -> list[BookEvent]:
        self.book.start_auction()
        return []

    @precondition(lambda self: self.book.in_auction)
    @rule(reference_price_ticks=st.integers(94, 106))
    def uncross(self, reference_price_ticks: int) -> None:
        expected = self.book.indicative(reference_price_ticks)
        events = self._run(lambda: self.book.uncross(reference_price_ticks))
        self._check_uncross(events, expected, reference_price_ticks)
        assert not self.book.in_auction, "an uncross ends the auction"

    # ----------------------------------------------------------------------------- events

    def _run(self, command: Callable[[], list[BookEvent]]) -> list[BookEvent]:
        type(self).steps_run += 1
        hash_before = self.book.state_hash()
        in_auction = self.book.in_auction
        events = command()
        if len(events) == 1 and isinstance(events[0], OrderRejected):
            assert self.book.state_hash() == hash_before, "a rejection changed the book"
        for event in events:
            assert not isinstance(event, OrderRejected) or len(events) == 1, events
            self._observe(event, in_auction)
        return events

    def _observe(self, event: BookEvent, in_auction: bool) -> None:
        if isinstance(event, OrderAccepted):
            self._observe_accepted(event)
        elif isinstance(event, OrderFilled):
            self._observe_fill(event, in_auction)
        elif isinstance(event, OrderCanceled):
            tracked = self.orders[event.order_id]
            assert event.canceled_units > 0, event
            assert (event.owner, event.side) == (tracked.owner, tracked.side), event
            tracked.canceled_units += event.canceled_units
            tracked.leaves_units = event.leaves_units
            tracked.check_conservation(event.order_id)
        elif isinstance(event, OrderAmended):
            tracked = self.orders[event.order_id]
            tracked.price_ticks = event.price_ticks
            tracked.quantity_units = event.quantity_units
            tracked.leaves_units = event.leaves_units
            if not event.priority_kept:
                tracked.arrival = self._take_arrival()
            tracked.check_conservation(event.order_id)

    def _take_arrival(self) -> int:
        self.next_arrival += 1
        return self.next_arrival

    def _observe_accepted(self, event: OrderAccepted) -> None:
        previous = self.orders.get(event.order_id)
        assert previous is None or previous.leaves_units == 0, f"live id reused: {event}"
        self.orders[event.order_id] = Tracked(
            owner=event.owner,
            side=event.side,
            order_type=event.order_type,
            price_ticks=event.price_ticks,
            quantity_units=event.quantity_units,
            arrival=self._take_arrival(),
            leaves_units=event.quantity_units,
        )

    def _observe_fill(self, event: OrderFilled, in_auction: bool) -> None:
        assert event.buy_owner != event.sell_owner, f"self-trade printed: {event}"
        assert event.quantity_units > 0, event
        self.fills_seen += 1
        buy, sell = self.orders[event.buy_order_id], self.orders[event.sell_order_id]
        assert (buy.side, sell.side) == (Side.BUY, Side.SELL), event
        assert (buy.owner, sell.owner) == (event.buy_owner, event.sell_owner), event
        # Every fill happens at a price both orders accept.
        assert sell.price_ticks <= event.price_ticks <= buy.price_ticks, event
        if in_auction:
            assert event.aggressor_side is None, event
        else:
            assert event.aggressor_side is not None, event
            maker = sell if event.aggressor_side is Side.BUY else buy
            assert event.price_ticks == maker.price_ticks, f"not at the maker's price: {event}"
        for tracked, leaves, order_id in (
            (buy, event.buy_leaves_units, event.buy_order_id),
            (sell, event.sell_leaves_units, event.sell_order_id),
        ):
            tracked.filled_units += event.quantity_units
            tracked.leaves_units = leaves
            tracked.check_conservation(order_id)

    def _check_uncross(
        self,
        events: list[BookEvent],
        expected: IndicativeUncross | None,
        reference_price_ticks: int,
    ) -> None:
        fills = [event for event in events if isinstance(event, OrderFilled)]
        summaries = [event for event in events if isinstance(event, AuctionUncrossed)]
        assert len(summaries) == 1, events
        summary = summaries[0]
        assert events.index(summary) == len(fills), "fills come just before AuctionUncrossed"
        assert sum(fill.quantity_units for fill in fills) == summary.volume_units, events
        assert all(fill.price_ticks == summary.price_ticks for fill in fills), events
        if expected is None:
            assert (summary.price_ticks, summary.volume_units) == (reference_price_ticks, 0)
        else:
            assert expected == IndicativeUncross(
                summary.price_ticks, summary.volume_units, summary.imbalance_units
            ), f"indicative {expected} but uncross {summary}"
        for event in events[len(fills) + 1 :]:
            assert isinstance(event, OrderCanceled), events
            assert event.reason is CancelReason.AUCTION_REMAINDER, events
        assert all(
            tracked.order_type is OrderType.LIMIT
            for tracked in self.orders.values()
            if tracked.leaves_units > 0
        ), "a market order outlived its auction"

    # ----------------------------------------------------------------------------- invariants

    def _live(self) -> dict[int, Tracked]:
        return {oid: tracked for oid, tracked in self.orders.items() if tracked.leaves_units > 0}

    @invariant()
    def not_crossed_outside_an_auction(self) -> None:
        if self.book.in_auction:
            return
        bid, ask = self.book.best_bid(), self.book.best_ask()
        assert bid is None or ask is None or bid[0] < ask[0], f"crossed: {bid} / {ask}"
        assert self.book.indicative(100) is None, "a continuous book has nothing to uncross"

    @invariant()
    def l3_is_in_priority_order_and_fifo(self) -> None:
        bids, asks = self.book.l3()
        for side, views, sign in ((Side.BUY, bids, -1), (Side.SELL, asks, 1)):
            assert all(view.side is side for view in views), views
            keys = [(sign * view.price_ticks, self.orders[view.order_id].arrival) for view in views]
            assert keys == sorted(keys), f"{side.value} side out of price-time order: {views}"

    @invariant()
    def live_orders_match_the_events(self) -> None:
        bids, asks = self.book.l3()
        views = {view.order_id: view for view in bids + asks}
        live = self._live()
        assert sorted(views) == sorted(live), f"book holds {sorted(views)}, events say {live}"
        assert len(self.book) == len(live)
        for order_id, tracked in live.items():
            view = views[order_id]
            self._check_view(view, tracked)
            assert self.book.order(order_id) == view
        for order_id in self.orders.keys() - live.keys():
            assert self.book.order(order_id) is None, f"finished order {order_id} still visible"

    def _check_view(self, view: OrderView, tracked: Tracked) -> None:
        assert (view.owner, view.price_ticks) == (tracked.owner, tracked.price_ticks), view
        assert view.quantity_units == tracked.quantity_units, (view, tracked)
        assert view.filled_units == tracked.filled_units, (view, tracked)
        assert view.leaves_units == tracked.leaves_units, (view, tracked)
        assert view.order_type is tracked.order_type, (view, tracked)
        unrested = view.time_in_force in (TimeInForce.IOC, TimeInForce.FOK)
        # Only an auction lets an IOC (market) order rest; FOK never rests.
        assert not unrested or (self.book.in_auction and tracked.order_type is OrderType.MARKET), (
            f"IOC/FOK order resting: {view}"
        )

    @invariant()
    def l2_sums_l3(self) -> None:
        bids, asks = self.book.l3()
        l2_bids, l2_asks = self.book.l2(1000)
        for views, levels in ((bids, l2_bids), (asks, l2_asks)):
            sums: dict[int, int] = {}
            for view in views:
                sums[view.price_ticks] = sums.get(view.price_ticks, 0) + view.leaves_units
            assert sorted(levels) == sorted(sums.items()), (levels, sums)
        assert l2_bids == sorted(l2_bids, reverse=True), l2_bids
        assert l2_asks == sorted(l2_asks), l2_asks
        assert self.book.best_bid() == (l2_bids[0] if l2_bids else None)
        assert self.book.best_ask() == (l2_asks[0] if l2_asks else None)
        assert self.book.l2(1) == (l2_bids[:1], l2_asks[:1])

    @invariant()
    def hash_and_trade_counter_agree(self) -> None:
        book = self.book
        assert book.next_trade_id == 1 + self.fills_seen
        assert book.state_hash() == book_state_hash(book.in_auction, book.next_trade_id, *book.l3())

    @invariant()
    def no_owner_crosses_itself_in_an_auction(self) -> None:
        if not self.book.in_auction:
            return
        bids, asks = self.book.l3()
        for owner in OWNERS:
            own_bids = [view.price_ticks for view in bids if view.owner == owner]
            own_asks = [view.price_ticks for view in asks if view.owner == owner]
            if own_bids and own_asks:
                assert max(own_bids) < min(own_asks), f"{owner} crosses itself: {bids} {asks}"


class EngineMachine(BookMachine):
    make_book = staticmethod(
        lambda limits, in_auction: OrderBook(limits=limits, in_auction=in_auction)
    )


class ReferenceMachine(BookMachine):
    make_book = staticmethod(
        lambda limits, in_auction: ReferenceBook(limits=limits, in_auction=in_auction)
    )


def _run_machine(machine: type[BookMachine], examples: int) -> None:
    machine.examples_run = machine.steps_run = 0
    test = get_state_machine_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    started = time.monotonic()
    print(f"state machine {machine.__name__}: IPX_SEED={SEED}")
    hypothesis_seed(SEED)(test)()
    print(
        f"state machine {machine.__name__}: {machine.examples_run} examples, "
        f"{machine.steps_run} steps in {time.monotonic() - started:.1f} s (IPX_SEED={SEED})"
    )


@pytest.mark.slow
def test_engine_keeps_the_rules_under_any_command_sequence() -> None:
    _run_machine(EngineMachine, ENGINE_EXAMPLES)


def test_reference_book_keeps_the_rules_under_any_command_sequence() -> None:
    _run_machine(ReferenceMachine, REFERENCE_EXAMPLES)
