"""Price-time priority matching for one instrument: the order book of IPX.

Invariants:
- Outside auction mode, after every command the book is not crossed: best bid < best ask.
- Within a price level orders keep arrival order (FIFO); a trade prints at the maker's price.
- Reducing quantity at the same price keeps priority; a new price or a larger quantity
  re-queues the order at the back of its (new) level.
- For every order at every moment: quantity = filled + leaves + canceled (STP-prevented) units.
- No OrderFilled ever has the same owner on both sides (self-trade prevention, decided by the
  taker's mode in continuous trading and by the incoming order's mode in auction mode).
- A rejected command returns exactly [OrderRejected] and changes nothing.
- The book holds at most `orders_per_book_max` orders and `price_levels_per_side_max` levels
  per side, accepted only within the price and quantity limits (matching/limits.py), except
  as noted under "Readings of the contract" for market orders in auction mode.
- Nothing here reads a clock, draws randomness or performs I/O: time comes in as `now_ts_ns`.

Reject precedence of `place` (the first failing check wins):
  1. DUPLICATE_ORDER_ID      the order id is live in the book.
  2. INVALID_QUANTITY        quantity < 1 or > quantity_units_max.
  3. INVALID_PRICE           price (a market order's protection price) outside the limits.
  4. VALIDATION_ERROR        GTD without a positive expiry; an expiry on a non-GTD order; a
                             market order not IOC/FOK; a post-only market order; post-only
                             with IOC/FOK.
  5. NOT_ALLOWED_IN_AUCTION  in auction mode: a limit IOC/FOK or a market FOK.
  6. TOO_MANY_ORDERS         a resting order type (limit GTC/GTD/DAY) and the book is full.
  7. TOO_MANY_PRICE_LEVELS   a resting order type at a new price and its side is full.
  8. POST_ONLY_WOULD_TRADE   continuous mode: a post-only order that would take.
  9. FOK_NOT_FILLABLE        continuous mode: the makers it could reach cannot fill it whole.
`amend` checks: UNKNOWN_ORDER, INVALID_QUANTITY (new total <= filled, > max, or no leaves
left once STP-canceled units are counted), INVALID_PRICE, TOO_MANY_PRICE_LEVELS (new price
with no level on a full side), POST_ONLY_WOULD_TRADE (post-only, continuous mode).
`cancel` checks: UNKNOWN_ORDER (owner "" in the rejection).

Readings of the contract (matching_api.md) where it leaves room:
- "Would rest" in checks 6 and 7 is read literally as "a LIMIT order that is not IOC/FOK",
  in both modes. A market order entered during an auction does rest (at its protection price)
  but is not counted by checks 6 and 7; it is canceled at the uncross at the latest.
- The TOO_MANY_PRICE_LEVELS check of an amend counts the side's levels before the order
  leaves its old level, like the check of a new order.
- An amend that keeps priority (same price, total not raised) runs no STP: the order crosses
  nothing new. An amend that re-queues runs the mode's rule (matching or auction-entry STP).
- OrderAmended.leaves_units is the leaves right after the amend, before any matching.

Storage, and why:
- Each side keeps a dict price -> level and a sortedcontainers SortedList of its prices; the
  best price of each side is cached in an int so that a non-crossing order (about two thirds
  of limit orders) never touches the SortedList unless it opens a new level.
- A level is a deque of orders plus its total leaves. Cancel is lazy: the order is dropped
  from the id dict, its leaves set to 0 (a tombstone) and the level total adjusted; matching
  skips tombstones at the front, and a level is compacted when its dead entries pass twice
  its live ones plus 16 (_TOMBSTONES_FREE), so memory and scan length stay bounded. A level
  whose orders are all dead is removed at once, so the cached best price always has live
  leaves behind it. (At "more dead than live", 4% of cancels rebuilt a level, 30-150 entries,
  and made the cancel p99; the looser bound rebuilds about three times less often: in one
  interleaved run p99 over all commands went from 6.0-7.7 µs to 5.1-6.3 µs on a slow hour.)
- Orders are mutable msgspec Structs: about four times faster to build than a __slots__
  class, and one is built for every order that can rest or trade.
- GTD expiries sit in a heap of (expire_ts_ns, order_id); entries of orders that left are
  skipped when popped (and dropped from its top when the next expiry is asked), and the heap
  is rebuilt when it outgrows twice the book. DAY orders
  are found by a scan of the book at `expire_day`, once a day.
- Lazy against eager (deque.remove) cancel, measured on the reference stream of
  bench/reference_stream.py (100,000 warm-up + 300,000 measured commands; ~5,000 resting
  orders over ~380 levels), CPython 3.11, this 2-core machine shared with other jobs (load
  about 4, so the ratios matter more than the figures), best of 7 runs in process time:
    lazy 0.99M commands/s, eager 0.91M/s; a minimal event-free sortedcontainers book 1.05M/s.
    Per command: median 0.75 us lazy against 0.98 us eager; p99 3.9 us against 3.2 us.
  Lazy is kept for throughput and median. Its cost is the tail: about 4% of cancels compact a
  level, and rebuilding a long level (up to ~140 entries here) is a few microseconds. An order
  at either end of its queue is removed at once, which avoids some tombstones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from heapq import heapify, heappop, heappush

import msgspec
from sortedcontainers import SortedList  # type: ignore[import-untyped]  # No stubs shipped.

from matching.auction import clearing_price
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
from matching.orders import CancelReason, OrderType, RejectReason, Side, StpMode, TimeInForce
from matching.views import OrderView, book_state_hash

# Module-level aliases: a global load is cheaper than an enum attribute lookup on the hot path.
_BUY = Side.BUY
_SELL = Side.SELL
_LIMIT = OrderType.LIMIT
_MARKET = OrderType.MARKET
_GTC = TimeInForce.GTC
_IOC = TimeInForce.IOC
_FOK = TimeInForce.FOK
_GTD = TimeInForce.GTD
_DAY = TimeInForce.DAY
_EXPIRE_TAKER = StpMode.EXPIRE_TAKER
_EXPIRE_MAKER = StpMode.EXPIRE_MAKER
_EXPIRE_BOTH = StpMode.EXPIRE_BOTH
_DECREMENT = StpMode.DECREMENT
_SELF_TRADE = CancelReason.SELF_TRADE
_DUPLICATE = RejectReason.DUPLICATE_ORDER_ID
_QUANTITY = RejectReason.INVALID_QUANTITY
_PRICE = RejectReason.INVALID_PRICE
# A level is compacted when its tombstones outnumber twice its live orders plus this slack:
# memory stays within three times the live orders (plus the slack) per level, and compaction
# (a linear rebuild, the latency tail of cancels) runs about three times less often than at
# "more dead than live". Measured on the reference stream: see the module docstring.
_TOMBSTONES_FREE = 16


class _Level:
    """One price level: a FIFO queue that may hold tombstones (orders with 0 leaves)."""

    __slots__ = ("dead", "orders", "price_ticks", "total_units")

    def __init__(self, price_ticks: int) -> None:
        self.price_ticks = price_ticks
        self.orders: deque[_Order] = deque()
        self.total_units = 0  # Sum of the leaves of the live orders.
        self.dead = 0  # Tombstones still in `orders`.


class _Order(msgspec.Struct, gc=False):
    """A live order (or a tombstone once leaves_units is 0 and it left the id dict).

    A mutable msgspec Struct rather than a __slots__ class: it is built about four times
    faster, and building one is on the path of every resting order. gc=False is safe because
    it holds only ints, strings and enums (no reference to its level, so no cycle).
    """

    order_id: int
    owner: str
    side: Side
    price_ticks: int
    quantity_units: int  # Filled units = quantity - leaves - canceled.
    leaves_units: int
    canceled_units: int  # Units prevented by STP decrement.
    order_type: OrderType
    time_in_force: TimeInForce
    post_only: bool
    stp_mode: StpMode
    expire_ts_ns: int

    def view(self) -> OrderView:
        return OrderView(
            self.order_id,
            self.owner,
            self.side,
            self.price_ticks,
            self.quantity_units,
            self.quantity_units - self.leaves_units - self.canceled_units,
            self.leaves_units,
            self.time_in_force,
            self.stp_mode,
            self.post_only,
            self.expire_ts_ns,
            self.order_type,
        )


def _validation_problem(
    order_type: OrderType, time_in_force: TimeInForce, post_only: bool, expire_ts_ns: int
) -> str | None:
    """Say what is wrong with the combination of flags (check 4), or None."""
    if time_in_force is _GTD:
        if expire_ts_ns <= 0:
            return f"a GTD order needs a positive expire_ts_ns, got {expire_ts_ns}"
    elif expire_ts_ns != 0:
        return f"only a GTD order takes an expire_ts_ns, got {expire_ts_ns}"
    if order_type is _MARKET:
        if time_in_force is not _IOC and time_in_force is not _FOK:
            return f"a market order must be IOC or FOK, got {time_in_force.value}"
        if post_only:
            return "a market order cannot be post-only"
    if post_only and (time_in_force is _IOC or time_in_force is _FOK):
        return f"a post-only order cannot be {time_in_force.value}"
    return None


def _rejected(order_id: int, owner: str, reason: RejectReason, message: str) -> list[BookEvent]:
    return [OrderRejected(order_id, owner, reason, message)]


class OrderBook:
    """The order book of one instrument: commands in, events out."""

    def __init__(self, *, limits: BookLimits = DEFAULT_LIMITS, in_auction: bool = False) -> None:
        self._limits = limits
        # Limits copied into attributes: one load each on the hot path.
        self._price_min = limits.price_ticks_min
        self._price_max = limits.price_ticks_max
        self._quantity_max = limits.quantity_units_max
        self._levels_max = limits.price_levels_per_side_max
        self._orders_max = limits.orders_per_book_max
        # Sentinels outside the valid price range stand for an empty side, so that the
        # crossing test stays one integer comparison.
        self._no_bid = limits.price_ticks_min - 1
        self._no_ask = limits.price_ticks_max + 1
        self._orders: dict[int, _Order] = {}
        self._bid_levels: dict[int, _Level] = {}
        self._ask_levels: dict[int, _Level] = {}
        self._bid_prices: SortedList = SortedList()
        self._ask_prices: SortedList = SortedList()
        self._best_bid = self._no_bid
        self._best_ask = self._no_ask
        self._next_trade_id = 1
        self._in_auction = in_auction
        # (expire_ts_ns, order_id) of GTD orders; stale entries are skipped when popped.
        self._gtd_heap: list[tuple[int, int]] = []

    # ------------------------------------------------------------------ commands

    @classmethod
    def restore(
        cls,
        in_auction: bool,
        next_trade_id: int,
        bids: Sequence[OrderView],
        asks: Sequence[OrderView],
        *,
        limits: BookLimits = DEFAULT_LIMITS,
    ) -> OrderBook:
        """Rebuild a book from its l3() views (each side in priority order), for snapshots."""
        book = cls(limits=limits, in_auction=in_auction)
        book._next_trade_id = next_trade_id
        for view in (*bids, *asks):
            canceled = view.quantity_units - view.filled_units - view.leaves_units
            order = _Order(
                view.order_id, view.owner, view.side, view.price_ticks, view.quantity_units,
                view.leaves_units, canceled, view.order_type, view.time_in_force, view.post_only,
                view.stp_mode, view.expire_ts_ns,
            )  # fmt: skip
            book._rest(order)
        return book

    def place(
        self,
        order_id: int,
        owner: str,
        side: Side,
        price_ticks: int,
        quantity_units: int,
        order_type: OrderType = _LIMIT,
        time_in_force: TimeInForce = _GTC,
        post_only: bool = False,
        stp_mode: StpMode = _EXPIRE_TAKER,
        expire_ts_ns: int = 0,
    ) -> list[BookEvent]:
        """Enter a new order; see the module docstring for the checks and their order."""
        # Longer than the house ~70 lines on purpose: a resting or non-crossing order, the
        # commonest command, runs entirely in this frame (one more call costs ~5% of it).
        orders = self._orders
        if order_id in orders:
            return _rejected(order_id, owner, _DUPLICATE, f"order {order_id} is live")
        if quantity_units < 1 or quantity_units > self._quantity_max:
            return _rejected(order_id, owner, _QUANTITY, self._quantity_problem(quantity_units))
        if price_ticks < self._price_min or price_ticks > self._price_max:
            return _rejected(order_id, owner, _PRICE, self._price_problem(price_ticks))
        # The common cases (limit GTC, market IOC) pass check 4 with a few comparisons.
        if time_in_force is _GTC and order_type is _LIMIT and not expire_ts_ns:
            rests = True
        elif time_in_force is _IOC and not post_only and not expire_ts_ns:
            rests = False
        else:
            problem = _validation_problem(order_type, time_in_force, post_only, expire_ts_ns)
            if problem is not None:
                return _rejected(order_id, owner, RejectReason.VALIDATION_ERROR, problem)
            rests = order_type is _LIMIT and time_in_force is not _IOC and time_in_force is not _FOK
        if self._in_auction:
            return self._place_in_auction(
                order_id, owner, side, price_ticks, quantity_units, order_type,
                time_in_force, post_only, stp_mode, expire_ts_ns, rests,
            )  # fmt: skip
        if side is _BUY:
            levels = self._bid_levels
            crosses = price_ticks >= self._best_ask
        else:
            levels = self._ask_levels
            crosses = price_ticks <= self._best_bid
        if rests:
            if len(orders) >= self._orders_max:
                return self._too_many_orders(order_id, owner)
            level = levels.get(price_ticks)
            if level is None and len(levels) >= self._levels_max:
                return self._too_many_levels(order_id, owner, side)
        if crosses:
            return self._place_crossing(
                order_id, owner, side, price_ticks, quantity_units, order_type,
                time_in_force, post_only, stp_mode, expire_ts_ns, rests,
            )  # fmt: skip
        accepted = OrderAccepted(
            order_id, owner, side, order_type, time_in_force, price_ticks, quantity_units
        )
        if rests:
            order = _Order(
                order_id, owner, side, price_ticks, quantity_units, quantity_units, 0,
                order_type, time_in_force, post_only, stp_mode, expire_ts_ns,
            )  # fmt: skip
            if level is None:
                level = self._new_level(side, price_ticks)
            level.orders.append(order)
            level.total_units += quantity_units
            orders[order_id] = order
            if expire_ts_ns:
                self._push_gtd(expire_ts_ns, order_id)
            return [accepted]
        # An IOC, FOK or market order that reaches no maker.
        if time_in_force is _FOK:
            return _rejected(
                order_id, owner, RejectReason.FOK_NOT_FILLABLE, "no maker at an acceptable price"
            )
        reason = (
            CancelReason.MARKET_REMAINDER if order_type is _MARKET else CancelReason.IOC_REMAINDER
        )
        return [
            accepted,
            OrderCanceled(order_id, owner, side, price_ticks, quantity_units, 0, reason),
        ]

    def cancel(self, order_id: int, reason: CancelReason = CancelReason.USER) -> list[BookEvent]:
        """Take a live order off the book."""
        order = self._orders.pop(order_id, None)
        if order is None:
            return [
                OrderRejected(
                    order_id, "", RejectReason.UNKNOWN_ORDER, f"order {order_id} is not live"
                )
            ]
        leaves = order.leaves_units
        event = OrderCanceled(
            order_id, order.owner, order.side, order.price_ticks, leaves, 0, reason
        )
        # Lazy cancel: leave a tombstone in the queue (see the module docstring).
        order.leaves_units = 0
        if order.side is _BUY:
            level = self._bid_levels[order.price_ticks]
        else:
            level = self._ask_levels[order.price_ticks]
        level.total_units -= leaves
        queue = level.orders
        dead = level.dead + 1
        size = len(queue)
        if dead == size:
            self._drop_level(order.side, level.price_ticks)
        elif queue[-1] is order:
            queue.pop()  # At either end of its queue an order needs no tombstone.
        elif queue[0] is order:
            queue.popleft()
        elif dead > 2 * (size - dead) + _TOMBSTONES_FREE:
            level.orders = deque([o for o in queue if o.leaves_units])
            level.dead = 0
        else:
            level.dead = dead
        return [event]

    def amend(self, order_id: int, price_ticks: int, quantity_units: int) -> list[BookEvent]:
        """Give a resting order a new price and/or a new total quantity (filled included)."""
        order = self._orders.get(order_id)
        if order is None:
            return [
                OrderRejected(
                    order_id, "", RejectReason.UNKNOWN_ORDER, f"order {order_id} is not live"
                )
            ]
        problem = self._amend_problem(order, price_ticks, quantity_units)
        if problem is not None:
            return [OrderRejected(order_id, order.owner, problem[0], problem[1])]
        used = order.quantity_units - order.leaves_units  # Filled and STP-canceled units.
        leaves = quantity_units - used
        if price_ticks == order.price_ticks and quantity_units <= order.quantity_units:
            self._level_of(order).total_units -= order.leaves_units - leaves
            order.quantity_units = quantity_units
            order.leaves_units = leaves
            return [
                OrderAmended(
                    order_id, order.owner, order.side, price_ticks, quantity_units, leaves, True
                )
            ]
        # Re-queue as a fresh object: the old one may stay behind in its queue as a tombstone.
        self._unlink(order)
        moved = _Order(
            order_id, order.owner, order.side, price_ticks, quantity_units, leaves,
            order.canceled_units, order.order_type, order.time_in_force, order.post_only,
            order.stp_mode, order.expire_ts_ns,
        )  # fmt: skip
        events: list[BookEvent] = [
            OrderAmended(
                order_id, order.owner, order.side, price_ticks, quantity_units, leaves, False
            )
        ]
        if self._in_auction:
            self._enter_auction(moved, events)
        else:
            self._match(moved, events)
            if moved.leaves_units:
                self._rest(moved)
        return events

    def expire(self, now_ts_ns: int) -> list[BookEvent]:
        """Cancel every GTD order whose expire_ts_ns <= now, by (expire_ts_ns, order_id)."""
        events: list[BookEvent] = []
        heap = self._gtd_heap
        orders = self._orders
        while heap and heap[0][0] <= now_ts_ns:
            expire_ts_ns, order_id = heappop(heap)
            order = orders.get(order_id)
            if order is None or _stale_gtd_entry(order, expire_ts_ns):
                continue
            events.append(self._cancel_resting(order, CancelReason.GTD_EXPIRED))
        return events

    def expire_day(self) -> list[BookEvent]:
        """Cancel every DAY order, in ascending order_id."""
        day_orders = sorted(
            (order for order in self._orders.values() if order.time_in_force is _DAY),
            key=lambda order: order.order_id,
        )
        return [self._cancel_resting(order, CancelReason.DAY_EXPIRED) for order in day_orders]

    def start_auction(self) -> None:
        """Enter call-auction mode: orders rest without matching until `uncross`."""
        self._in_auction = True

    def uncross(self, reference_price_ticks: int) -> list[BookEvent]:
        """Clear the auction at one price, cancel the market orders left, leave auction mode."""
        events: list[BookEvent] = []
        result = self.indicative(reference_price_ticks)
        if result is None:
            events.append(AuctionUncrossed(reference_price_ticks, 0, 0))
        else:
            self._allocate(result.price_ticks, result.volume_units, events)
            events.append(
                AuctionUncrossed(result.price_ticks, result.volume_units, result.imbalance_units)
            )
        events += self.cancel_market_orders()
        self._in_auction = False
        return events

    def cancel_market_orders(self) -> list[BookEvent]:
        """Cancel the market orders resting for an uncross (AUCTION_REMAINDER), by order id.

        They rest only in auction mode, waiting for its uncross: at the uncross, and when the
        auction is stopped without one (a halt, a close), what is left of them goes.
        """
        market_orders = sorted(
            (order for order in self._orders.values() if order.order_type is _MARKET),
            key=lambda order: order.order_id,
        )
        return [
            self._cancel_resting(order, CancelReason.AUCTION_REMAINDER) for order in market_orders
        ]

    # ------------------------------------------------------------------ views

    @property
    def in_auction(self) -> bool:
        return self._in_auction

    @property
    def next_expiry_ts_ns(self) -> int:
        """The earliest GTD expiry of a resting order (0 if none).

        Entries of orders that left the book are dropped from the top of the heap here, so the
        exchange's next timer is never an expiry with nothing to expire: an idle sequencer
        would journal a Tick for each (and a restart from a snapshot, which has none, would
        not: two journals for one history).
        """
        heap = self._gtd_heap
        orders = self._orders
        while heap:
            expire_ts_ns, order_id = heap[0]
            order = orders.get(order_id)
            if order is not None and not _stale_gtd_entry(order, expire_ts_ns):
                return expire_ts_ns
            heappop(heap)
        return 0

    @property
    def next_trade_id(self) -> int:
        return self._next_trade_id

    def indicative(self, reference_price_ticks: int) -> IndicativeUncross | None:
        """The price, volume and imbalance an uncross would give now; None if no volume."""
        bids = [
            (price, self._bid_levels[price].total_units) for price in reversed(self._bid_prices)
        ]
        asks = [(price, self._ask_levels[price].total_units) for price in self._ask_prices]
        return clearing_price(bids, asks, reference_price_ticks)

    def best_bid(self) -> tuple[int, int] | None:
        """(price_ticks, total leaves at that price) of the highest bid, or None."""
        if not self._bid_levels:
            return None
        return self._best_bid, self._bid_levels[self._best_bid].total_units

    def best_ask(self) -> tuple[int, int] | None:
        """(price_ticks, total leaves at that price) of the lowest ask, or None."""
        if not self._ask_levels:
            return None
        return self._best_ask, self._ask_levels[self._best_ask].total_units

    def l2(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top `depth` levels of each side, aggregated, best first: (bids, asks)."""
        # Slicing a SortedList copies only the slice; bids are stored ascending.
        bid_prices = self._bid_prices[-depth:][::-1] if depth > 0 else []
        ask_prices = self._ask_prices[:depth] if depth > 0 else []
        return (
            [(price, self._bid_levels[price].total_units) for price in bid_prices],
            [(price, self._ask_levels[price].total_units) for price in ask_prices],
        )

    def l3(self) -> tuple[list[OrderView], list[OrderView]]:
        """Every live order of each side in priority order (best price, then arrival)."""
        bids = [
            order.view()
            for price in reversed(self._bid_prices)
            for order in self._bid_levels[price].orders
            if order.leaves_units
        ]
        asks = [
            order.view()
            for price in self._ask_prices
            for order in self._ask_levels[price].orders
            if order.leaves_units
        ]
        return bids, asks

    def order(self, order_id: int) -> OrderView | None:
        """The live order with this id, or None."""
        order = self._orders.get(order_id)
        return None if order is None else order.view()

    def state_hash(self) -> bytes:
        """Digest of what the book holds; equal books give equal digests."""
        return book_state_hash(self._in_auction, self._next_trade_id, *self.l3())

    def __len__(self) -> int:
        return len(self._orders)

    # ------------------------------------------------------------------ place helpers

    def _quantity_problem(self, quantity_units: int) -> str:
        return f"quantity {quantity_units} is outside 1..{self._quantity_max}"

    def _price_problem(self, price_ticks: int) -> str:
        return f"price {price_ticks} is outside {self._price_min}..{self._price_max}"

    def _too_many_orders(self, order_id: int, owner: str) -> list[BookEvent]:
        return _rejected(
            order_id,
            owner,
            RejectReason.TOO_MANY_ORDERS,
            f"the book holds {len(self._orders)} orders, the most it may",
        )

    def _too_many_levels(self, order_id: int, owner: str, side: Side) -> list[BookEvent]:
        return _rejected(
            order_id,
            owner,
            RejectReason.TOO_MANY_PRICE_LEVELS,
            f"the {side.value} side has {self._levels_max} price levels, the most it may",
        )

    def _place_crossing(
        self,
        order_id: int,
        owner: str,
        side: Side,
        price_ticks: int,
        quantity_units: int,
        order_type: OrderType,
        time_in_force: TimeInForce,
        post_only: bool,
        stp_mode: StpMode,
        expire_ts_ns: int,
        rests: bool,
    ) -> list[BookEvent]:
        # Continuous mode, an order priced to reach at least one maker: checks 8 and 9, then
        # match and deal with the remainder.
        if post_only:
            return _rejected(
                order_id,
                owner,
                RejectReason.POST_ONLY_WOULD_TRADE,
                f"a post-only {side.value} at {price_ticks} would take liquidity",
            )
        if time_in_force is _FOK and not self._fok_fillable(
            side, price_ticks, quantity_units, owner, stp_mode
        ):
            return _rejected(
                order_id,
                owner,
                RejectReason.FOK_NOT_FILLABLE,
                f"makers at acceptable prices cannot fill {quantity_units} units",
            )
        order = _Order(
            order_id, owner, side, price_ticks, quantity_units, quantity_units, 0,
            order_type, time_in_force, post_only, stp_mode, expire_ts_ns,
        )  # fmt: skip
        events: list[BookEvent] = [
            OrderAccepted(
                order_id, owner, side, order_type, time_in_force, price_ticks, quantity_units
            )
        ]
        self._match(order, events)
        leaves = order.leaves_units
        if leaves:
            if rests:
                self._rest(order)
            else:
                assert time_in_force is not _FOK, "a FOK order passed its check but has leaves"
                reason = (
                    CancelReason.MARKET_REMAINDER
                    if order_type is _MARKET
                    else CancelReason.IOC_REMAINDER
                )
                events.append(OrderCanceled(order_id, owner, side, price_ticks, leaves, 0, reason))
        return events

    def _fok_fillable(
        self, side: Side, price_ticks: int, quantity_units: int, owner: str, stp_mode: StpMode
    ) -> bool:
        # Walk the makers in priority order at acceptable prices (check 9).
        if side is _BUY:
            levels = self._ask_levels
            prices = self._ask_prices.irange(maximum=price_ticks)
        else:
            levels = self._bid_levels
            prices = self._bid_prices.irange(minimum=price_ticks, reverse=True)
        total = 0
        for price in prices:
            for maker in levels[price].orders:
                if not maker.leaves_units:
                    continue
                if maker.owner == owner:
                    if stp_mode is _EXPIRE_MAKER:
                        continue
                    return False  # STP would stop the taker here, short of its quantity.
                total += maker.leaves_units
                if total >= quantity_units:
                    return True
        return False

    def _place_in_auction(
        self,
        order_id: int,
        owner: str,
        side: Side,
        price_ticks: int,
        quantity_units: int,
        order_type: OrderType,
        time_in_force: TimeInForce,
        post_only: bool,
        stp_mode: StpMode,
        expire_ts_ns: int,
        rests: bool,
    ) -> list[BookEvent]:
        # Checks 5 to 7, then the order rests (after the auction STP rule) without matching.
        if (order_type is _LIMIT and not rests) or time_in_force is _FOK:
            return _rejected(
                order_id,
                owner,
                RejectReason.NOT_ALLOWED_IN_AUCTION,
                f"a {order_type.value} {time_in_force.value} order cannot enter an auction",
            )
        if rests:
            if len(self._orders) >= self._orders_max:
                return self._too_many_orders(order_id, owner)
            levels = self._bid_levels if side is _BUY else self._ask_levels
            if price_ticks not in levels and len(levels) >= self._levels_max:
                return self._too_many_levels(order_id, owner, side)
        order = _Order(
            order_id, owner, side, price_ticks, quantity_units, quantity_units, 0,
            order_type, time_in_force, post_only, stp_mode, expire_ts_ns,
        )  # fmt: skip
        events: list[BookEvent] = [
            OrderAccepted(
                order_id, owner, side, order_type, time_in_force, price_ticks, quantity_units
            )
        ]
        self._enter_auction(order, events)
        return events

    # ------------------------------------------------------------------ matching

    def _match(self, taker: _Order, events: list[BookEvent]) -> None:
        """Match a taker against the opposite side while the maker price is acceptable."""
        side = taker.side
        is_buy = side is _BUY
        if is_buy:
            levels, best = self._ask_levels, self._best_ask
        else:
            levels, best = self._bid_levels, self._best_bid
        limit = taker.price_ticks
        if (best > limit) if is_buy else (best < limit):
            return
        owner = taker.owner
        taker_id = taker.order_id
        leaves = taker.leaves_units
        orders = self._orders
        append = events.append
        trade_id = self._next_trade_id
        while True:
            level = levels[best]
            queue = level.orders
            while leaves and queue:
                maker = queue[0]
                maker_leaves = maker.leaves_units
                if not maker_leaves:
                    queue.popleft()
                    level.dead -= 1
                    continue
                if maker.owner == owner:
                    taker.leaves_units = leaves
                    stop = self._prevent_self_trade(taker, maker, level, events)
                    leaves = taker.leaves_units
                    if stop:
                        break
                    continue
                if maker_leaves <= leaves:
                    fill = maker_leaves
                    queue.popleft()
                    maker.leaves_units = maker_rest = 0
                    del orders[maker.order_id]
                else:
                    fill = leaves
                    maker.leaves_units = maker_rest = maker_leaves - fill
                leaves -= fill
                level.total_units -= fill
                if is_buy:
                    append(
                        OrderFilled(
                            trade_id, best, fill, taker_id, owner, leaves,
                            maker.order_id, maker.owner, maker_rest, side,
                        )
                    )  # fmt: skip
                else:
                    append(
                        OrderFilled(
                            trade_id, best, fill, maker.order_id, maker.owner, maker_rest,
                            taker_id, owner, leaves, side,
                        )
                    )  # fmt: skip
                trade_id += 1
            if len(queue) != level.dead:
                break  # The level still has live makers: the taker is done.
            best = self._drop_level(_SELL if is_buy else _BUY, best)
            if not leaves or ((best > limit) if is_buy else (best < limit)):
                break
        taker.leaves_units = leaves
        self._next_trade_id = trade_id

    def _prevent_self_trade(
        self, taker: _Order, maker: _Order, level: _Level, events: list[BookEvent]
    ) -> bool:
        """Apply the taker's STP mode to the maker at the front of `level`; True = stop."""
        mode = taker.stp_mode
        if mode is _EXPIRE_TAKER:
            events.append(self._cancel_taker(taker, taker.leaves_units))
            return True
        if mode is _DECREMENT:
            prevented = min(taker.leaves_units, maker.leaves_units)
            maker.leaves_units -= prevented
            maker.canceled_units += prevented
            level.total_units -= prevented
            events.append(
                OrderCanceled(
                    maker.order_id, maker.owner, maker.side, maker.price_ticks, prevented,
                    maker.leaves_units, _SELF_TRADE,
                )
            )  # fmt: skip
            if not maker.leaves_units:
                level.orders.popleft()
                del self._orders[maker.order_id]
            events.append(self._cancel_taker(taker, prevented))
            return not taker.leaves_units
        # EXPIRE_MAKER and EXPIRE_BOTH take the whole maker off the book.
        maker_leaves = maker.leaves_units
        events.append(
            OrderCanceled(
                maker.order_id, maker.owner, maker.side, maker.price_ticks, maker_leaves, 0,
                _SELF_TRADE,
            )
        )  # fmt: skip
        maker.leaves_units = 0
        level.total_units -= maker_leaves
        level.orders.popleft()
        del self._orders[maker.order_id]
        if mode is _EXPIRE_BOTH:
            events.append(self._cancel_taker(taker, taker.leaves_units))
            return True
        return False

    @staticmethod
    def _cancel_taker(taker: _Order, units: int) -> OrderCanceled:
        # Units of an incoming (not yet resting) order prevented by STP.
        taker.leaves_units -= units
        taker.canceled_units += units
        return OrderCanceled(
            taker.order_id, taker.owner, taker.side, taker.price_ticks, units,
            taker.leaves_units, _SELF_TRADE,
        )  # fmt: skip

    def _enter_auction(self, order: _Order, events: list[BookEvent]) -> None:
        """Auction-mode entry: STP against the owner's crossing resting orders, then rest."""
        for maker in self._own_crossing(order):
            mode = order.stp_mode
            if mode is _EXPIRE_TAKER:
                events.append(self._cancel_taker(order, order.leaves_units))
                return
            if mode is _DECREMENT:
                prevented = min(order.leaves_units, maker.leaves_units)
                maker.leaves_units -= prevented
                maker.canceled_units += prevented
                self._level_of(maker).total_units -= prevented
                events.append(
                    OrderCanceled(
                        maker.order_id, maker.owner, maker.side, maker.price_ticks, prevented,
                        maker.leaves_units, _SELF_TRADE,
                    )
                )  # fmt: skip
                if not maker.leaves_units:
                    self._unlink(maker)
                events.append(self._cancel_taker(order, prevented))
                if not order.leaves_units:
                    return
                continue
            events.append(self._cancel_resting(maker, _SELF_TRADE))
            if mode is _EXPIRE_BOTH:
                events.append(self._cancel_taker(order, order.leaves_units))
                return
        self._rest(order)

    def _own_crossing(self, order: _Order) -> list[_Order]:
        # The same owner's resting opposite orders that the order crosses, in priority order.
        owner = order.owner
        if order.side is _BUY:
            levels = self._ask_levels
            prices = self._ask_prices.irange(maximum=order.price_ticks)
        else:
            levels = self._bid_levels
            prices = self._bid_prices.irange(minimum=order.price_ticks, reverse=True)
        return [
            maker
            for price in prices
            for maker in levels[price].orders
            if maker.leaves_units and maker.owner == owner
        ]

    def _allocate(self, price_ticks: int, volume_units: int, events: list[BookEvent]) -> None:
        """Fill buys (price desc, FIFO) against sells (price asc, FIFO) at one price."""
        remaining = volume_units
        trade_id = self._next_trade_id
        while remaining:
            buy_level = self._bid_levels[self._best_bid]
            sell_level = self._ask_levels[self._best_ask]
            buy = self._front(buy_level)
            sell = self._front(sell_level)
            assert buy.price_ticks >= price_ticks >= sell.price_ticks, "allocation beyond P"
            fill = min(buy.leaves_units, sell.leaves_units, remaining)
            remaining -= fill
            for order, level in ((buy, buy_level), (sell, sell_level)):
                order.leaves_units -= fill
                level.total_units -= fill
                if not order.leaves_units:
                    level.orders.popleft()
                    del self._orders[order.order_id]
                    if len(level.orders) == level.dead:
                        self._drop_level(order.side, level.price_ticks)
            events.append(
                OrderFilled(
                    trade_id, price_ticks, fill, buy.order_id, buy.owner, buy.leaves_units,
                    sell.order_id, sell.owner, sell.leaves_units, None,
                )
            )  # fmt: skip
            trade_id += 1
        self._next_trade_id = trade_id

    @staticmethod
    def _front(level: _Level) -> _Order:
        # The first live order of a level, dropping the tombstones before it.
        queue = level.orders
        while not queue[0].leaves_units:
            queue.popleft()
            level.dead -= 1
        return queue[0]

    # ------------------------------------------------------------------ storage

    def _rest(self, order: _Order) -> None:
        """Put an order with leaves at the back of its level."""
        levels = self._bid_levels if order.side is _BUY else self._ask_levels
        level = levels.get(order.price_ticks)
        if level is None:
            level = self._new_level(order.side, order.price_ticks)
        level.orders.append(order)
        level.total_units += order.leaves_units
        self._orders[order.order_id] = order
        if order.time_in_force is _GTD:
            self._push_gtd(order.expire_ts_ns, order.order_id)

    def _new_level(self, side: Side, price_ticks: int) -> _Level:
        level = _Level(price_ticks)
        if side is _BUY:
            self._bid_levels[price_ticks] = level
            self._bid_prices.add(price_ticks)
            if price_ticks > self._best_bid:
                self._best_bid = price_ticks
        else:
            self._ask_levels[price_ticks] = level
            self._ask_prices.add(price_ticks)
            if price_ticks < self._best_ask:
                self._best_ask = price_ticks
        return level

    def _drop_level(self, side: Side, price_ticks: int) -> int:
        """Remove a level with no live order; return the new best price of its side."""
        if side is _BUY:
            del self._bid_levels[price_ticks]
            prices = self._bid_prices
            if price_ticks == self._best_bid:
                prices.pop()
                self._best_bid = prices[-1] if prices else self._no_bid
            else:
                prices.remove(price_ticks)
            return self._best_bid
        del self._ask_levels[price_ticks]
        prices = self._ask_prices
        if price_ticks == self._best_ask:
            prices.pop(0)
            self._best_ask = prices[0] if prices else self._no_ask
        else:
            prices.remove(price_ticks)
        return self._best_ask

    def _level_of(self, order: _Order) -> _Level:
        # The level of a live order: an order holds no reference to it (see _Order).
        if order.side is _BUY:
            return self._bid_levels[order.price_ticks]
        return self._ask_levels[order.price_ticks]

    def _unlink(self, order: _Order) -> None:
        """Take a resting order off the book (lazily, as `cancel` does)."""
        del self._orders[order.order_id]
        level = self._level_of(order)
        level.total_units -= order.leaves_units
        order.leaves_units = 0
        queue = level.orders
        dead = level.dead + 1
        size = len(queue)
        if dead == size:
            self._drop_level(order.side, level.price_ticks)
        elif queue[-1] is order:
            queue.pop()
        elif queue[0] is order:
            queue.popleft()
        elif dead > 2 * (size - dead) + _TOMBSTONES_FREE:
            level.orders = deque([o for o in queue if o.leaves_units])
            level.dead = 0
        else:
            level.dead = dead

    def _cancel_resting(self, order: _Order, reason: CancelReason) -> OrderCanceled:
        event = OrderCanceled(
            order.order_id, order.owner, order.side, order.price_ticks, order.leaves_units, 0,
            reason,
        )  # fmt: skip
        self._unlink(order)
        return event

    def _push_gtd(self, expire_ts_ns: int, order_id: int) -> None:
        heap = self._gtd_heap
        heappush(heap, (expire_ts_ns, order_id))
        # Entries of orders that left the book are skipped when popped; rebuild now and then
        # so that they cannot pile up.
        if len(heap) > 2 * len(self._orders) + 64:
            heap[:] = [
                (order.expire_ts_ns, order.order_id)
                for order in self._orders.values()
                if order.time_in_force is _GTD
            ]
            heapify(heap)

    def amend_problem(
        self, order_id: int, price_ticks: int, quantity_units: int
    ) -> tuple[RejectReason, str] | None:
        """Why amend() would refuse this amend of a live order now, or None: a dry run."""
        order = self._orders.get(order_id)
        if order is None:
            return RejectReason.UNKNOWN_ORDER, f"order {order_id} is not live"
        return self._amend_problem(order, price_ticks, quantity_units)

    def _amend_problem(
        self, order: _Order, price_ticks: int, quantity_units: int
    ) -> tuple[RejectReason, str] | None:
        # The amend checks after UNKNOWN_ORDER, in their documented order.
        filled = order.quantity_units - order.leaves_units - order.canceled_units
        if quantity_units <= filled or quantity_units > self._quantity_max:
            return (
                RejectReason.INVALID_QUANTITY,
                f"quantity {quantity_units} must exceed the {filled} filled units"
                f" and be at most {self._quantity_max}",
            )
        if quantity_units - filled - order.canceled_units <= 0:
            return (
                RejectReason.INVALID_QUANTITY,
                f"quantity {quantity_units} leaves nothing once {filled} filled and"
                f" {order.canceled_units} self-trade-prevented units are counted",
            )
        if price_ticks < self._price_min or price_ticks > self._price_max:
            return (
                RejectReason.INVALID_PRICE,
                f"price {price_ticks} is outside {self._price_min}..{self._price_max}",
            )
        levels = self._bid_levels if order.side is _BUY else self._ask_levels
        if (
            price_ticks != order.price_ticks
            and price_ticks not in levels
            and len(levels) >= self._levels_max
        ):
            return (
                RejectReason.TOO_MANY_PRICE_LEVELS,
                f"the {order.side.value} side has {self._levels_max} price levels, the most it may",
            )
        if order.post_only and not self._in_auction:
            crosses = (
                price_ticks >= self._best_ask
                if order.side is _BUY
                else price_ticks <= self._best_bid
            )
            if crosses:
                return (
                    RejectReason.POST_ONLY_WOULD_TRADE,
                    f"a post-only {order.side.value} at {price_ticks} would take liquidity",
                )
        return None


def _stale_gtd_entry(order: _Order, expire_ts_ns: int) -> bool:
    # The order rests, but no longer as this entry says: its expiry or time in force changed.
    return order.time_in_force is not _GTD or order.expire_ts_ns != expire_ts_ns
