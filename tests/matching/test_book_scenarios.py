"""The rulebook of continuous trading, as scenario tables: one line per command.

Each line reads `command => events => book after`:

  #2 S bob 4@100            => ok; fill 4@100 #1/#2 left 6/0         => bids #1 6@100 | asks -

Commands:
  #<id> B|S <owner> <qty>@<price> [flags]   place; flags: ioc fok day gtd:<ts> exp:<ts> post
                                            mkt (price = protection) stp:taker|maker|both|dec
  cancel #<id> [reason]    amend #<id> <qty>@<price>    expire <now>    expire_day
  auction (start_auction)  uncross <reference>          indicative <reference>
Events (separated by "; ", "-" for none):
  ok                                   the order was accepted
  reject <REASON>                      the command was rejected and changed nothing
  fill <qty>@<price> #<buy>/#<sell> left <buy leaves>/<sell leaves>
  cancel #<id> <units> <reason> [left <leaves>]
  amended #<id> <qty>@<price> left <leaves> kept|requeued
  uncrossed <volume>@<price> imbalance <imbalance>
  indicative <volume>@<price> imbalance <imbalance>    (or: none)
Book after: every live order in priority order, "<leaves>@<price>", prefixed by "auction" while
the book is in auction mode: `auction bids #1 6@100, #3 2@99 | asks -`.

Fields the table leaves out are checked by the harness on every line: an acceptance echoes the
command, owners/sides/prices of events match the orders they name, trade ids count up from 1,
the aggressor is the side of the command's order (None in an uncross), rejections name the
order's owner ("" for an unknown order), and after every command the book is not crossed
outside auction mode and quantity = filled + leaves + canceled holds for every order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from matching import (
    DEFAULT_LIMITS,
    AuctionUncrossed,
    BookEvent,
    BookLimits,
    CancelReason,
    IndicativeUncross,
    OrderAccepted,
    OrderAmended,
    OrderBook,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    OrderType,
    OrderView,
    Side,
    StpMode,
    TimeInForce,
    book_state_hash,
)

_PLACE = re.compile(r"#(\d+) ([BS]) (\w+) (\d+)@(-?\d+)((?: \S+)*)$")
_AMEND = re.compile(r"amend #(\d+) (\d+)@(-?\d+)$")
_CANCEL = re.compile(r"cancel #(\d+)(?: (\w+))?$")
_STP = {
    "taker": StpMode.EXPIRE_TAKER,
    "maker": StpMode.EXPIRE_MAKER,
    "both": StpMode.EXPIRE_BOTH,
    "dec": StpMode.DECREMENT,
}


@dataclass
class _Tracker:
    """What the harness knows about orders, to check the fields a table line leaves out."""

    owner: dict[int, str] = field(default_factory=dict)
    side: dict[int, Side] = field(default_factory=dict)
    price: dict[int, int] = field(default_factory=dict)
    next_trade_id: int = 1


def _render_event(event: BookEvent | IndicativeUncross | None) -> str:
    match event:
        case OrderAccepted():
            return "ok"
        case OrderRejected(reason=reason):
            return f"reject {reason.value}"
        case OrderFilled():
            return (
                f"fill {event.quantity_units}@{event.price_ticks}"
                f" #{event.buy_order_id}/#{event.sell_order_id}"
                f" left {event.buy_leaves_units}/{event.sell_leaves_units}"
            )
        case OrderCanceled():
            text = f"cancel #{event.order_id} {event.canceled_units} {event.reason.value}"
            return text + (f" left {event.leaves_units}" if event.leaves_units else "")
        case OrderAmended():
            kept = "kept" if event.priority_kept else "requeued"
            return (
                f"amended #{event.order_id} {event.quantity_units}@{event.price_ticks}"
                f" left {event.leaves_units} {kept}"
            )
        case AuctionUncrossed():
            return (
                f"uncrossed {event.volume_units}@{event.price_ticks}"
                f" imbalance {event.imbalance_units}"
            )
        case IndicativeUncross():
            return (
                f"indicative {event.volume_units}@{event.price_ticks}"
                f" imbalance {event.imbalance_units}"
            )
        case None:
            return "none"
    raise AssertionError(f"unknown event {event!r}")


def _render_side(orders: list[OrderView]) -> str:
    if not orders:
        return "-"
    return ", ".join(f"#{o.order_id} {o.leaves_units}@{o.price_ticks}" for o in orders)


def render_book(book: OrderBook) -> str:
    bids, asks = book.l3()
    text = f"bids {_render_side(bids)} | asks {_render_side(asks)}"
    return f"auction {text}" if book.in_auction else text


def _place(book: OrderBook, match: re.Match[str]) -> tuple[list[BookEvent], dict[str, object]]:
    order_id, side, owner = int(match[1]), Side.BUY if match[2] == "B" else Side.SELL, match[3]
    args: dict[str, object] = {
        "order_id": order_id,
        "owner": owner,
        "side": side,
        "quantity_units": int(match[4]),
        "price_ticks": int(match[5]),
        "order_type": OrderType.LIMIT,
        "time_in_force": TimeInForce.GTC,
        "post_only": False,
        "stp_mode": StpMode.EXPIRE_TAKER,
        "expire_ts_ns": 0,
    }
    for flag in match[6].split():
        name, _, value = flag.partition(":")
        if name in ("gtc", "ioc", "fok", "day"):
            args["time_in_force"] = TimeInForce(name)
        elif name == "gtd":
            args["time_in_force"], args["expire_ts_ns"] = TimeInForce.GTD, int(value)
        elif name == "exp":
            args["expire_ts_ns"] = int(value)
        elif name == "post":
            args["post_only"] = True
        elif name == "mkt":
            args["order_type"] = OrderType.MARKET
        elif name == "stp":
            args["stp_mode"] = _STP[value]
        else:
            raise AssertionError(f"unknown flag {flag!r}")
    return book.place(**args), args  # type: ignore[arg-type]


def _execute(book: OrderBook, command: str, known: _Tracker) -> str:
    """Run one table command, check the fields the table leaves out, render the events."""
    if match := _PLACE.match(command):
        events, args = _place(book, match)
        order_id = int(match[1])
        if isinstance(events[0], OrderAccepted):
            assert events[0] == OrderAccepted(
                order_id,
                str(args["owner"]),
                args["side"],  # type: ignore[arg-type]
                args["order_type"],  # type: ignore[arg-type]
                args["time_in_force"],  # type: ignore[arg-type]
                int(match[5]),
                int(match[4]),
            )
            known.owner[order_id], known.side[order_id] = match[3], args["side"]  # type: ignore[assignment]
            known.price[order_id] = int(match[5])
        _check_events(events, known, aggressor=known.side.get(order_id), rejected_owner=match[3])
    elif match := _AMEND.match(command):
        order_id = int(match[1])
        owner = known.owner[order_id] if book.order(order_id) is not None else ""
        events = book.amend(order_id, int(match[3]), int(match[2]))
        if isinstance(events[0], OrderAmended):
            known.price[order_id] = int(match[3])
        _check_events(events, known, aggressor=known.side.get(order_id), rejected_owner=owner)
    elif match := _CANCEL.match(command):
        reason = CancelReason(match[2]) if match[2] else CancelReason.USER
        events = book.cancel(int(match[1]), reason)
        _check_events(events, known, aggressor=None, rejected_owner="")
    elif command.startswith("expire_day"):
        events = book.expire_day()
        _check_events(events, known, aggressor=None, rejected_owner="")
    elif command.startswith("expire "):
        events = book.expire(int(command.split()[1]))
        _check_events(events, known, aggressor=None, rejected_owner="")
    elif command == "auction":
        book.start_auction()
        events = []
    elif command.startswith("uncross "):
        events = book.uncross(int(command.split()[1]))
        _check_events(events, known, aggressor=None, rejected_owner="")
    elif command.startswith("indicative "):
        return _render_event(book.indicative(int(command.split()[1])))
    else:
        raise AssertionError(f"unknown command {command!r}")
    return "; ".join(_render_event(event) for event in events) or "-"


def _check_events(
    events: list[BookEvent], known: _Tracker, aggressor: Side | None, rejected_owner: str
) -> None:
    for event in events:
        match event:
            case OrderRejected():
                assert len(events) == 1, "a rejection comes alone"
                assert event.owner == rejected_owner
            case OrderFilled():
                assert event.trade_id == known.next_trade_id, "trade ids count up from 1"
                known.next_trade_id += 1
                assert event.buy_owner == known.owner[event.buy_order_id]
                assert event.sell_owner == known.owner[event.sell_order_id]
                assert event.buy_owner != event.sell_owner, "a self-trade printed"
                assert known.side[event.buy_order_id] is Side.BUY
                assert known.side[event.sell_order_id] is Side.SELL
                assert event.aggressor_side is aggressor
            case OrderCanceled() | OrderAmended():
                assert event.owner == known.owner[event.order_id]
                assert event.side is known.side[event.order_id]
                assert event.price_ticks == known.price[event.order_id]
            case _:
                pass


def _check_book(book: OrderBook) -> None:
    bids, asks = book.l3()
    if not book.in_auction and bids and asks:
        assert bids[0].price_ticks < asks[0].price_ticks, "the book is crossed"
    for view in bids + asks:
        assert view.filled_units >= 0 and view.leaves_units > 0
        assert view.quantity_units >= view.filled_units + view.leaves_units
        assert book.order(view.order_id) == view
    assert len(book) == len(bids) + len(asks)
    assert book.state_hash() == book_state_hash(book.in_auction, book.next_trade_id, bids, asks)
    levels = book.l2(10**6)
    assert book.best_bid() == (levels[0][0] if levels[0] else None)
    assert book.best_ask() == (levels[1][0] if levels[1] else None)
    for views, aggregated in ((bids, levels[0]), (asks, levels[1])):
        totals: dict[int, int] = {}
        for view in views:
            totals[view.price_ticks] = totals.get(view.price_ticks, 0) + view.leaves_units
        assert aggregated == list(totals.items())


def _logical_lines(table: str) -> list[str]:
    # An indented line continues the command above it (tables keep to 100 columns).
    lines: list[str] = []
    for raw in table.strip("\n").splitlines():
        if raw.startswith(" ") and lines:
            lines[-1] += " " + raw.strip()
        elif raw.strip():
            lines.append(raw)
    return lines


def run_scenario(
    table: str, *, limits: BookLimits = DEFAULT_LIMITS, in_auction: bool = False
) -> OrderBook:
    """Play a scenario table line by line; fail on the first line that does not hold."""
    book = OrderBook(limits=limits, in_auction=in_auction)
    known = _Tracker()
    for number, line in enumerate(_logical_lines(table), start=1):
        command, expected_events, expected_book = (part.strip() for part in line.split("=>"))
        before = book.state_hash()
        got_events = _execute(book, command, known)
        assert got_events == expected_events, (
            f"line {number}: {line.strip()}\n  events got: {got_events}"
        )
        if got_events.startswith("reject"):
            assert book.state_hash() == before, f"line {number}: a rejection changed the book"
        got_book = render_book(book)
        assert got_book == expected_book, f"line {number}: {line.strip()}\n  book got: {got_book}"
        _check_book(book)
    return book


# ---------------------------------------------------------------------------- the rulebook

SCENARIOS: dict[str, str] = {}

# Resting, crossing, price-time priority.
SCENARIOS["limit orders rest when they do not cross"] = """
#1 B alice 10@100      => ok => bids #1 10@100 | asks -
#2 S bob 5@101         => ok => bids #1 10@100 | asks #2 5@101
#3 B carol 3@100       => ok => bids #1 10@100, #3 3@100 | asks #2 5@101
#4 B dave 2@99         => ok => bids #1 10@100, #3 3@100, #4 2@99 | asks #2 5@101
#5 S erin 1@102        => ok => bids #1 10@100, #3 3@100, #4 2@99 | asks #2 5@101, #5 1@102
"""
SCENARIOS["a crossing order trades at the maker's price"] = """
#1 S alice 10@100      => ok                                   => bids - | asks #1 10@100
#2 B bob 10@102        => ok; fill 10@100 #2/#1 left 0/0       => bids - | asks -
"""
SCENARIOS["the taker's remainder rests at its own price"] = """
#1 S alice 4@100       => ok                                   => bids - | asks #1 4@100
#2 B bob 10@101        => ok; fill 4@100 #2/#1 left 6/0        => bids #2 6@101 | asks -
"""
SCENARIOS["a partly filled maker keeps its place in the queue"] = """
#1 S alice 10@100      => ok                                   => bids - | asks #1 10@100
#2 S carol 5@100       => ok                                   => bids - | asks #1 10@100, #2 5@100
#3 B bob 4@100         => ok; fill 4@100 #3/#1 left 0/6        => bids - | asks #1 6@100, #2 5@100
#4 B dave 7@100        => ok; fill 6@100 #4/#1 left 1/0; fill 1@100 #4/#2 left 0/4
    => bids - | asks #2 4@100
