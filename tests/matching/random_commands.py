"""Seeded random commands for an order book, shared by the differential and stateful tests.

A command is a small frozen value with `apply(book)`; its repr is the Python call that replays
it, so a failing run prints a program one can paste into a test. The generator aims at the
corners of the contract: a narrow price band and a handful of owners (so crosses and
self-trades are common), every order type, time in force and STP mode, invalid fields,
duplicate and unknown ids, amends up and down, expiries, auction cycles and tiny limits.

Invariants:
- The same seed and the same book states give the same commands (one `random.Random`).
- The generator reads the book only through its public views (l3, in_auction).
"""

from __future__ import annotations

import dataclasses
import enum
import random
from dataclasses import dataclass
from typing import Protocol

import msgspec

from matching.events import BookEvent, IndicativeUncross
from matching.limits import DEFAULT_LIMITS, BookLimits
from matching.orders import CancelReason, OrderType, Side, StpMode, TimeInForce
from matching.views import OrderView


class Book(Protocol):
    """The public surface shared by matching.book.OrderBook and the reference book."""

    @property
    def in_auction(self) -> bool: ...
    @property
    def next_trade_id(self) -> int: ...
    def place(
        self,
        order_id: int,
        owner: str,
        side: Side,
        price_ticks: int,
        quantity_units: int,
        order_type: OrderType = ...,
        time_in_force: TimeInForce = ...,
        post_only: bool = ...,
        stp_mode: StpMode = ...,
        expire_ts_ns: int = ...,
    ) -> list[BookEvent]: ...
    def cancel(self, order_id: int, reason: CancelReason = ...) -> list[BookEvent]: ...
    def amend(self, order_id: int, price_ticks: int, quantity_units: int) -> list[BookEvent]: ...
    def expire(self, now_ts_ns: int) -> list[BookEvent]: ...
    def expire_day(self) -> list[BookEvent]: ...
    def start_auction(self) -> None: ...
    def uncross(self, reference_price_ticks: int) -> list[BookEvent]: ...
    def indicative(self, reference_price_ticks: int) -> IndicativeUncross | None: ...
    def best_bid(self) -> tuple[int, int] | None: ...
    def best_ask(self) -> tuple[int, int] | None: ...
    def l2(self, depth: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]: ...
    def l3(self) -> tuple[list[OrderView], list[OrderView]]: ...
    def order(self, order_id: int) -> OrderView | None: ...
    def state_hash(self) -> bytes: ...
    def __len__(self) -> int: ...


