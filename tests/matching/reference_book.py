"""A deliberately naive order book: the contract of matching/book.py, read aloud in Python.

It exists only to be compared with the fast engine (tests/matching/test_differential.py), so
it favours being obviously right over being fast: every live order sits in one plain list,
every question ("what is the best ask?", "which orders cross?") is a fresh linear scan or sort,
and each rule of the contract is one small function named after it.

Invariants:
- An order's leaves are never stored: leaves = quantity - filled - canceled, always.
- An order is in `_orders` exactly while its leaves are above zero.
- Priority is (price, arrival number); arrival numbers come from a counter, never a clock.
- A rejected command returns [OrderRejected] and touches nothing (checks run before changes).
"""

from __future__ import annotations

from dataclasses import dataclass

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

_RESTING_TIME_IN_FORCE = (TimeInForce.GTC, TimeInForce.GTD, TimeInForce.DAY)


@dataclass
class _Order:
    order_id: int
    owner: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    price_ticks: int  # For a market order: its protection price.
    quantity_units: int
    post_only: bool
    stp_mode: StpMode
    expire_ts_ns: int
    arrival: int
    filled_units: int = 0
    canceled_units: int = 0

    @property
    def leaves_units(self) -> int:
        return self.quantity_units - self.filled_units - self.canceled_units

    def view(self) -> OrderView:
        return OrderView(
            order_id=self.order_id,
            owner=self.owner,
            side=self.side,
            price_ticks=self.price_ticks,
            quantity_units=self.quantity_units,
            filled_units=self.filled_units,
            leaves_units=self.leaves_units,
            time_in_force=self.time_in_force,
            stp_mode=self.stp_mode,
            post_only=self.post_only,
            expire_ts_ns=self.expire_ts_ns,
            order_type=self.order_type,
        )


def _opposite(side: Side) -> Side:
    return Side.SELL if side is Side.BUY else Side.BUY


def _price_acceptable(taker_side: Side, taker_price: int, maker_price: int) -> bool:
    # A buy takes asks at or below its price; a sell takes bids at or above its price. The same
    # test says whether an incoming order "crosses" an own order in auction mode.
    if taker_side is Side.BUY:
        return maker_price <= taker_price
    return maker_price >= taker_price