"""
SCENARIOS["a buy sweep takes the best price first and FIFO within a level"] = """
#1 S alice 5@102       => ok => bids - | asks #1 5@102
#2 S bob 5@101         => ok => bids - | asks #2 5@101, #1 5@102
#3 S carol 5@101       => ok => bids - | asks #2 5@101, #3 5@101, #1 5@102
#4 B dave 12@102       => ok; fill 5@101 #4/#2 left 7/0; fill 5@101 #4/#3 left 2/0;
    fill 2@102 #4/#1 left 0/3 => bids - | asks #1 3@102
"""
SCENARIOS["a sell taker walks the bids from the highest price down"] = """
#1 B alice 5@99        => ok => bids #1 5@99 | asks -
#2 B bob 5@100         => ok => bids #2 5@100, #1 5@99 | asks -
#3 S carol 7@99        => ok; fill 5@100 #2/#3 left 0/2; fill 2@99 #1/#3 left 3/0
    => bids #1 3@99 | asks -
"""
SCENARIOS["the taker never trades beyond its limit price"] = """
#1 S alice 5@100       => ok                                   => bids - | asks #1 5@100
#2 S bob 5@102         => ok                                   => bids - | asks #1 5@100, #2 5@102
#3 B carol 8@101       => ok; fill 5@100 #3/#1 left 3/0        => bids #3 3@101 | asks #2 5@102
#4 S dave 4@102        => ok => bids #3 3@101 | asks #2 5@102, #4 4@102
"""

# Time in force: IOC, FOK.
SCENARIOS["IOC fills what it can and the rest is canceled"] = """
#1 S alice 5@100       => ok                                   => bids - | asks #1 5@100
#2 B bob 8@100 ioc     => ok; fill 5@100 #2/#1 left 3/0; cancel #2 3 ioc_remainder
    => bids - | asks -
