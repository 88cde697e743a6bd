"""The rulebook of time and money: UTC dates without a clock, integer cash without surprises,
currencies with their ISO 4217 minor units.

The seeded property at the end replays with IPX_SEED=<seed> (printed on every run).
"""

from __future__ import annotations

import datetime
import os
import random
from collections.abc import Iterator

import pytest

from exchange.admin import CURRENCY
from exchange.calendar import (
    NS_PER_DAY,
    InvalidDate,
    civil_from_days,
    days_from_civil,
    format_date,
    parse_date,
    trading_day,
)
from exchange.commands import Deposit, Tick, Withdraw
from exchange.currencies import MINOR_UNITS, cash_text, price_text
from exchange.events import OrderCanceled, Phase
from exchange.money import buy_reservation_minor, fee_minor, notional_minor
from exchange.reasons import Reject
from exchange.state import SEQUENCER_ACTOR
from matching.orders import CancelReason
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    DAY,
    GTD,
    OPERATOR,
    SYMBOL,
    Market,
    events,
    issuance,
    listing,
)


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


# Dates.


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("1970-01-01", 0),
        ("1969-12-31", -1),
        ("2000-02-29", 11_016),
        ("2000-03-01", 11_017),
        ("2030-01-15", 21_929),
        ("2038-01-19", 24_855),
    ],
)
def test_a_date_is_midnight_utc_of_that_day(text: str, days: int) -> None:
    assert parse_date(text) == days * NS_PER_DAY
    assert format_date(days * NS_PER_DAY) == text
    assert format_date(days * NS_PER_DAY + NS_PER_DAY - 1) == text  # The last ns of the day.


@pytest.mark.parametrize(
    "text",
    [
        "2031-02-29",  # Not a leap year.
        "1900-02-29",  # Divisible by 100, not by 400.
        "2100-02-29",
        "2030-04-31",
        "2030-13-01",
        "2030-00-10",
        "2030-01-00",
        "2030-1-15",
        "30-01-15",
        "2030/01/15",
        " 2030-01-15",
        "2030-01-15T00:00",
        "2030-01-15\n",  # Python's $ matches before a final newline; the parser must not.
        "\u0662\u0660\u0663\u0660-01-15",  # Arabic-Indic digits, which \d and int() take.
        "",
    ],
)
def test_a_date_that_is_not_a_real_yyyy_mm_dd_day_is_refused(text: str) -> None:
    with pytest.raises(InvalidDate):
        parse_date(text)


def test_every_day_from_1900_to_2200_agrees_with_the_proleptic_gregorian_calendar() -> None:
    epoch = datetime.date(1970, 1, 1)
    day = datetime.date(1900, 1, 1)
    last = datetime.date(2200, 12, 31)
    step = datetime.timedelta(days=1)
    while day <= last:
        days = (day - epoch).days
        assert days_from_civil(day.year, day.month, day.day) == days, day
        assert civil_from_days(days) == (day.year, day.month, day.day), day
        day += step
    assert parse_date("2000-02-29") == (datetime.date(2000, 2, 29) - epoch).days * NS_PER_DAY


def test_a_trading_day_is_a_utc_calendar_day() -> None:
    midnight = parse_date("2030-01-16")
    assert trading_day(midnight - 1) == trading_day(midnight) - 1
    assert trading_day(midnight) == trading_day(midnight + NS_PER_DAY - 1)


# Money.


def test_a_notional_is_price_times_tick_times_quantity_exactly() -> None:
    assert notional_minor(1_001, 10, 3) == 30_030
    big = 10**9
    assert notional_minor(big, 10**6, big) == 10**24  # Python ints do not overflow.


@pytest.mark.parametrize(
    ("notional", "bps", "fee"),
    [(30_030, 25, 75), (30_030, 10, 30), (399, 25, 0), (400, 25, 1), (10_000, 0, 0), (1, 1_000, 0)],
)
def test_a_fee_rounds_down_to_the_minor_unit(notional: int, bps: int, fee: int) -> None:
    assert fee_minor(notional, bps) == fee


def test_a_buy_reservation_is_the_notional_plus_the_fee_on_it_rounded_down() -> None:
    assert buy_reservation_minor(990, 10, 10, 25) == 99_000 + 247


# Currencies: the ISO 4217 codes with their minor units, one table for the core and the wire.


@pytest.mark.parametrize(
    ("currency", "digits"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("VND", 0),
        ("XOF", 0),
        ("XAF", 0),
        ("BHD", 3),
        ("KWD", 3),
        ("OMR", 3),
        ("JOD", 3),
        ("TND", 3),
        ("UYW", 4),
    ],
)
def test_a_currency_has_the_minor_units_of_iso_4217(currency: str, digits: int) -> None:
    # 1.500 OMR is 1,500 baisa and 1,000 VND is 1,000 minor units: with a default of 2
    # decimals for every code not listed, the journal recorded them 10 and 100 times off.
    assert MINOR_UNITS[currency] == digits


@pytest.mark.parametrize("code", ["ABC", "XAU", "XTS", "XXX", "XDR", "CLF", "USN", "HRK", "usd"])
def test_a_code_that_is_no_iso_4217_cash_currency_is_not_in_the_table(code: str) -> None:
    # Made-up codes, precious metals, testing and drawing-rights units, funds, and currencies
    # withdrawn from ISO 4217 (the kuna, since the euro) are nothing a bank pays out.
    assert code not in MINOR_UNITS


