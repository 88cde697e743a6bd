"""The rulebook of order entry: reservations, the rejection precedence, idempotency, ownership.

The precedence of PlaceOrder rejections is the one documented in exchange/trading.py; its
table below is checked twice: each check alone gives its reason, and an order that fails a
check and every later one gets the reason of the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import pytest

from exchange import trading
from exchange.calendar import NS_PER_DAY, TS_NS_MAX
from exchange.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CloseMarket,
    Deposit,
    DistributeRoyalty,
    Halt,
    IssueShares,
    KillSwitch,
    ListAsset,
    OpenAccount,
    OpenOffering,
    PlaceOrder,
    Resume,
    Role,
    StartAuction,
    Withdraw,
)
from exchange.core import Exchange
from exchange.events import (
    CommandRejected,
    OrderAmended,
    OrderCanceled,
    OrderRejected,
    Phase,
    TradeExecuted,
)
from exchange.reasons import Reject
from ledger.records import (
    BALANCE_MAX,
    GENESIS_HASH,
    Bucket,
    Posting,
    decode_record,
    encode_record,
    seal,
)
from matching.limits import PRICE_LEVELS_PER_SIDE_MAX, QUANTITY_UNITS_MAX
from matching.orders import CancelReason
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    CASH,
    DAY,
    FOK,
    GTD,
    HOUR,
    IOC,
    ISSUER,
    MARKET,
    OPERATOR,
    SECOND,
    SELL,
    SYMBOL,
    USD,
    Market,
    accepted,
    buy_need,
    events,
    issuance,
    listing,
)


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


# Reservations.


def test_a_buy_order_holds_price_times_tick_times_quantity_plus_the_maximum_fee(
    market: Market,
) -> None:
    market.trading()
    outcome = market.buy("alice", 10, 990)
    need = 990 * 10 * 10 + 990 * 10 * 10 * 25 // 10_000  # 99,000 + 247 (247.5 rounded down).
    assert need == buy_need(990, 10) == 99_247
    assert outcome.record.postings == (
        Posting(USD, need, "alice", Bucket.AVAILABLE, "alice", Bucket.HELD),
    )
    assert market.cash("alice") == (CASH - need, need)


def test_a_sell_order_holds_its_units(market: Market) -> None:
    market.trading()
    outcome = market.sell(ISSUER, 40, 1_010)
    assert outcome.record.postings == (
        Posting(SYMBOL, 40, ISSUER, Bucket.AVAILABLE, ISSUER, Bucket.HELD),
    )
    assert market.units(ISSUER) == (rulebook.TOTAL_UNITS - 40, 40)


def test_a_buy_needing_one_minor_unit_more_than_available_is_rejected(market: Market) -> None:
    market.trading()
    market.open_account("erin", buy_need(1_000, 10) - 1)
    market.refused(market.order("erin", BUY, 10, 1_000), Reject.INSUFFICIENT_BALANCE)
    market.do(Deposit(OPERATOR, "erin", USD, 1))
    accepted(market.buy("erin", 10, 1_000))
    assert market.cash("erin") == (0, buy_need(1_000, 10))


def test_a_sell_of_one_unit_more_than_available_is_rejected(market: Market) -> None:
    market.trading()
    market.give_units("alice", 10)
    market.refused(market.order("alice", SELL, 11, 1_000), Reject.INSUFFICIENT_SHARES)
    market.rest("alice", SELL, 6, 1_050)
    # Units held for an open sell are not available for another.
    market.refused(market.order("alice", SELL, 5, 1_050), Reject.INSUFFICIENT_SHARES)
    market.rest("alice", SELL, 4, 1_050)


def test_the_largest_hold_an_order_can_make_fits_the_journal(market: Market) -> None:
    # What a buy must hold is computed from the client's price and quantity, up to ~1e33 minor
    # units here; it is compared with available cash, which deposits never take past
    # BALANCE_MAX. So the biggest hold allowed is a posting the journal can encode, and one a
    # unit bigger is refused with nothing journaled.
    tick = 10**6
    market.trading(tick_size_minor=tick, reference_price_ticks=10**8)
    market.fund_to_the_limit("alice")
    available = market.cash("alice")[0]
    per_unit = 10**8 * tick * (10_000 + rulebook.TAKER_BPS) // 10_000  # Divides exactly.
    units = available // per_unit
    market.refused(
        market.order("alice", BUY, QUANTITY_UNITS_MAX, 10**8), Reject.INSUFFICIENT_BALANCE
    )
    market.refused(market.order("alice", BUY, units + 1, 10**8), Reject.INSUFFICIENT_BALANCE)
    outcome = market.buy("alice", units, 10**8)
    accepted(outcome)
    assert outcome.record.postings[0].amount == units * per_unit > BALANCE_MAX - per_unit
    assert decode_record(encode_record(seal(GENESIS_HASH, outcome.record))).body() == (
        outcome.record
    )


def test_cash_held_for_an_open_buy_cannot_be_withdrawn(market: Market) -> None:
    market.trading()
    market.rest("alice", BUY, 100, 1_000)
    available = market.cash("alice")[0]
    market.refused(Withdraw(OPERATOR, "alice", USD, available + 1), Reject.INSUFFICIENT_BALANCE)
    market.do(Withdraw(OPERATOR, "alice", USD, available))
    assert market.cash("alice") == (0, buy_need(1_000, 100))


def test_a_market_buy_holds_against_the_protection_price_and_returns_what_it_did_not_spend(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 5, 1_000)
    outcome = market.market_buy("alice", 10)
    # The protection price of a market buy is the top of the static band: 1,000 + 10%.
    assert outcome.record.postings[0] == Posting(
        USD, buy_need(1_100, 10), "alice", Bucket.AVAILABLE, "alice", Bucket.HELD
    )
    remainder = events(outcome, OrderCanceled)
    assert [(event.canceled_units, event.reason) for event in remainder] == [
        (5, CancelReason.MARKET_REMAINDER)
    ]
    assert market.cash("alice") == (CASH - 50_000 - 125, 0)
    assert market.units("alice") == (5, 0)


def test_a_market_buy_is_funded_at_its_protection_price_not_at_the_ask(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 5, 1_000)
    market.open_account("erin", buy_need(1_100, 5) - 1)  # Enough at 1,000, not at 1,100.
    market.refused(
        market.order("erin", BUY, 5, order_type=MARKET, tif=IOC), Reject.INSUFFICIENT_BALANCE
    )


def test_a_market_sell_holds_its_units_and_trades_no_lower_than_the_band_edge(
    market: Market,
) -> None:
    market.trading()
    market.give_units("alice", 10)
    market.rest("bob", BUY, 4, 990)
    outcome = market.market_sell("alice", 10)
    assert outcome.record.postings[0] == Posting(
        SYMBOL, 10, "alice", Bucket.AVAILABLE, "alice", Bucket.HELD
    )
    assert [trade.price_ticks for trade in events(outcome, TradeExecuted)] == [990]
    assert market.units("alice") == (6, 0)


def test_an_ioc_remainder_is_canceled_at_once_and_its_reservation_released(
    market: Market,
) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 4, 1_000)
    outcome = market.buy("alice", 10, 1_000, tif=IOC)
    assert [(event.canceled_units, event.reason) for event in events(outcome, OrderCanceled)] == [
        (6, CancelReason.IOC_REMAINDER)
    ]
    assert market.cash("alice") == (CASH - 40_000 - 100, 0)
    assert market.open_orders("alice") == []


def test_a_fok_order_fills_whole_or_not_at_all(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 4, 1_000)
    market.rest(ISSUER, SELL, 6, 1_010)
    market.refused(market.order("alice", BUY, 11, 1_010, tif=FOK), Reject.FOK_NOT_FILLABLE)
    outcome = market.buy("alice", 10, 1_010, tif=FOK)
    assert [trade.quantity_units for trade in events(outcome, TradeExecuted)] == [4, 6]
    assert market.units("alice") == (10, 0)


def test_cancel_releases_exactly_what_the_order_held(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990)
    outcome = market.cancel("alice", order_id)
    assert outcome.record.postings == (
        Posting(USD, buy_need(990, 10), "alice", Bucket.HELD, "alice", Bucket.AVAILABLE),
    )
    assert market.cash("alice") == (CASH, 0)


def test_cancel_by_cl_ord_id_works_like_cancel_by_order_id(market: Market) -> None:
    market.trading()
    market.rest("alice", BUY, 10, 990, cl="mine")
    canceled = market.cancel("alice", cl="mine")
    assert isinstance(canceled.reply, OrderCanceled)
    assert market.cash("alice") == (CASH, 0)


def test_cancel_of_a_partly_filled_buy_releases_what_its_leaves_hold(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 1_000)
    market.sell(ISSUER, 3, 1_000)
    assert market.cash("alice")[1] == buy_need(1_000, 7)
    market.cancel("alice", order_id)
    assert market.cash("alice")[1] == 0


def test_amending_a_buy_down_releases_exactly_the_difference_and_keeps_priority(
    market: Market,
) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 1_000)
    outcome = market.amend("alice", order_id, 7, 1_000)
    released = buy_need(1_000, 10) - buy_need(1_000, 7)  # 100,250 - 70,175.
    assert outcome.record.postings == (
        Posting(USD, released, "alice", Bucket.HELD, "alice", Bucket.AVAILABLE),
    )
    assert isinstance(outcome.reply, OrderAmended) and outcome.reply.priority_kept
    assert market.cash("alice")[1] == buy_need(1_000, 7)


def test_amending_a_buy_up_holds_exactly_the_difference_and_loses_priority(
    market: Market,
) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 1_000)
    outcome = market.amend("alice", order_id, 12, 1_010)
    held = buy_need(1_010, 12) - buy_need(1_000, 10)  # 121,503 - 100,250.
    assert outcome.record.postings == (
        Posting(USD, held, "alice", Bucket.AVAILABLE, "alice", Bucket.HELD),
    )
    assert isinstance(outcome.reply, OrderAmended) and not outcome.reply.priority_kept
    assert market.cash("alice") == (CASH - buy_need(1_010, 12), buy_need(1_010, 12))


def test_amending_a_sell_holds_or_releases_exactly_the_difference_in_units(
    market: Market,
) -> None:
    market.trading()
    order_id = market.rest(ISSUER, SELL, 10, 1_050)
    market.amend(ISSUER, order_id, 25, 1_050)
    assert market.units(ISSUER)[1] == 25
    market.amend(ISSUER, order_id, 4, 1_040)
    assert market.units(ISSUER)[1] == 4


def test_amending_a_partly_filled_order_counts_only_its_leaves(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 1_000)
    market.sell(ISSUER, 4, 1_000)
    market.amend("alice", order_id, 8, 1_000)  # 4 filled, 4 left.
    assert market.cash("alice")[1] == buy_need(1_000, 4)
    market.refused(AmendOrder("alice", 1_000, 4, order_id), Reject.INVALID_QUANTITY)


def test_an_order_resting_outside_todays_band_may_still_be_reduced_in_place(
    market: Market,
) -> None:
    market.trading()  # Reference 1000, static band [900, 1100].
    market.give_units("alice", 100)
    bid = market.rest("carol", BUY, 10, 905)
    market.sell("alice", 5, 1_040)
    market.buy("bob", 5, 1_040)
    market.tick(24 * HOUR)  # The day roll moves the reference to 1040.
    assert market.instrument().static_low > 905
    reduced = market.amend("carol", bid, 4, 905)
    assert isinstance(reduced.reply, OrderAmended) and reduced.reply.priority_kept
    assert market.cash("carol")[1] == buy_need(905, 4)
    market.refused(AmendOrder("carol", 905, 6, bid), Reject.PRICE_BAND)  # More risk there: no.
    market.refused(AmendOrder("carol", 906, 4, bid), Reject.PRICE_BAND)  # A new price: no.


def test_an_amend_the_book_refuses_starts_no_volatility_auction() -> None:
    # Unchecked (no rulebook fixture): 10,000 orders with the per-command checks take too long.
    market = Market()
    market.pre_open(reference_price_ticks=20_000, tick_size_minor=1, static_band_bps=10_000)
    market.open_trading()
    market.do(Deposit(OPERATOR, "alice", USD, 10**12))
    market.rest(ISSUER, SELL, 10, 22_000)  # Inside the static band, outside the dynamic one.
    exchange, ts_ns = market.exchange, market.ts_ns
    for price in range(1, PRICE_LEVELS_PER_SIDE_MAX + 1):  # The bid side at its most levels.
        ts_ns += 1
        exchange.handle(market.order("alice", BUY, 1, price), ts_ns)
    lowest = market.open_orders("alice")[0]
    # At 22,000 the bid would trade through the dynamic band, but the book has no room for a
    # new level: the amend is refused, and the market stays continuous.
    outcome = exchange.handle(AmendOrder("alice", 22_000, 1, lowest), ts_ns + 1)
    assert isinstance(outcome.reply, CommandRejected)
    assert outcome.reply.reason is Reject.LIMIT_EXCEEDED
    assert outcome.record.postings == () and len(outcome.events) == 1
    assert market.phase() is Phase.CONTINUOUS


def test_an_ioc_order_is_refused_while_pre_open_where_no_uncross_is_scheduled(
    market: Market,
) -> None:
    market.pre_open()
    market.refused(
        market.order("alice", BUY, 5, order_type=MARKET, tif=IOC),
        Reject.NOT_ALLOWED_IN_AUCTION,
        "pre-open",
    )
    market.refused(market.order("alice", BUY, 5, 1_000, tif=IOC), Reject.NOT_ALLOWED_IN_AUCTION)
    market.rest("alice", BUY, 5, 1_000)  # A GTC order waits for the opening auction.


def test_an_amend_that_cannot_be_funded_is_rejected_and_changes_nothing(market: Market) -> None:
    market.trading()
    market.open_account("erin", buy_need(1_000, 10))
    order_id = market.rest("erin", BUY, 10, 1_000)
    market.refused(AmendOrder("erin", 1_000, 11, order_id), Reject.INSUFFICIENT_BALANCE)
    market.refused(AmendOrder("erin", 1_101, 10, order_id), Reject.PRICE_BAND)


def test_an_amend_into_the_opposite_side_trades_at_once(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 5, 1_000)
    order_id = market.rest("alice", BUY, 5, 990)
    outcome = market.amend("alice", order_id, 5, 1_000)
    assert [trade.quantity_units for trade in events(outcome, TradeExecuted)] == [5]
    assert market.units("alice") == (5, 0)
    assert market.cash("alice") == (CASH - 50_000 - 125, 0)


def test_an_order_never_trades_with_its_own_account(market: Market) -> None:
    market.trading()
    market.give_units("alice", 10)
    market.rest("alice", SELL, 10, 1_000)
    outcome = market.buy("alice", 10, 1_000)
    assert events(outcome, TradeExecuted) == []
    assert [event.reason for event in events(outcome, OrderCanceled)] == [CancelReason.SELF_TRADE]
    assert market.units("alice") == (0, 10)


# The rejection precedence of PlaceOrder.
#
# The scene: the standard instrument trading; the issuer offers 10@1000 and 10@1060; a second
# instrument of the same patent is halted; alice has an order under cl_ord_id "used". The base
# order (alice buys 1@990 GTC) is valid. Each fault makes it fail exactly one check.

HALTED = "RS-US10123456B2.H"
_BASE = {
    "actor": "alice",
    "symbol": SYMBOL,
    "cl_ord_id": "fresh",
    "time_in_force": rulebook.GTC,
    "price_ticks": 990,
    "quantity_units": 1,
}
PRECEDENCE: list[tuple[str, dict[str, Any], Reject, str]] = [
    ("1 forbidden", {"actor": "mallory"}, Reject.FORBIDDEN, "may not place orders"),
    ("2 cl_ord_id", {"cl_ord_id": ""}, Reject.VALIDATION_ERROR, "cl_ord_id"),
    ("3 duplicate", {"cl_ord_id": "used"}, Reject.DUPLICATE_CL_ORD_ID, "used"),
    ("4 symbol", {"symbol": "RS-NOPE"}, Reject.UNKNOWN_SYMBOL, "RS-NOPE"),
    ("5 phase", {"symbol": HALTED}, Reject.TRADING_HALTED, "halted"),
    ("6 shape", {"expire_ts_ns": 1 << 62}, Reject.VALIDATION_ERROR, "expire_ts_ns"),
    ("7 quantity", {"quantity_units": QUANTITY_UNITS_MAX + 1}, Reject.INVALID_QUANTITY, "lot"),
    # Prices and cash in messages as the client writes them, not in ticks and minor units.
    (
        "8 band",
        {"price_ticks": 1_101},
        Reject.PRICE_BAND,
        "price 110.10 is outside the price band [90.00, 110.00]",
    ),
    ("9 funds", {"quantity_units": 2_000}, Reject.INSUFFICIENT_BALANCE, ".00 USD and"),
    (
        "10 dynamic band",
        {"time_in_force": IOC, "price_ticks": 1_060, "quantity_units": 20},
        Reject.PRICE_BAND,
        "an order at 106.00 would trade through the dynamic band",
    ),
    (
        "11 book",
        {"time_in_force": FOK, "price_ticks": 1_000, "quantity_units": 15},
        Reject.FOK_NOT_FILLABLE,
        "cannot fill",
    ),
]


def _precedence_scene(market: Market) -> None:
    market.trading()
    market.do(issuance(symbol=HALTED))
    market.halt(HALTED)
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest(ISSUER, SELL, 10, 1_060)
    market.rest("alice", BUY, 1, 950, cl="used")


def _faulty_order(market: Market, faults: list[dict[str, Any]]) -> PlaceOrder:
    fields = dict(_BASE)
    for fault in reversed(faults):  # The earlier check's fault wins where two touch a field.
        fields.update(fault)
    return msgspec.structs.replace(market.order("alice", BUY, 1), **fields)


def _expect_precedence(market: Market, command: PlaceOrder, reason: Reject, words: str) -> None:
    if "dynamic band" in words:
        # The one documented exception to "a rejection changes nothing": the volatility
        # auction that the order's arrival started stays.
        outcome = market.do(command)
        rulebook.rejected(outcome, reason, words)
        assert outcome.record.postings == ()
        assert market.phase() is Phase.AUCTION
    else:
        market.refused(command, reason, words)


def test_the_base_order_of_the_precedence_table_is_valid(market: Market) -> None:
    _precedence_scene(market)
    accepted(market.do(_faulty_order(market, [])))


@pytest.mark.parametrize("step", range(len(PRECEDENCE)), ids=[row[0] for row in PRECEDENCE])
def test_each_check_of_the_precedence_rejects_on_its_own(market: Market, step: int) -> None:
    _precedence_scene(market)
    _, fault, reason, words = PRECEDENCE[step]
    _expect_precedence(market, _faulty_order(market, [fault]), reason, words)


@pytest.mark.parametrize("step", range(len(PRECEDENCE)), ids=[row[0] for row in PRECEDENCE])
def test_an_order_failing_several_checks_gets_the_first_reason(market: Market, step: int) -> None:
    _precedence_scene(market)
    _, _, reason, words = PRECEDENCE[step]
    faults = [row[1] for row in PRECEDENCE[step:]]
    _expect_precedence(market, _faulty_order(market, faults), reason, words)


def _order_with(**fields: Any) -> Callable[[Market], PlaceOrder]:
    def build(market: Market) -> PlaceOrder:
        return msgspec.structs.replace(market.order("alice", BUY, 1, 990), **fields)

    return build


def _suspend_alice(market: Market) -> None:
    market.do(KillSwitch(OPERATOR, "alice", True))


def _close(market: Market) -> None:
    market.do(CloseMarket(OPERATOR, SYMBOL))


def _nothing(market: Market) -> None:
    pass


def _volatility_auction(market: Market) -> None:
    market.do(StartAuction(OPERATOR, SYMBOL, HOUR))


def _ask_at_990(market: Market) -> None:
    market.rest(ISSUER, SELL, 5, 990)


_VALIDATION = Reject.VALIDATION_ERROR
OTHER_REJECTIONS: list[
    tuple[str, Callable[[Market], None], Callable[[Market], PlaceOrder], Reject, str]
] = [
    ("operator", _nothing, _order_with(actor=OPERATOR), Reject.FORBIDDEN, ""),
    ("suspended", _suspend_alice, _order_with(), Reject.ACCOUNT_SUSPENDED, ""),
    ("closed", _close, _order_with(), Reject.MARKET_CLOSED, ""),
    ("37 chars", _nothing, _order_with(cl_ord_id="x" * 37), _VALIDATION, "cl_ord_id"),
    (
        "market price",
        _nothing,
        _order_with(order_type=MARKET, time_in_force=IOC),
        _VALIDATION,
        "no price",
    ),
    (
        "market gtc",
        _nothing,
        _order_with(order_type=MARKET, price_ticks=0),
        _VALIDATION,
        "IOC or FOK",
    ),
    (
        "post ioc",
        _nothing,
        _order_with(post_only=True, time_in_force=IOC),
        _VALIDATION,
        "post-only",
    ),
    ("gtd past", _nothing, _order_with(time_in_force=GTD, expire_ts_ns=1), _VALIDATION, "future"),
    ("gtd no expiry", _nothing, _order_with(time_in_force=GTD), _VALIDATION, "future"),
    (
        "gtd past the clock",
        _nothing,
        _order_with(time_in_force=GTD, expire_ts_ns=TS_NS_MAX + 1),
        _VALIDATION,
        "2**63",
    ),
    (
        "day expiry",
        _nothing,
        _order_with(time_in_force=DAY, expire_ts_ns=1 << 62),
        _VALIDATION,
        "GTD",
    ),
    ("qty 0", _nothing, _order_with(quantity_units=0), Reject.INVALID_QUANTITY, ""),
    ("price 0", _nothing, _order_with(price_ticks=0), Reject.PRICE_BAND, ""),
    ("price 899", _nothing, _order_with(price_ticks=899), Reject.PRICE_BAND, "[90.00, 110.00]"),
    ("no shares", _nothing, _order_with(side=SELL), Reject.INSUFFICIENT_SHARES, ""),
    (
        "ioc in auction",
        _volatility_auction,
        _order_with(time_in_force=IOC),
        Reject.NOT_ALLOWED_IN_AUCTION,
        "",
    ),
    ("post takes", _ask_at_990, _order_with(post_only=True), Reject.POST_ONLY_WOULD_TRADE, ""),
    (
        "fok short",
        _ask_at_990,
        _order_with(time_in_force=FOK, quantity_units=6),
        Reject.FOK_NOT_FILLABLE,
        "",
    ),
]


@pytest.mark.parametrize(
    ("setup", "build", "reason", "words"),
    [row[1:] for row in OTHER_REJECTIONS],
    ids=[row[0] for row in OTHER_REJECTIONS],
)
def test_every_kind_of_bad_order_gets_its_reason_and_changes_nothing(
    market: Market,
    setup: Callable[[Market], None],
    build: Callable[[Market], PlaceOrder],
    reason: Reject,
    words: str,
) -> None:
    market.trading()
    setup(market)
    market.refused(build(market), reason, words)


def test_a_gtd_order_may_expire_as_late_as_the_clock_reaches(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990, tif=GTD, expire_ts_ns=TS_NS_MAX)
    view = market.book_order(order_id)
    assert view is not None and view.expire_ts_ns == TS_NS_MAX
    market.exchange.state_hash()


def test_a_cl_ord_id_of_36_characters_is_accepted(market: Market) -> None:
    market.trading()
    accepted(market.buy("alice", 1, 990, cl="x" * 36))


def test_a_quantity_must_be_a_multiple_of_the_lot(market: Market) -> None:
    market.trading(lot_size_units=10)
    market.refused(market.order("alice", BUY, 15, 990), Reject.INVALID_QUANTITY, "lot size 10")
    accepted(market.buy("alice", 20, 990))


# Idempotency: cl_ord_id is unique per account and trading day.


def test_a_resent_order_gets_the_same_reply_and_no_second_order(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 5, 1_000)
    command = market.order("alice", BUY, 10, 1_000, cl="once")
    first = market.do(command)
    again = market.do(command)
    assert again.reply == first.reply
    assert again.events == [] and again.record.postings == ()
    assert len(market.open_orders("alice")) == 1
    assert market.units("alice") == (5, 0)


def test_a_resent_rejected_order_gets_the_same_rejection_even_once_it_could_pass(
    market: Market,
) -> None:
    market.trading()
    market.open_account("erin")
    command = market.order("erin", BUY, 10, 1_000, cl="once")
    first = market.do(command)
    market.do(Deposit(OPERATOR, "erin", USD, CASH))
    again = market.do(command)
    assert isinstance(first.reply, OrderRejected) and again.reply == first.reply
    assert again.record.postings == ()


def test_a_resend_after_the_kill_switch_still_gets_the_first_outcome(market: Market) -> None:
    # The order traded, the connection dropped, the operator suspended the account: the
    # client's resend must learn that the order traded, not that the account may not trade.
    market.trading()
    market.rest(ISSUER, SELL, 5, 1_000)
    command = market.order("alice", BUY, 5, 1_000, cl="once")
    first = market.do(command)
    market.do(KillSwitch(OPERATOR, "alice", True))
    again = market.do(command)
    assert again.reply == first.reply
    assert again.events == [] and again.record.postings == ()
    market.refused(market.order("alice", BUY, 5, 1_000, cl="new"), Reject.ACCOUNT_SUSPENDED)


def test_another_order_under_a_used_cl_ord_id_is_a_duplicate(market: Market) -> None:
    market.trading()
    market.rest("alice", BUY, 10, 990, cl="once")
    market.refused(
        market.order("alice", BUY, 11, 990, cl="once"), Reject.DUPLICATE_CL_ORD_ID, "once"
    )
    # The namespace is the account's: bob may use the same cl_ord_id.
    market.rest("bob", BUY, 11, 990, cl="once")


def test_a_finished_orders_cl_ord_id_stays_taken_until_the_day_rolls(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990, cl="once")
    market.cancel("alice", order_id)
    market.refused(market.order("alice", BUY, 5, 990, cl="once"), Reject.DUPLICATE_CL_ORD_ID)
    market.tick(24 * HOUR)
    accepted(market.buy("alice", 5, 990, cl="once"))


def test_an_open_orders_cl_ord_id_stays_taken_after_the_day_rolls(market: Market) -> None:
    market.trading()
    market.rest("alice", BUY, 10, 990, cl="once")
    market.tick(24 * HOUR)
    market.refused(market.order("alice", BUY, 5, 990, cl="once"), Reject.DUPLICATE_CL_ORD_ID)


def _midnight_after(market: Market) -> int:
    return (market.ts_ns // NS_PER_DAY + 1) * NS_PER_DAY


def test_a_resend_just_after_the_day_roll_gets_the_first_outcome_and_no_second_order(
    market: Market,
) -> None:
    # The client library resends after a timeout or a 5xx: handled at 23:59:59, its answer
    # lost, the resend arrives at 00:00:04. It must not trade a second time.
    market.trading()
    market.rest(ISSUER, SELL, 1_000, 1_000)
    market.tick_to(_midnight_after(market) - 2 * SECOND)
    command = market.order("alice", BUY, 100, 1_000, cl="once", tif=IOC)
    first = market.do(command, SECOND)
    order_id = accepted(first)
    state = market.exchange.state
    next_order_id = state.next_order_id
    again = market.do(command, 5 * SECOND)
    assert again.reply == first.reply
    assert state.next_order_id == next_order_id, "the resend became a second order"
    assert events(again, TradeExecuted) == [] and again.record.postings == ()
    assert market.units("alice") == (100, 0)
    # What a 5xx tells the client to do, order.status, finds it by either name.
    client_order = state.client_order("alice", "once")
    assert client_order is not None and client_order.order_id == order_id
    finished = state.finished_order(order_id)
    assert finished is not None and finished.cum_units == 100


def test_a_finished_order_is_forgotten_only_at_the_second_day_roll(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 1_000, 1_000)
    command = market.order("alice", BUY, 10, 1_000, cl="once", tif=IOC)
    order_id = accepted(market.do(command))
    market.tick(24 * HOUR)  # One roll: a resend is still the same order.
    assert market.do(command).reply.order_id == order_id  # type: ignore[union-attr]
    market.tick(24 * HOUR)  # Two: the id is forgotten, the same command is a new order.
    state = market.exchange.state
    assert state.client_order("alice", "once") is None and state.finished_order(order_id) is None
    assert accepted(market.do(command)) != order_id
    assert market.units("alice") == (20, 0)


def test_another_order_under_yesterdays_cl_ord_id_is_a_new_one_and_each_resend_its_own(
    market: Market,
) -> None:
    # cl_ord_id is unique among the account's orders of the trading day: yesterday's finished
    # order does not take it today, but a resend of it is still answered as itself.
    market.trading()
    yesterdays = market.order("alice", BUY, 10, 990, cl="once")
    first = market.do(yesterdays)
    market.cancel("alice", accepted(first))
    market.tick(24 * HOUR)
    todays = market.order("alice", BUY, 5, 990, cl="once")
    second = market.do(todays)
    assert accepted(second) != accepted(first)
    assert market.do(yesterdays).reply == first.reply
    assert market.do(todays).reply == second.reply
    assert market.open_orders("alice") == [accepted(second)]
    market.refused(market.order("alice", BUY, 7, 990, cl="once"), Reject.DUPLICATE_CL_ORD_ID)
    client_order = market.exchange.state.client_order("alice", "once")
    assert client_order is not None and client_order.order_id == accepted(second)


def test_an_order_the_book_refused_is_found_by_its_id_the_day_after(market: Market) -> None:
    market.trading()
    refused = market.do(market.order("alice", BUY, 10, 1_000, cl="fok", tif=FOK))
    reply = refused.reply
    assert isinstance(reply, OrderRejected) and reply.order_id
    market.tick(24 * HOUR)
    state = market.exchange.state
    assert state.rejected_order(reply.order_id) == ("alice", "fok")
    assert market.do(market.order("alice", BUY, 10, 1_000, cl="fok", tif=FOK)).reply == reply
    market.tick(24 * HOUR)
    assert state.rejected_order(reply.order_id) is None


# Ownership: an account sees and touches only its own orders.


def test_cancelling_another_accounts_order_is_answered_like_an_unknown_order(
    market: Market,
) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990, cl="alices")
    missing = order_id + 1_000
    theirs = market.refused(CancelOrder("bob", order_id), Reject.UNKNOWN_ORDER)
    unknown = market.refused(CancelOrder("bob", missing), Reject.UNKNOWN_ORDER)
    by_cl = market.refused(CancelOrder("bob", 0, "alices"), Reject.UNKNOWN_ORDER)
    assert theirs.reply == unknown.reply == by_cl.reply
    assert theirs.events == unknown.events
    assert market.book_order(order_id) is not None


def test_amending_another_accounts_order_is_answered_like_an_unknown_order(
    market: Market,
) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990)
    theirs = market.refused(AmendOrder("bob", 990, 5, order_id), Reject.UNKNOWN_ORDER)
    unknown = market.refused(AmendOrder("bob", 990, 5, order_id + 1_000), Reject.UNKNOWN_ORDER)
    assert theirs.reply == unknown.reply


def test_an_investor_cannot_cancel_all_orders_of_another_account(market: Market) -> None:
    market.trading()
    market.rest("alice", BUY, 10, 990)
    theirs = market.refused(CancelAll("bob", "alice"), Reject.FORBIDDEN)
    nobody = market.refused(CancelAll("bob", "nobody"), Reject.FORBIDDEN)
    assert theirs.reply == nobody.reply  # Not even whether the account exists leaks.


def _operator_commands(market: Market) -> list[Any]:
    now = market.ts_ns
    return [
        OpenAccount("alice", "sybil", Role.OPERATOR),
        Deposit("alice", "alice", USD, 1_000),
        Withdraw("alice", "alice", USD, 1_000),
        listing("US99999999B1", actor="alice", owner_account="alice"),
        msgspec.structs.replace(issuance(symbol="RS-X"), actor="alice"),
        OpenOffering("alice", SYMBOL, 10, 900, now + HOUR, False),
        KillSwitch("alice", "bob", True),
        DistributeRoyalty("alice", SYMBOL, 1_000, "alice", "2030-Q1"),
        Halt("alice", SYMBOL),
        Resume("alice", SYMBOL),
        StartAuction("alice", SYMBOL, HOUR),
        CloseMarket("alice", SYMBOL),
    ]


@pytest.mark.parametrize("index", range(12))
def test_investors_cannot_run_operator_commands(market: Market, index: int) -> None:
    market.trading()
    market.rest("bob", BUY, 10, 990)
    command = _operator_commands(market)[index]
    outcome = market.refused(command, Reject.FORBIDDEN)
    assert isinstance(outcome.reply, CommandRejected)
    assert outcome.reply.command == type(command).__struct_config__.tag


def test_the_operator_command_list_is_complete() -> None:
    from exchange.commands import OPERATOR_COMMANDS

    assert {type(command) for command in _operator_commands(Market())} == set(OPERATOR_COMMANDS)
    assert IssueShares in OPERATOR_COMMANDS and ListAsset in OPERATOR_COMMANDS


def test_an_account_places_at_most_the_days_maximum_of_orders(
    monkeypatch: pytest.MonkeyPatch, market: Market
) -> None:
    # (monkeypatch first: the market's replay check at its teardown runs under the same rule.)
    # Each order placed is remembered until the day after next (resends, status): unbounded,
    # an account placing and canceling at the rate limit all day grew the exchange by GBs.
    monkeypatch.setattr(trading, "ORDERS_PER_ACCOUNT_PER_DAY_MAX", 3)
    market.trading()
    kept = market.rest("alice", BUY, 1, 990)
    market.cancel("alice", market.rest("alice", BUY, 1, 980))  # A cancel frees no room.
    rulebook.rejected(market.buy("alice", 1, 2_000), Reject.PRICE_BAND)  # Refused ones count.
    fourth = market.order("alice", BUY, 1, 970, cl="fourth")
    rulebook.rejected(market.do(fourth), Reject.LIMIT_EXCEEDED, "3 orders today")
    # Not remembered: its resend is refused the same way, never a duplicate.
    rulebook.rejected(market.do(fourth), Reject.LIMIT_EXCEEDED)
    accepted(market.buy("bob", 1, 990))  # Another account's own count.
    restored = Exchange.from_snapshot(market.exchange.snapshot())
    again = restored.handle(fourth, market.ts_ns + 1)
    assert again.reply == market.do(fourth).reply  # The count is rebuilt on a restore.
    market.tick_to(_midnight_after(market))
    # A new day: only the open order carried over counts.
    assert market.exchange.state.accounts["alice"].orders_today == 1
    accepted(market.do(fourth))
    assert kept in market.open_orders("alice")