"""
SCENARIOS["IOC that reaches no maker is canceled whole"] = """
#1 S alice 5@101       => ok                                   => bids - | asks #1 5@101
#2 B bob 8@100 ioc     => ok; cancel #2 8 ioc_remainder        => bids - | asks #1 5@101
#3 S carol 2@101 ioc   => ok; cancel #3 2 ioc_remainder        => bids - | asks #1 5@101
"""
SCENARIOS["FOK fills entirely, across levels"] = """
#1 S alice 5@100       => ok => bids - | asks #1 5@100
#2 S bob 5@101         => ok => bids - | asks #1 5@100, #2 5@101
#3 B carol 10@101 fok  => ok; fill 5@100 #3/#1 left 5/0; fill 5@101 #3/#2 left 0/0
    => bids - | asks -
"""
SCENARIOS["FOK that cannot fill entirely is rejected and trades nothing"] = """
#1 S alice 5@100       => ok                                   => bids - | asks #1 5@100
#2 S bob 5@102         => ok                                   => bids - | asks #1 5@100, #2 5@102
#3 B carol 6@101 fok   => reject FOK_NOT_FILLABLE              => bids - | asks #1 5@100, #2 5@102
#4 B carol 5@101 fok   => ok; fill 5@100 #4/#1 left 0/0        => bids - | asks #2 5@102
#5 S dave 1@90 fok     => reject FOK_NOT_FILLABLE              => bids - | asks #2 5@102
"""
SCENARIOS["FOK counts past an own maker only when the taker expires makers"] = """
#1 S alice 5@100       => ok => bids - | asks #1 5@100
#2 S bob 5@100         => ok => bids - | asks #1 5@100, #2 5@100
#3 B alice 5@100 fok   => reject FOK_NOT_FILLABLE => bids - | asks #1 5@100, #2 5@100
#4 B alice 5@100 fok stp:both => reject FOK_NOT_FILLABLE => bids - | asks #1 5@100, #2 5@100
#5 B alice 5@100 fok stp:maker => ok; cancel #1 5 self_trade; fill 5@100 #5/#2 left 0/0
    => bids - | asks -