def test_every_currency_has_the_form_no_symbol_may_have() -> None:
    # Units and cash share no balance (exchange/admin.py): a symbol never has this form.
    assert len(MINOR_UNITS) > 150
    assert all(CURRENCY.match(code) for code in MINOR_UNITS)
    assert list(MINOR_UNITS) == sorted(MINOR_UNITS)


@pytest.mark.parametrize("currency", ["ABC", "XAU", "XTS", "CLF"])
def test_only_a_currency_of_the_table_enters_the_exchange(market: Market, currency: str) -> None:
    market.accounts()
    market.refused(Deposit(OPERATOR, "alice", currency, 1), Reject.VALIDATION_ERROR, "ISO 4217")
    market.refused(Withdraw(OPERATOR, "alice", currency, 1), Reject.VALIDATION_ERROR, "ISO 4217")
    market.refused(listing(currency=currency), Reject.VALIDATION_ERROR, "ISO 4217")
    rulebook.accepted_reply(market.do(Deposit(OPERATOR, "alice", "OMR", 1_500)))
    assert market.cash("alice", "OMR") == (1_500, 0)


def _base_seed() -> int:
    configured = os.environ.get("IPX_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(1 << 32)


BASE_SEED = _base_seed()


def test_a_reservation_covers_every_way_its_order_can_be_filled() -> None:
    # Fills at or below the limit, each charged a fee at or below the maximum and rounded down
    # on its own, never cost more than the reservation made for the whole order at entry.
    print(f"reservation property: IPX_SEED={BASE_SEED}")
    rng = random.Random(BASE_SEED)
    for _ in range(3_000):
        limit = rng.randint(1, 10**6)
        tick = rng.choice((1, 5, 10, 100))
        quantity = rng.randint(1, 500)
        max_bps = rng.randint(0, 1_000)
        reserved = buy_reservation_minor(limit, tick, quantity, max_bps)
        spent, left = 0, quantity
        while left:
            units = rng.randint(1, left)
            notional = notional_minor(rng.randint(1, limit), tick, units)
            spent += notional + fee_minor(notional, rng.randint(0, max_bps))
            left -= units
        assert spent <= reserved, (BASE_SEED, limit, tick, quantity, max_bps)


# Time through the exchange.


def test_a_patent_expiring_on_a_leap_day_lists_and_delists_at_midnight_utc_that_day(
    market: Market,
) -> None:
    market.accounts()
    market.refused(listing(expiry_date="2030-02-29"), Reject.VALIDATION_ERROR, "no day 29")
    market.do(listing(expiry_date="2032-02-29"))
    market.do(issuance())
    market.open_trading()
    market.tick_to(parse_date("2032-02-29") - 1)
    assert market.phase() is Phase.CONTINUOUS
    market.tick(1)
    assert market.phase() is Phase.DELISTED


def test_a_day_order_entered_a_nanosecond_before_midnight_expires_at_midnight(
    market: Market,
) -> None:
    market.trading()
    midnight = parse_date("2030-01-16")
    market.tick_to(midnight - 2)
    order_id = market.rest("alice", BUY, 1, 990, tif=DAY)
    outcome = market.tick(1)
    assert [(event.order_id, event.reason) for event in events(outcome, OrderCanceled)] == [
        (order_id, CancelReason.DAY_EXPIRED)
    ]


def test_a_gtd_order_lives_to_the_nanosecond(market: Market) -> None:
    market.trading()
    expiry = market.ts_ns + 2
    order_id = market.rest("alice", BUY, 1, 990, tif=GTD, expire_ts_ns=expiry)
    assert market.tick(0).events == []  # Same ts as the order: nothing fires.
    outcome = market.tick(1)
    assert market.ts_ns == expiry
    assert [event.order_id for event in events(outcome, OrderCanceled)] == [order_id]


def test_no_timer_is_due_for_a_gtd_order_that_has_left_the_book(market: Market) -> None:
    # An idle sequencer journals a Tick when a timer is due: one for each canceled GTD order
    # made a never-restarted server's journal differ from a restarted one's.
    market.trading()
    expiries = [market.ts_ns + NS_PER_DAY // 4 + step for step in range(3)]
    orders = [
        market.rest("alice", BUY, 1, 990, tif=GTD, expire_ts_ns=expiry) for expiry in expiries
    ]
    exchange = market.exchange
    assert exchange.timer_due(expiries[0])
    for order_id in orders[:2]:
        market.cancel("alice", order_id)
    assert not exchange.timer_due(expiries[1])
    assert exchange.state.next_timer_ns == expiries[2]  # The live order's, still on time.
    assert exchange.timer_due(expiries[2])
    market.cancel("alice", orders[2])
    assert not exchange.timer_due(expiries[2])
    assert exchange.state.next_timer_ns == (exchange.state.trading_day + 1) * NS_PER_DAY


def test_time_going_backwards_is_a_crash_not_a_rejection(market: Market) -> None:
    market.trading()
    before = market.fingerprint()
    with pytest.raises(AssertionError, match="backwards"):
        market.exchange.handle(Tick(SEQUENCER_ACTOR), market.ts_ns - 1)
    assert market.fingerprint() == before
    assert market.exchange.seq == len(market.records)
    assert SYMBOL in market.exchange.state.instruments


def test_messages_write_cash_and_prices_in_the_currencys_decimals() -> None:
    assert cash_text(100_250, "USD") == "1002.50 USD"
    assert cash_text(1_500, "OMR") == "1.500 OMR"
    assert cash_text(7, "JPY") == "7 JPY"
    assert cash_text(-5, "USD") == "-0.05 USD"
    assert price_text(1_101, 10, "USD") == "110.10"
    assert price_text(3, 250, "BHD") == "0.750"