def python_repr(value: object) -> str:
    """Render a command, event or view as the Python expression that rebuilds it."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    if isinstance(value, msgspec.Struct):
        fields = ", ".join(
            f"{name}={python_repr(getattr(value, name))}" for name in value.__struct_fields__
        )
        return f"{type(value).__name__}({fields})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ", ".join(
            f"{field.name}={python_repr(getattr(value, field.name))}"
            for field in dataclasses.fields(value)
            if getattr(value, field.name) != field.default
        )
        return f"{type(value).__name__}({fields})"
    if isinstance(value, list | tuple):
        inner = ", ".join(python_repr(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {python_repr(v)}" for k, v in value.items()) + "}"
    return repr(value)


class _Command:
    def __repr__(self) -> str:
        return python_repr(self)


@dataclass(frozen=True, repr=False)
class Place(_Command):
    order_id: int
    owner: str
    side: Side
    price_ticks: int
    quantity_units: int
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp_mode: StpMode = StpMode.EXPIRE_TAKER
    expire_ts_ns: int = 0

    def apply(self, book: Book) -> list[BookEvent]:
        return book.place(
            self.order_id,
            self.owner,
            self.side,
            self.price_ticks,
            self.quantity_units,
            order_type=self.order_type,
            time_in_force=self.time_in_force,
            post_only=self.post_only,
            stp_mode=self.stp_mode,
            expire_ts_ns=self.expire_ts_ns,
        )


@dataclass(frozen=True, repr=False)
class Cancel(_Command):
    order_id: int
    reason: CancelReason = CancelReason.USER

    def apply(self, book: Book) -> list[BookEvent]:
        return book.cancel(self.order_id, self.reason)


@dataclass(frozen=True, repr=False)
class Amend(_Command):
    order_id: int
    price_ticks: int
    quantity_units: int

    def apply(self, book: Book) -> list[BookEvent]:
        return book.amend(self.order_id, self.price_ticks, self.quantity_units)


@dataclass(frozen=True, repr=False)
class Expire(_Command):
    now_ts_ns: int

    def apply(self, book: Book) -> list[BookEvent]:
        return book.expire(self.now_ts_ns)


@dataclass(frozen=True, repr=False)
class ExpireDay(_Command):
    def apply(self, book: Book) -> list[BookEvent]:
        return book.expire_day()


@dataclass(frozen=True, repr=False)
class StartAuction(_Command):
    def apply(self, book: Book) -> list[BookEvent]:
        book.start_auction()
        return []


@dataclass(frozen=True, repr=False)
class Uncross(_Command):
    reference_price_ticks: int

    def apply(self, book: Book) -> list[BookEvent]:
        return book.uncross(self.reference_price_ticks)


@dataclass(frozen=True, repr=False)
class RestoreSnapshot(_Command):
    """Rebuild the engine from its own l3() (a snapshot) and go on; no-op on other books."""

    def apply(self, book: Book) -> list[BookEvent]:
        return []  # The differential runner swaps the engine itself (OrderBook.restore).


Command = Place | Cancel | Amend | Expire | ExpireDay | StartAuction | Uncross | RestoreSnapshot


@dataclass(frozen=True)
class Profile:
    """The shape of one random run: limits, the price band orders aim at, and the mix."""

    name: str
    limits: BookLimits
    start_in_auction: bool = False
    mid_price_ticks: int = 100
    spread_ticks: int = 5  # Prices land in mid +- spread: narrow, so orders cross often.
    reach_ticks: int = 2  # How far past mid a buy (sell) price may go up (down).
    owners: tuple[str, ...] = ("ann", "bob", "cat", "dan")
    auction_start_permille: int = 8  # Per step, in continuous mode.
    uncross_permille: int = 40  # Per step, in auction mode.


# Tight limits around the price band, so invalid prices and quantities sit one step away.
BANDED_LIMITS = BookLimits(
    price_ticks_min=95,
    price_ticks_max=105,
    quantity_units_max=30,
    price_levels_per_side_max=6,
    orders_per_book_max=24,
)
TINY_LIMITS = BookLimits(
    price_ticks_min=97,
    price_ticks_max=103,
    quantity_units_max=12,
    price_levels_per_side_max=2,
    orders_per_book_max=5,
)
ROOMY_LIMITS = BookLimits(
    price_ticks_min=90,
    price_ticks_max=110,
    quantity_units_max=60,
    price_levels_per_side_max=10_000,
    orders_per_book_max=1_000_000,
)

PROFILES = (
    Profile("banded", BANDED_LIMITS),
    Profile("tiny", TINY_LIMITS, spread_ticks=3, owners=("ann", "bob")),
    Profile("roomy-auction", ROOMY_LIMITS, start_in_auction=True, uncross_permille=15),
    Profile("two-owners", BANDED_LIMITS, owners=("ann", "bob"), auction_start_permille=15),
    # Few prices and many owners: long queues, so FIFO, mid-queue cancels and amends that keep
    # or lose their place in a crowded level get exercised.
    Profile(
        "deep-levels",
        DEFAULT_LIMITS,
        spread_ticks=2,
        reach_ticks=0,
        owners=("ann", "bob", "cat", "dan", "eve", "fay"),
        auction_start_permille=4,
    ),
)

_RESTING_TIF = (TimeInForce.GTC, TimeInForce.GTD, TimeInForce.DAY)
# GTC twice: plain resting orders are the backbone of a book.
_LIMIT_TIF_MIX = (*_RESTING_TIF, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK)
_CANCEL_REASONS = (
    CancelReason.USER,
    CancelReason.USER,
    CancelReason.OPERATOR,
    CancelReason.KILL_SWITCH,
    CancelReason.DELISTED,
)


class CommandGenerator:
    """Draw commands for `book` from one seeded random stream."""

    def __init__(self, seed: int, profile: Profile) -> None:
        self._random = random.Random(seed)
        self._profile = profile
        self._next_order_id = 1
        self._now_ts_ns = 1_000
        self._dead_ids: list[int] = []

    def next_command(self, book: Book) -> Command:
        rnd = self._random
        self._now_ts_ns += rnd.randint(0, 3)
        bids, asks = book.l3()
        live = [view.order_id for view in bids + asks]
        self._remember_dead(live)
        if rnd.randrange(1000) == 0:
            return RestoreSnapshot()
        if book.in_auction:
            if rnd.randrange(1000) < self._profile.uncross_permille:
                return Uncross(self._price() + rnd.randint(-4, 4))
        elif rnd.randrange(1000) < self._profile.auction_start_permille:
            return StartAuction()
        roll = rnd.randrange(1000)
        if roll < 590:
            return self._place(live)
        if roll < 710:
            return self._cancel(live)
        if roll < 910:
            return self._amend(bids + asks)
        if roll < 993:
            # Mostly "now", sometimes a past or future instant.
            return Expire(self._now_ts_ns + rnd.choice((0, 0, 0, -20, 15)))
        return ExpireDay()

    def _remember_dead(self, live: list[int]) -> None:
        if self._random.randrange(20) == 0 and self._next_order_id > 1:
            candidate = self._random.randrange(1, self._next_order_id)
            if candidate not in live:
                self._dead_ids = [*self._dead_ids[-30:], candidate]

    def _price(self, side: Side | None = None) -> int:
        # Buys lean low and sells lean high, so a book builds up, yet about a third cross.
        profile = self._profile
        spread = profile.spread_ticks
        low, high = -spread, spread
        if side is Side.BUY:
            high = profile.reach_ticks
        elif side is Side.SELL:
            low = -profile.reach_ticks
        return profile.mid_price_ticks + self._random.randint(low, high)

    def _quantity(self) -> int:
        rnd = self._random
        maximum = self._profile.limits.quantity_units_max
        roll = rnd.randrange(100)
        if roll < 3:
            return rnd.choice((0, -1, maximum + 1, maximum))
        if roll < 12:
            return rnd.randint(1, min(maximum, 50))
        return rnd.randint(1, 8)

    def _invalid_price(self) -> int:
        limits = self._profile.limits
        return self._random.choice(
            (limits.price_ticks_min - 1, limits.price_ticks_max + 1, 0, -3, limits.price_ticks_max)
        )

    def _order_id(self, live: list[int]) -> int:
        rnd = self._random
        roll = rnd.randrange(100)
        if roll < 3 and live:
            return rnd.choice(live)  # Duplicate of a live order.
        if roll < 6 and self._dead_ids:
            return rnd.choice(self._dead_ids)  # Reuse of a finished id: allowed.
        order_id = self._next_order_id
        self._next_order_id += 1
        return order_id

    def _place(self, live: list[int]) -> Place:
        rnd = self._random
        order_type = OrderType.MARKET if rnd.randrange(100) < 15 else OrderType.LIMIT
        if order_type is OrderType.MARKET:
            time_in_force = rnd.choice((TimeInForce.IOC, TimeInForce.IOC, TimeInForce.FOK))
        else:
            time_in_force = rnd.choice(_LIMIT_TIF_MIX)
        if rnd.randrange(100) < 2:
            time_in_force = rnd.choice(tuple(TimeInForce))  # Any combination, valid or not.
        post_only = rnd.randrange(100) < (20 if time_in_force in _RESTING_TIF else 2)
        if order_type is OrderType.MARKET and rnd.randrange(100) < 97:
            post_only = False
        expire_ts_ns = 0
        if time_in_force is TimeInForce.GTD:
            expire_ts_ns = self._now_ts_ns + rnd.randint(1, 60)
        if rnd.randrange(100) < 3:
            expire_ts_ns = rnd.choice((0, -1, self._now_ts_ns + 5))
        side = rnd.choice((Side.BUY, Side.SELL))
        return Place(
            order_id=self._order_id(live),
            owner=rnd.choice(self._profile.owners),
            side=side,
            price_ticks=self._invalid_price() if rnd.randrange(100) < 3 else self._price(side),
            quantity_units=self._quantity(),
            order_type=order_type,
            time_in_force=time_in_force,
            post_only=post_only,
            stp_mode=rnd.choice(tuple(StpMode)),
            expire_ts_ns=expire_ts_ns,
        )

    def _target_id(self, live: list[int]) -> int:
        rnd = self._random
        roll = rnd.randrange(100)
        if live and roll < 85:
            return rnd.choice(live)
        if self._dead_ids and roll < 93:
            return rnd.choice(self._dead_ids)
        return self._next_order_id + rnd.randint(0, 5)  # Never used yet.

    def _cancel(self, live: list[int]) -> Cancel:
        return Cancel(self._target_id(live), self._random.choice(_CANCEL_REASONS))

    def _amend(self, views: list[OrderView]) -> Amend:
        rnd = self._random
        order_id = self._target_id([view.order_id for view in views])
        current = next((view for view in views if view.order_id == order_id), None)
        if current is None:
            return Amend(order_id, self._price(), rnd.randint(1, 10))
        used = current.quantity_units - current.leaves_units  # Filled and STP-canceled units.
        price = current.price_ticks if rnd.randrange(100) < 45 else self._price(current.side)
        if rnd.randrange(100) < 3:
            price = self._invalid_price()
        roll = rnd.randrange(100)
        if roll < 35:
            quantity = rnd.randint(used + 1, current.quantity_units)  # Down or same.
        elif roll < 80:
            quantity = current.quantity_units + rnd.randint(1, 6)  # Up.
        elif roll < 92:
            quantity = rnd.randint(max(used - 1, 0), used)  # Nothing left: invalid.
        else:
            quantity = rnd.choice((self._profile.limits.quantity_units_max + 1, 0, -2))
        return Amend(order_id, price, quantity)