"""
SCENARIOS["FOK with decrement: an own maker ends the walk"] = """
#1 S bob 5@100         => ok => bids - | asks #1 5@100
#2 S alice 5@100       => ok => bids - | asks #1 5@100, #2 5@100
#3 S bob 5@101         => ok => bids - | asks #1 5@100, #2 5@100, #3 5@101
#4 B alice 10@101 fok stp:dec => reject FOK_NOT_FILLABLE
    => bids - | asks #1 5@100, #2 5@100, #3 5@101
#5 B alice 5@101 fok stp:dec  => ok; fill 5@100 #5/#1 left 0/0 => bids - | asks #2 5@100, #3 5@101
"""

# Market orders.
SCENARIOS["a market order trades up to its protection price, the rest expires"] = """
#1 S alice 5@100       => ok => bids - | asks #1 5@100
#2 S bob 5@105         => ok => bids - | asks #1 5@100, #2 5@105
#3 B carol 8@102 mkt ioc => ok; fill 5@100 #3/#1 left 3/0; cancel #3 3 market_remainder
    => bids - | asks #2 5@105
"""
SCENARIOS["a market order on an empty side expires at once"] = """
#1 S alice 5@100 mkt ioc => ok; cancel #1 5 market_remainder => bids - | asks -
#2 B bob 5@100 mkt ioc   => ok; cancel #2 5 market_remainder => bids - | asks -
"""
SCENARIOS["a market FOK is all-or-nothing within its protection price"] = """
#1 B alice 5@100       => ok => bids #1 5@100 | asks -
#2 B bob 5@98          => ok => bids #1 5@100, #2 5@98 | asks -
#3 S carol 8@99 mkt fok => reject FOK_NOT_FILLABLE => bids #1 5@100, #2 5@98 | asks -
#4 S carol 8@98 mkt fok => ok; fill 5@100 #1/#4 left 0/3; fill 3@98 #2/#4 left 2/0
    => bids #2 2@98 | asks -