class ReferenceBook:
    """The naive twin of matching.book.OrderBook, with the same public surface."""

    def __init__(self, *, limits: BookLimits = DEFAULT_LIMITS, in_auction: bool = False) -> None:
        self._limits = limits
        self._in_auction = in_auction
        self._orders: list[_Order] = []
        self._next_arrival = 1
        self._next_trade_id = 1

    # ----------------------------------------------------------------------------- lookups

    @property
    def in_auction(self) -> bool:
        return self._in_auction

    @property
    def next_trade_id(self) -> int:
        return self._next_trade_id

    def _side_in_priority(self, side: Side) -> list[_Order]:
        # Best price first, then arrival order (FIFO within a level).
        orders = [order for order in self._orders if order.side is side]
        if side is Side.BUY:
            return sorted(orders, key=lambda order: (-order.price_ticks, order.arrival))
        return sorted(orders, key=lambda order: (order.price_ticks, order.arrival))

    def _find(self, order_id: int) -> _Order | None:
        for order in self._orders:
            if order.order_id == order_id:
                return order
        return None

    def _level_prices(self, side: Side) -> set[int]:
        return {order.price_ticks for order in self._orders if order.side is side}

    def _take_arrival(self) -> int:
        arrival = self._next_arrival
        self._next_arrival += 1
        return arrival

    def _remove_if_done(self, order: _Order) -> None:
        if order.leaves_units == 0 and order in self._orders:
            self._orders.remove(order)

    # ----------------------------------------------------------------------------- views

    def _best(self, side: Side) -> tuple[int, int] | None:
        levels = self.l2(1)[0 if side is Side.BUY else 1]
        return levels[0] if levels else None

    def best_bid(self) -> tuple[int, int] | None:
        return self._best(Side.BUY)

    def best_ask(self) -> tuple[int, int] | None:
        return self._best(Side.SELL)

    def _levels(self, side: Side) -> list[tuple[int, int]]:
        levels: list[tuple[int, int]] = []
        for order in self._side_in_priority(side):
            if levels and levels[-1][0] == order.price_ticks:
                levels[-1] = (order.price_ticks, levels[-1][1] + order.leaves_units)
            else:
                levels.append((order.price_ticks, order.leaves_units))
        return levels

    def l2(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return self._levels(Side.BUY)[:depth], self._levels(Side.SELL)[:depth]

    def l3(self) -> tuple[list[OrderView], list[OrderView]]:
        bids = [order.view() for order in self._side_in_priority(Side.BUY)]
        asks = [order.view() for order in self._side_in_priority(Side.SELL)]
        return bids, asks

    def order(self, order_id: int) -> OrderView | None:
        order = self._find(order_id)
        return order.view() if order is not None else None

    def state_hash(self) -> bytes:
        return book_state_hash(self._in_auction, self._next_trade_id, *self.l3())

    def __len__(self) -> int:
        return len(self._orders)

    def indicative(self, reference_price_ticks: int) -> IndicativeUncross | None:
        return self._clearing(reference_price_ticks)

    # ----------------------------------------------------------------------------- events

    def _cancel_units(
        self, order: _Order, units: int, reason: CancelReason, events: list[BookEvent]
    ) -> None:
        order.canceled_units += units
        events.append(
            OrderCanceled(
                order_id=order.order_id,
                owner=order.owner,
                side=order.side,
                price_ticks=order.price_ticks,
                canceled_units=units,
                leaves_units=order.leaves_units,
                reason=reason,
            )
        )
        self._remove_if_done(order)

    def _fill(
        self,
        buy: _Order,
        sell: _Order,
        units: int,
        price_ticks: int,
        aggressor_side: Side | None,
        events: list[BookEvent],
    ) -> None:
        assert buy.owner != sell.owner, "a self-trade must never print"
        buy.filled_units += units
        sell.filled_units += units
        events.append(
            OrderFilled(
                trade_id=self._next_trade_id,
                price_ticks=price_ticks,
                quantity_units=units,
                buy_order_id=buy.order_id,
                buy_owner=buy.owner,
                buy_leaves_units=buy.leaves_units,
                sell_order_id=sell.order_id,
                sell_owner=sell.owner,
                sell_leaves_units=sell.leaves_units,
                aggressor_side=aggressor_side,
            )
        )
        self._next_trade_id += 1
        self._remove_if_done(buy)
        self._remove_if_done(sell)

    # ----------------------------------------------------------------------------- place

    def _rests(self, order_type: OrderType, time_in_force: TimeInForce) -> bool:
        # The contract's definition for the limit checks: "not IOC/FOK/market".
        return order_type is OrderType.LIMIT and time_in_force in _RESTING_TIME_IN_FORCE

    def _too_many_levels(self, side: Side, price_ticks: int) -> bool:
        levels = self._level_prices(side)
        return price_ticks not in levels and len(levels) >= self._limits.price_levels_per_side_max

    def _post_only_would_trade(self, side: Side, price_ticks: int) -> bool:
        opposite = self._side_in_priority(_opposite(side))
        return bool(opposite) and _price_acceptable(side, price_ticks, opposite[0].price_ticks)

    def _fok_fillable(self, taker: _Order) -> bool:
        total = 0
        for maker in self._side_in_priority(_opposite(taker.side)):
            if not _price_acceptable(taker.side, taker.price_ticks, maker.price_ticks):
                break
            if maker.owner != taker.owner:
                total += maker.leaves_units
            elif taker.stp_mode is not StpMode.EXPIRE_MAKER:
                break
        return total >= taker.quantity_units

    def _place_rejection(self, order: _Order) -> tuple[RejectReason, str] | None:
        """Return the first failing check of `place`, in the contract's precedence."""
        limits = self._limits
        tif = order.time_in_force
        market = order.order_type is OrderType.MARKET
        if self._find(order.order_id) is not None:
            return RejectReason.DUPLICATE_ORDER_ID, "order id is live"
        if not 1 <= order.quantity_units <= limits.quantity_units_max:
            return RejectReason.INVALID_QUANTITY, "quantity out of range"
        if not limits.price_ticks_min <= order.price_ticks <= limits.price_ticks_max:
            return RejectReason.INVALID_PRICE, "price out of range"
        if (
            (tif is TimeInForce.GTD and order.expire_ts_ns <= 0)
            or (tif is not TimeInForce.GTD and order.expire_ts_ns != 0)
            or (market and tif not in (TimeInForce.IOC, TimeInForce.FOK))
            or (market and order.post_only)
            or (order.post_only and tif in (TimeInForce.IOC, TimeInForce.FOK))
        ):
            return RejectReason.VALIDATION_ERROR, "inconsistent order fields"
        if self._in_auction and (
            (not market and tif in (TimeInForce.IOC, TimeInForce.FOK))
            or (market and tif is TimeInForce.FOK)
        ):
            return RejectReason.NOT_ALLOWED_IN_AUCTION, "not allowed in auction"
        rests = self._rests(order.order_type, tif)
        if rests and len(self._orders) >= limits.orders_per_book_max:
            return RejectReason.TOO_MANY_ORDERS, "book is full"
        if rests and self._too_many_levels(order.side, order.price_ticks):
            return RejectReason.TOO_MANY_PRICE_LEVELS, "side has too many levels"
        if self._in_auction:
            return None
        if order.post_only and self._post_only_would_trade(order.side, order.price_ticks):
            return RejectReason.POST_ONLY_WOULD_TRADE, "post-only order would trade"
        if tif is TimeInForce.FOK and not self._fok_fillable(order):
            return RejectReason.FOK_NOT_FILLABLE, "fill-or-kill order not fillable"
        return None

    def place(
        self,
        order_id: int,
        owner: str,
        side: Side,
        price_ticks: int,
        quantity_units: int,
        order_type: OrderType = OrderType.LIMIT,
        time_in_force: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
        stp_mode: StpMode = StpMode.EXPIRE_TAKER,
        expire_ts_ns: int = 0,
    ) -> list[BookEvent]:
        order = _Order(
            order_id=order_id,
            owner=owner,
            side=side,
            order_type=order_type,
            time_in_force=time_in_force,
            price_ticks=price_ticks,
            quantity_units=quantity_units,
            post_only=post_only,
            stp_mode=stp_mode,
            expire_ts_ns=expire_ts_ns,
            arrival=0,
        )
        rejection = self._place_rejection(order)
        if rejection is not None:
            reason, message = rejection
            return [OrderRejected(order_id=order_id, owner=owner, reason=reason, message=message)]
        order.arrival = self._take_arrival()
        events: list[BookEvent] = [
            OrderAccepted(
                order_id=order_id,
                owner=owner,
                side=side,
                order_type=order_type,
                time_in_force=time_in_force,
                price_ticks=price_ticks,
                quantity_units=quantity_units,
            )
        ]
        if self._in_auction:
            self._enter_auction(order, events)
        else:
            self._match(order, events)
            self._finish_taker(order, events)
        return events

    # ----------------------------------------------------------------------------- continuous

    def _match(self, taker: _Order, events: list[BookEvent]) -> None:
        """Match `taker` (not in the book) against the opposite side, best price then FIFO."""
        while taker.leaves_units > 0:
            opposite = self._side_in_priority(_opposite(taker.side))
            if not opposite:
                return
            maker = opposite[0]
            if not _price_acceptable(taker.side, taker.price_ticks, maker.price_ticks):
                return
            if maker.owner != taker.owner:
                units = min(taker.leaves_units, maker.leaves_units)
                buy, sell = (taker, maker) if taker.side is Side.BUY else (maker, taker)
                self._fill(buy, sell, units, maker.price_ticks, taker.side, events)
                continue
            if not self._prevent_self_trade(taker, maker, events):
                return

    def _prevent_self_trade(self, taker: _Order, maker: _Order, events: list[BookEvent]) -> bool:
        """Apply the taker's STP mode to one own maker; return whether matching goes on."""
        mode = taker.stp_mode
        if mode is StpMode.EXPIRE_TAKER:
            self._cancel_units(taker, taker.leaves_units, CancelReason.SELF_TRADE, events)
            return False
        if mode is StpMode.EXPIRE_MAKER:
            self._cancel_units(maker, maker.leaves_units, CancelReason.SELF_TRADE, events)
            return True
        if mode is StpMode.EXPIRE_BOTH:
            self._cancel_units(maker, maker.leaves_units, CancelReason.SELF_TRADE, events)
            self._cancel_units(taker, taker.leaves_units, CancelReason.SELF_TRADE, events)
            return False
        assert mode is StpMode.DECREMENT
        units = min(taker.leaves_units, maker.leaves_units)
        self._cancel_units(maker, units, CancelReason.SELF_TRADE, events)
        self._cancel_units(taker, units, CancelReason.SELF_TRADE, events)
        return True

    def _finish_taker(self, taker: _Order, events: list[BookEvent]) -> None:
        """After matching: the remainder rests, or is canceled for IOC and market orders."""
        if taker.leaves_units == 0:
            return
        assert taker.time_in_force is not TimeInForce.FOK, "a fillable FOK cannot have leaves"
        if taker.order_type is OrderType.MARKET:
            self._cancel_units(taker, taker.leaves_units, CancelReason.MARKET_REMAINDER, events)
        elif taker.time_in_force is TimeInForce.IOC:
            self._cancel_units(taker, taker.leaves_units, CancelReason.IOC_REMAINDER, events)
        else:
            self._orders.append(taker)

    # ----------------------------------------------------------------------------- auction

    def _enter_auction(self, incoming: _Order, events: list[BookEvent]) -> None:
        """Rest `incoming` (not in the book) in auction mode, after STP at entry."""
        crossing = [
            own
            for own in self._side_in_priority(_opposite(incoming.side))
            if own.owner == incoming.owner
            and _price_acceptable(incoming.side, incoming.price_ticks, own.price_ticks)
        ]
        mode = incoming.stp_mode
        if crossing and mode is StpMode.EXPIRE_TAKER:
            self._cancel_units(incoming, incoming.leaves_units, CancelReason.SELF_TRADE, events)
        elif crossing and mode is StpMode.EXPIRE_BOTH:
            own = crossing[0]
            self._cancel_units(own, own.leaves_units, CancelReason.SELF_TRADE, events)
            self._cancel_units(incoming, incoming.leaves_units, CancelReason.SELF_TRADE, events)
        elif mode is StpMode.EXPIRE_MAKER:
            for own in crossing:
                self._cancel_units(own, own.leaves_units, CancelReason.SELF_TRADE, events)
        elif mode is StpMode.DECREMENT:
            for own in crossing:
                if incoming.leaves_units == 0:
                    break
                units = min(incoming.leaves_units, own.leaves_units)
                self._cancel_units(own, units, CancelReason.SELF_TRADE, events)
                self._cancel_units(incoming, units, CancelReason.SELF_TRADE, events)
        if incoming.leaves_units > 0:
            self._orders.append(incoming)

    def start_auction(self) -> None:
        self._in_auction = True

    def _clearing(self, reference_price_ticks: int) -> IndicativeUncross | None:
        """Pick the uncross price: max volume, then min |imbalance|, nearest reference, lower.

        The candidates: every order's price, and the reference price when it lies between the
        best ask and the best bid.
        """
        best: tuple[tuple[int, int, int, int], IndicativeUncross] | None = None
        prices = {order.price_ticks for order in self._orders}
        bids = [o.price_ticks for o in self._orders if o.side is Side.BUY]
        asks = [o.price_ticks for o in self._orders if o.side is Side.SELL]
        if bids and asks and min(asks) <= reference_price_ticks <= max(bids):
            prices.add(reference_price_ticks)
        for price in sorted(prices):
            buy_units = sum(
                o.leaves_units
                for o in self._orders
                if o.side is Side.BUY and o.price_ticks >= price
            )
            sell_units = sum(
                o.leaves_units
                for o in self._orders
                if o.side is Side.SELL and o.price_ticks <= price
            )
            volume = min(buy_units, sell_units)
            imbalance = buy_units - sell_units
            key = (-volume, abs(imbalance), abs(price - reference_price_ticks), price)
            if volume > 0 and (best is None or key < best[0]):
                best = key, IndicativeUncross(price, volume, imbalance)
        return best[1] if best is not None else None

    def uncross(self, reference_price_ticks: int) -> list[BookEvent]:
        events: list[BookEvent] = []
        clearing = self._clearing(reference_price_ticks)
        if clearing is None:
            events.append(AuctionUncrossed(reference_price_ticks, 0, 0))
        else:
            remaining = clearing.volume_units
            while remaining > 0:
                buy = self._side_in_priority(Side.BUY)[0]
                sell = self._side_in_priority(Side.SELL)[0]
                assert buy.price_ticks >= clearing.price_ticks >= sell.price_ticks
                units = min(buy.leaves_units, sell.leaves_units, remaining)
                self._fill(buy, sell, units, clearing.price_ticks, None, events)
                remaining -= units
            events.append(
                AuctionUncrossed(
                    clearing.price_ticks, clearing.volume_units, clearing.imbalance_units
                )
            )
        markets = [order for order in self._orders if order.order_type is OrderType.MARKET]
        for order in sorted(markets, key=lambda order: order.order_id):
            self._cancel_units(order, order.leaves_units, CancelReason.AUCTION_REMAINDER, events)
        self._in_auction = False
        return events

    # ----------------------------------------------------------------------------- cancel

    def cancel(self, order_id: int, reason: CancelReason = CancelReason.USER) -> list[BookEvent]:
        order = self._find(order_id)
        if order is None:
            return [_unknown_order(order_id)]
        events: list[BookEvent] = []
        self._cancel_units(order, order.leaves_units, reason, events)
        return events

    def expire(self, now_ts_ns: int) -> list[BookEvent]:
        due = [
            order
            for order in self._orders
            if order.time_in_force is TimeInForce.GTD and order.expire_ts_ns <= now_ts_ns
        ]
        events: list[BookEvent] = []
        for order in sorted(due, key=lambda order: (order.expire_ts_ns, order.order_id)):
            self._cancel_units(order, order.leaves_units, CancelReason.GTD_EXPIRED, events)
        return events

    def expire_day(self) -> list[BookEvent]:
        due = [order for order in self._orders if order.time_in_force is TimeInForce.DAY]
        events: list[BookEvent] = []
        for order in sorted(due, key=lambda order: order.order_id):
            self._cancel_units(order, order.leaves_units, CancelReason.DAY_EXPIRED, events)
        return events

    # ----------------------------------------------------------------------------- amend

    def _amend_rejection(
        self, order: _Order, price_ticks: int, quantity_units: int
    ) -> tuple[RejectReason, str] | None:
        limits = self._limits
        # STP-canceled units count as used, like filled ones: the new leaves must stay positive.
        used_units = order.filled_units + order.canceled_units
        if quantity_units <= used_units or quantity_units > limits.quantity_units_max:
            return RejectReason.INVALID_QUANTITY, "quantity out of range"
        if not limits.price_ticks_min <= price_ticks <= limits.price_ticks_max:
            return RejectReason.INVALID_PRICE, "price out of range"
        if price_ticks != order.price_ticks and self._too_many_levels(order.side, price_ticks):
            return RejectReason.TOO_MANY_PRICE_LEVELS, "side has too many levels"
        if (
            not self._in_auction
            and order.post_only
            and self._post_only_would_trade(order.side, price_ticks)
        ):
            return RejectReason.POST_ONLY_WOULD_TRADE, "post-only order would trade"
        return None

    def amend(self, order_id: int, price_ticks: int, quantity_units: int) -> list[BookEvent]:
        order = self._find(order_id)
        if order is None:
            return [_unknown_order(order_id)]
        rejection = self._amend_rejection(order, price_ticks, quantity_units)
        if rejection is not None:
            reason, message = rejection
            return [OrderRejected(order_id, order.owner, reason, message)]
        priority_kept = price_ticks == order.price_ticks and quantity_units <= order.quantity_units
        order.price_ticks = price_ticks
        order.quantity_units = quantity_units
        events: list[BookEvent] = [
            OrderAmended(
                order_id=order.order_id,
                owner=order.owner,
                side=order.side,
                price_ticks=price_ticks,
                quantity_units=quantity_units,
                leaves_units=order.leaves_units,
                priority_kept=priority_kept,
            )
        ]
        if priority_kept:
            return events
        # Losing priority: leave the level, come back as a new arrival, then act as a taker.
        self._orders.remove(order)
        order.arrival = self._take_arrival()
        if self._in_auction:
            self._enter_auction(order, events)
        else:
            self._match(order, events)
            if order.leaves_units > 0:
                self._orders.append(order)
        return events


def _unknown_order(order_id: int) -> OrderRejected:
    return OrderRejected(
        order_id=order_id,
        owner="",
        reason=RejectReason.UNKNOWN_ORDER,
        message=f"order {order_id} is not live in this book",
    )