"""
SCENARIOS["a market order must be IOC or FOK and is never post-only"] = """
#1 B alice 5@100 mkt   => reject VALIDATION_ERROR => bids - | asks -
#2 B alice 5@100 mkt day => reject VALIDATION_ERROR => bids - | asks -
#3 B alice 5@100 mkt gtd:9 => reject VALIDATION_ERROR => bids - | asks -
#4 B alice 5@100 mkt ioc post => reject VALIDATION_ERROR => bids - | asks -
"""

# Post-only.
SCENARIOS["post-only rests when it would not take and is rejected when it would"] = """
#1 S alice 5@101       => ok => bids - | asks #1 5@101
#2 B bob 5@100 post    => ok => bids #2 5@100 | asks #1 5@101
#3 B bob 5@101 post    => reject POST_ONLY_WOULD_TRADE => bids #2 5@100 | asks #1 5@101
#4 S carol 5@100 post  => reject POST_ONLY_WOULD_TRADE => bids #2 5@100 | asks #1 5@101
#5 S carol 5@102 post  => ok => bids #2 5@100 | asks #1 5@101, #5 5@102
#6 S dave 2@100        => ok; fill 2@100 #2/#6 left 3/0 => bids #2 3@100 | asks #1 5@101, #5 5@102
"""
SCENARIOS["post-only cannot be IOC or FOK"] = """
#1 B alice 5@100 post ioc => reject VALIDATION_ERROR => bids - | asks -
#2 B alice 5@100 post fok => reject VALIDATION_ERROR => bids - | asks -
#3 B alice 5@100 post day => ok => bids #3 5@100 | asks -
"""

# GTD and DAY.
SCENARIOS["GTD orders expire when time passes, by expiry time then id"] = """
#1 B alice 5@100 gtd:2000 => ok => bids #1 5@100 | asks -
#2 B bob 5@99 gtd:1000    => ok => bids #1 5@100, #2 5@99 | asks -
#3 S carol 5@105 gtd:1000 => ok => bids #1 5@100, #2 5@99 | asks #3 5@105
#4 B dave 5@98            => ok => bids #1 5@100, #2 5@99, #4 5@98 | asks #3 5@105
expire 999                => -  => bids #1 5@100, #2 5@99, #4 5@98 | asks #3 5@105
expire 1000               => cancel #2 5 gtd_expired; cancel #3 5 gtd_expired
    => bids #1 5@100, #4 5@98 | asks -
expire 5000               => cancel #1 5 gtd_expired => bids #4 5@98 | asks -
"""
SCENARIOS["GTD needs a positive expiry and only GTD takes one"] = """
#1 B alice 5@100 gtd:0      => reject VALIDATION_ERROR => bids - | asks -
#2 B alice 5@100 gtd:-5     => reject VALIDATION_ERROR => bids - | asks -
#3 B alice 5@100 exp:10     => reject VALIDATION_ERROR => bids - | asks -
#4 B alice 5@100 day exp:10 => reject VALIDATION_ERROR => bids - | asks -
#5 B alice 5@100 ioc exp:10 => reject VALIDATION_ERROR => bids - | asks -
#6 B alice 5@100 gtd:1      => ok => bids #6 5@100 | asks -
"""
SCENARIOS["a partly filled GTD order expires with its leaves"] = """
#1 S alice 10@100 gtd:500 => ok => bids - | asks #1 10@100
#2 B bob 4@100            => ok; fill 4@100 #2/#1 left 0/6 => bids - | asks #1 6@100
expire 500                => cancel #1 6 gtd_expired => bids - | asks -
"""
SCENARIOS["a canceled GTD order does not expire again, even when its id comes back"] = """
#1 B alice 5@100 gtd:500 => ok => bids #1 5@100 | asks -
cancel #1                => cancel #1 5 user => bids - | asks -
#1 B alice 5@100 gtd:900 => ok => bids #1 5@100 | asks -
expire 600               => - => bids #1 5@100 | asks -
amend #1 7@101           => amended #1 7@101 left 7 requeued => bids #1 7@101 | asks -
expire 900               => cancel #1 7 gtd_expired => bids - | asks -
expire 901               => - => bids - | asks -
"""
SCENARIOS["DAY orders expire at the end of the day, in id order"] = """
#3 B alice 5@100 day   => ok => bids #3 5@100 | asks -
#1 S bob 5@105 day     => ok => bids #3 5@100 | asks #1 5@105
#2 B carol 5@99        => ok => bids #3 5@100, #2 5@99 | asks #1 5@105
expire_day             => cancel #1 5 day_expired; cancel #3 5 day_expired => bids #2 5@99 | asks -
expire_day             => - => bids #2 5@99 | asks -
"""

# Cancel and order ids.
SCENARIOS["cancel takes the leaves off the book; an unknown id is rejected"] = """
#1 S alice 10@100      => ok => bids - | asks #1 10@100
#2 B bob 4@100         => ok; fill 4@100 #2/#1 left 0/6 => bids - | asks #1 6@100
cancel #1              => cancel #1 6 user => bids - | asks -
cancel #1              => reject UNKNOWN_ORDER => bids - | asks -
cancel #2              => reject UNKNOWN_ORDER => bids - | asks -
#3 B carol 1@99        => ok => bids #3 1@99 | asks -
cancel #3 operator     => cancel #3 1 operator => bids - | asks -
"""
SCENARIOS["an order id is unique while its order is live"] = """
#1 B alice 5@100       => ok => bids #1 5@100 | asks -
#1 S bob 5@105         => reject DUPLICATE_ORDER_ID => bids #1 5@100 | asks -
cancel #1              => cancel #1 5 user => bids - | asks -
#1 S bob 5@105         => ok => bids - | asks #1 5@105
"""
SCENARIOS["canceled orders leave no trace in the queue"] = """
#1 S alice 5@100       => ok => bids - | asks #1 5@100
#2 S bob 5@100         => ok => bids - | asks #1 5@100, #2 5@100
#3 S carol 5@100       => ok => bids - | asks #1 5@100, #2 5@100, #3 5@100
#4 S dave 5@100        => ok => bids - | asks #1 5@100, #2 5@100, #3 5@100, #4 5@100
cancel #1              => cancel #1 5 user => bids - | asks #2 5@100, #3 5@100, #4 5@100
cancel #3              => cancel #3 5 user => bids - | asks #2 5@100, #4 5@100
#5 B erin 7@100        => ok; fill 5@100 #5/#2 left 2/0; fill 2@100 #5/#4 left 0/3
    => bids - | asks #4 3@100
cancel #4              => cancel #4 3 user => bids - | asks -
#6 B erin 1@100        => ok => bids #6 1@100 | asks -
"""
SCENARIOS["the best price moves when its level empties"] = """
#1 S alice 5@100       => ok => bids - | asks #1 5@100
#2 S bob 5@101         => ok => bids - | asks #1 5@100, #2 5@101
cancel #1              => cancel #1 5 user => bids - | asks #2 5@101
#3 B carol 5@100       => ok => bids #3 5@100 | asks #2 5@101
#4 S dave 5@100        => ok; fill 5@100 #3/#4 left 0/0 => bids - | asks #2 5@101
"""

# Amend.
SCENARIOS["amend down at the same price keeps priority"] = """
#1 B alice 10@100      => ok => bids #1 10@100 | asks -
#2 B bob 10@100        => ok => bids #1 10@100, #2 10@100 | asks -
amend #1 6@100         => amended #1 6@100 left 6 kept => bids #1 6@100, #2 10@100 | asks -
amend #2 10@100        => amended #2 10@100 left 10 kept => bids #1 6@100, #2 10@100 | asks -
#3 S carol 8@100       => ok; fill 6@100 #1/#3 left 0/2; fill 2@100 #2/#3 left 8/0
    => bids #2 8@100 | asks -
"""
SCENARIOS["amend up loses priority"] = """
#1 B alice 10@100      => ok => bids #1 10@100 | asks -
#2 B bob 10@100        => ok => bids #1 10@100, #2 10@100 | asks -
amend #1 11@100        => amended #1 11@100 left 11 requeued => bids #2 10@100, #1 11@100 | asks -
"""
SCENARIOS["amend to a new price re-queues at the back of the new level"] = """
#1 B alice 5@99        => ok => bids #1 5@99 | asks -
#2 B bob 5@100         => ok => bids #2 5@100, #1 5@99 | asks -
amend #1 5@100         => amended #1 5@100 left 5 requeued => bids #2 5@100, #1 5@100 | asks -
amend #2 4@99          => amended #2 4@99 left 4 requeued => bids #1 5@100, #2 4@99 | asks -
"""
SCENARIOS["an amend that crosses matches like a new order"] = """
#1 S alice 5@101       => ok => bids - | asks #1 5@101
#2 B bob 8@100         => ok => bids #2 8@100 | asks #1 5@101
amend #2 8@101         => amended #2 8@101 left 8 requeued; fill 5@101 #2/#1 left 3/0
    => bids #2 3@101 | asks -
#3 S carol 3@101       => ok; fill 3@101 #2/#3 left 0/0 => bids - | asks -
"""
SCENARIOS["amend sets the total quantity, filled units included"] = """
#1 S alice 10@100      => ok => bids - | asks #1 10@100
#2 B bob 4@100         => ok; fill 4@100 #2/#1 left 0/6 => bids - | asks #1 6@100
amend #1 4@100         => reject INVALID_QUANTITY => bids - | asks #1 6@100
amend #1 5@100         => amended #1 5@100 left 1 kept => bids - | asks #1 1@100
amend #1 20@100        => amended #1 20@100 left 16 requeued => bids - | asks #1 16@100
"""
SCENARIOS["amend rejections change nothing"] = """
#1 B alice 5@100 post  => ok => bids #1 5@100 | asks -
#2 S bob 5@102         => ok => bids #1 5@100 | asks #2 5@102
amend #9 5@100         => reject UNKNOWN_ORDER => bids #1 5@100 | asks #2 5@102
amend #1 0@100         => reject INVALID_QUANTITY => bids #1 5@100 | asks #2 5@102
amend #1 5@0           => reject INVALID_PRICE => bids #1 5@100 | asks #2 5@102
amend #1 5@102         => reject POST_ONLY_WOULD_TRADE => bids #1 5@100 | asks #2 5@102
amend #1 5@101         => amended #1 5@101 left 5 requeued => bids #1 5@101 | asks #2 5@102
amend #2 5@101         => amended #2 5@101 left 5 requeued; fill 5@101 #1/#2 left 0/0
    => bids - | asks -
"""

# Self-trade prevention (decided by the taker's mode).
SCENARIOS["STP expire_taker: the taker stops at its own maker"] = """
#1 S bob 3@100         => ok => bids - | asks #1 3@100
#2 S alice 5@100       => ok => bids - | asks #1 3@100, #2 5@100
#3 S carol 5@100       => ok => bids - | asks #1 3@100, #2 5@100, #3 5@100
#4 B alice 10@100      => ok; fill 3@100 #4/#1 left 7/0; cancel #4 7 self_trade
    => bids - | asks #2 5@100, #3 5@100
#5 B alice 1@100 ioc   => ok; cancel #5 1 self_trade => bids - | asks #2 5@100, #3 5@100
"""
SCENARIOS["STP expire_maker: the own maker is canceled and matching goes on"] = """
#1 S alice 5@100       => ok => bids - | asks #1 5@100
#2 S bob 5@101         => ok => bids - | asks #1 5@100, #2 5@101
#3 B alice 8@101 stp:maker => ok; cancel #1 5 self_trade; fill 5@101 #3/#2 left 3/0
    => bids #3 3@101 | asks -
"""
SCENARIOS["STP expire_both: the own maker and the taker are canceled"] = """
#1 S bob 2@100         => ok => bids - | asks #1 2@100
#2 S alice 5@100       => ok => bids - | asks #1 2@100, #2 5@100
#3 S carol 5@100       => ok => bids - | asks #1 2@100, #2 5@100, #3 5@100
#4 B alice 10@100 stp:both => ok; fill 2@100 #4/#1 left 8/0; cancel #2 5 self_trade;
    cancel #4 8 self_trade => bids - | asks #3 5@100
"""
SCENARIOS["STP decrement: both lose the overlap and a larger taker goes on"] = """
#1 S alice 3@100       => ok => bids - | asks #1 3@100
#2 S bob 5@100         => ok => bids - | asks #1 3@100, #2 5@100
#3 B alice 6@100 stp:dec => ok; cancel #1 3 self_trade; cancel #3 3 self_trade left 3;
    fill 3@100 #3/#2 left 0/2 => bids - | asks #2 2@100
"""
SCENARIOS["STP decrement: a larger maker keeps the rest, prevented units stay counted"] = """
#1 S alice 10@100      => ok => bids - | asks #1 10@100
#2 B alice 4@100 stp:dec => ok; cancel #1 4 self_trade left 6; cancel #2 4 self_trade
    => bids - | asks #1 6@100
amend #1 10@100        => amended #1 10@100 left 6 kept => bids - | asks #1 6@100
amend #1 4@100         => reject INVALID_QUANTITY => bids - | asks #1 6@100
amend #1 5@100         => amended #1 5@100 left 1 kept => bids - | asks #1 1@100
#3 B bob 2@100         => ok; fill 1@100 #3/#1 left 1/0 => bids #3 1@100 | asks -
"""
SCENARIOS["STP applies at every level a sweep reaches, for a sell taker too"] = """
#1 B bob 2@102         => ok => bids #1 2@102 | asks -
#2 B alice 2@101       => ok => bids #1 2@102, #2 2@101 | asks -
#3 B carol 2@100       => ok => bids #1 2@102, #2 2@101, #3 2@100 | asks -
#4 S alice 6@100 stp:maker => ok; fill 2@102 #1/#4 left 0/4; cancel #2 2 self_trade;
    fill 2@100 #3/#4 left 0/2 => bids - | asks #4 2@100
#5 B alice 2@100 stp:dec => ok; cancel #4 2 self_trade; cancel #5 2 self_trade => bids - | asks -
"""

# Reject precedence of place (limits at N and N+1 are in test_limits.py).
SCENARIOS["place checks run in the documented order, the first failure wins"] = """
#1 B alice 5@100           => ok => bids #1 5@100 | asks -
#1 B alice 0@0 ioc post    => reject DUPLICATE_ORDER_ID => bids #1 5@100 | asks -
#2 B alice 0@0 ioc post    => reject INVALID_QUANTITY => bids #1 5@100 | asks -
#2 B alice 5@0 ioc post    => reject INVALID_PRICE => bids #1 5@100 | asks -
#2 B alice 5@100 ioc post  => reject VALIDATION_ERROR => bids #1 5@100 | asks -
#3 S bob 5@100 post        => reject POST_ONLY_WOULD_TRADE => bids #1 5@100 | asks -
#3 S bob 6@100 fok         => reject FOK_NOT_FILLABLE => bids #1 5@100 | asks -
"""


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    run_scenario(SCENARIOS[name])


def test_there_are_forty_continuous_scenarios_at_least() -> None:
    assert len(SCENARIOS) >= 40
