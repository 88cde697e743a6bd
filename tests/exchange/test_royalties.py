"""The rulebook of royalty distributions: who is paid, how much, and only once.

A distribution pays every holder at its record point (the command itself) in proportion to
the units held, available or held for open sell orders; the parts are whole minor units
chosen by the largest-remainder method (ties to the smaller account id) and sum exactly to
the amount; a (symbol, period) pays once. The payer is charged in an execution report of its
own (RoyaltyCharged: the amount, and the part of it paid back to the payer as a holder), so
every cash movement of a distribution is reported to the account it moves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exchange.calendar import parse_date
from exchange.commands import Deposit, DistributeRoyalty
from exchange.events import Phase, RoyaltyCharged, RoyaltyDistributed, RoyaltyPaid
from exchange.reasons import Reject
from ledger.records import Bucket, Posting
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    CASH,
    ISSUER,
    LICENSEE,
    OPERATOR,
    SELL,
    SYMBOL,
    USD,
    Market,
    accepted_reply,
    events,
    issuance,
    listing,
)


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


def _pay(
    market: Market, amount: int, period: str = "2030-Q1", payer: str = LICENSEE
) -> dict[str, int]:
    outcome = accepted_reply(market.do(DistributeRoyalty(OPERATOR, SYMBOL, amount, payer, period)))
    return {paid.account: paid.amount_minor for paid in events(outcome, RoyaltyPaid)}


def _three_holders(market: Market, issuer: int, alice: int, bob: int) -> None:
    market.trading(total_units=issuer + alice + bob)
    market.give_units("alice", alice)
    market.give_units("bob", bob)
    assert market.units(ISSUER) == (issuer, 0)


def test_a_royalty_is_paid_pro_rata_to_every_holder(market: Market) -> None:
    _three_holders(market, 500, 300, 200)
    before = {account: market.cash(account)[0] for account in (ISSUER, "alice", "bob")}
    paid = _pay(market, 1_000_000)
    assert paid == {"alice": 300_000, "bob": 200_000, ISSUER: 500_000}
    for account, amount in paid.items():
        assert market.cash(account)[0] - before[account] == amount
    assert market.cash(LICENSEE) == (CASH - 1_000_000, 0)


def test_the_distribution_names_its_totals_and_moves_cash_only(market: Market) -> None:
    _three_holders(market, 500, 300, 200)
    outcome = market.do(DistributeRoyalty(OPERATOR, SYMBOL, 1_000, LICENSEE, "2030-Q1"))
    assert outcome.reply == RoyaltyDistributed(SYMBOL, "2030-Q1", LICENSEE, 1_000, 1_000, 3)
    assert outcome.record.postings == (
        Posting(USD, 300, LICENSEE, Bucket.AVAILABLE, "alice", Bucket.AVAILABLE),
        Posting(USD, 200, LICENSEE, Bucket.AVAILABLE, "bob", Bucket.AVAILABLE),
        Posting(USD, 500, LICENSEE, Bucket.AVAILABLE, ISSUER, Bucket.AVAILABLE),
    )


def test_leftover_minor_units_go_to_the_largest_remainders(market: Market) -> None:
    # 100 over 150/100/50 units: 50, 33.33, 16.67 -> 50, 33, 16 and one left for bob's .67.
    _three_holders(market, 150, 100, 50)
    assert _pay(market, 100) == {"alice": 33, "bob": 17, ISSUER: 50}


def test_equal_remainders_are_broken_by_the_smaller_account_id(market: Market) -> None:
    # 100 over three equal holdings: 33.33 each; the one minor unit left goes to "alice".
    _three_holders(market, 100, 100, 100)
    assert _pay(market, 100) == {"alice": 34, "bob": 33, ISSUER: 33}
    assert _pay(market, 101, "2030-Q2") == {"alice": 34, "bob": 34, ISSUER: 33}


@pytest.mark.parametrize("amount", [1, 2, 299, 301, 999_999_937, 10**12 + 7])
def test_the_parts_sum_exactly_to_the_amount_and_each_is_within_one_minor_unit(
    market: Market, amount: int
) -> None:
    _three_holders(market, 1_234, 567, 3)
    market.do(Deposit(OPERATOR, LICENSEE, USD, max(0, amount - CASH) + 1))
    paid = _pay(market, amount)
    assert sum(paid.values()) == amount
    total = 1_234 + 567 + 3
    for account, units in ((ISSUER, 1_234), ("alice", 567), ("bob", 3)):
        assert amount * units // total <= paid[account] <= amount * units // total + 1


def test_units_held_in_open_sell_orders_count(market: Market) -> None:
    _three_holders(market, 100, 100, 100)
    market.rest("alice", SELL, 100, 1_050)
    assert market.units("alice") == (0, 100)
    assert _pay(market, 300) == {"alice": 100, "bob": 100, ISSUER: 100}


def test_an_account_that_sold_everything_is_paid_nothing(market: Market) -> None:
    _three_holders(market, 100, 100, 100)
    market.rest("carol", BUY, 100, 1_000)
    market.sell("bob", 100, 1_000)
    outcome = market.do(DistributeRoyalty(OPERATOR, SYMBOL, 300, LICENSEE, "2030-Q1"))
    paid = {event.account: event.amount_minor for event in events(outcome, RoyaltyPaid)}
    assert paid == {"alice": 100, "carol": 100, ISSUER: 100}
    assert isinstance(outcome.reply, RoyaltyDistributed) and outcome.reply.holders == 3


def test_units_bought_after_the_record_point_earn_nothing_for_that_period(
    market: Market,
) -> None:
    _three_holders(market, 100, 100, 100)
    first = _pay(market, 300)
    market.give_units("carol", 50)
    assert "carol" not in first
    assert _pay(market, 300, "2030-Q2")["carol"] == 50


def test_a_period_is_paid_only_once(market: Market) -> None:
    _three_holders(market, 100, 100, 100)
    _pay(market, 300)
    command = DistributeRoyalty(OPERATOR, SYMBOL, 300, LICENSEE, "2030-Q1")
    market.refused(command, Reject.DUPLICATE_DISTRIBUTION, "2030-Q1")
    assert market.cash(LICENSEE) == (CASH - 300, 0)
    assert _pay(market, 300, "2030-Q2") == {"alice": 100, "bob": 100, ISSUER: 100}


def test_a_payer_that_holds_units_pays_itself_nothing(market: Market) -> None:
    _three_holders(market, 100, 100, 100)
    before = market.cash("alice")[0]
    outcome = market.do(DistributeRoyalty(OPERATOR, SYMBOL, 300, "alice", "2030-Q1"))
    assert [posting.credit_account for posting in outcome.record.postings] == ["bob", ISSUER]
    assert market.cash("alice")[0] == before - 200


def test_the_payer_is_charged_the_amount_in_its_own_report_before_the_holders_are_paid(
    market: Market,
) -> None:
    _three_holders(market, 100, 100, 100)
    outcome = market.do(DistributeRoyalty(OPERATOR, SYMBOL, 300, LICENSEE, "2030-Q1"))
    charged = RoyaltyCharged(LICENSEE, SYMBOL, "2030-Q1", 300, 0)
    assert events(outcome, RoyaltyCharged) == [charged]
    assert outcome.events.index(charged) < outcome.events.index(events(outcome, RoyaltyPaid)[0])
    assert market.cash(LICENSEE) == (CASH - 300, 0)


def test_a_payer_that_holds_units_is_charged_the_amount_less_its_own_share(
    market: Market,
) -> None:
    _three_holders(market, 100, 100, 100)
    before = market.cash("alice")[0]
    outcome = market.do(DistributeRoyalty(OPERATOR, SYMBOL, 300, "alice", "2030-Q1"))
    [charged] = events(outcome, RoyaltyCharged)
    assert charged == RoyaltyCharged("alice", SYMBOL, "2030-Q1", 300, 100)
    assert market.cash("alice")[0] == before - (charged.amount_minor - charged.own_share_minor)


def test_a_royalty_needs_the_payers_available_cash(market: Market) -> None:
    _three_holders(market, 100, 100, 100)
    market.rest(LICENSEE, BUY, 100, 1_000)
    available = market.cash(LICENSEE)[0]
    command = DistributeRoyalty(OPERATOR, SYMBOL, available + 1, LICENSEE, "2030-Q1")
    market.refused(command, Reject.INSUFFICIENT_BALANCE)
    assert sum(_pay(market, available).values()) == available


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (DistributeRoyalty(OPERATOR, "RS-NOPE", 300, LICENSEE, "q"), Reject.UNKNOWN_SYMBOL),
        (DistributeRoyalty(OPERATOR, SYMBOL, 300, LICENSEE, ""), Reject.VALIDATION_ERROR),
        (DistributeRoyalty(OPERATOR, SYMBOL, 300, LICENSEE, "a b"), Reject.VALIDATION_ERROR),
        (DistributeRoyalty(OPERATOR, SYMBOL, 300, LICENSEE, "q\n"), Reject.VALIDATION_ERROR),
        (DistributeRoyalty(OPERATOR, SYMBOL, 0, LICENSEE, "q"), Reject.VALIDATION_ERROR),
        (DistributeRoyalty(OPERATOR, SYMBOL, -5, LICENSEE, "q"), Reject.VALIDATION_ERROR),
        (DistributeRoyalty(OPERATOR, SYMBOL, 300, "nobody", "q"), Reject.UNKNOWN_ACCOUNT),
        (DistributeRoyalty("alice", SYMBOL, 300, LICENSEE, "q"), Reject.FORBIDDEN),
    ],
    ids=[
        "symbol",
        "empty period",
        "bad period",
        "period and newline",
        "zero",
        "negative",
        "payer",
        "investor",
    ],
)
def test_a_bad_distribution_is_rejected_and_pays_nothing(
    market: Market, command: DistributeRoyalty, reason: Reject
) -> None:
    _three_holders(market, 100, 100, 100)
    market.refused(command, reason)


def test_a_delisted_instrument_can_still_receive_a_final_distribution(market: Market) -> None:
    market.accounts()
    market.do(listing(expiry_date="2030-01-17"))
    market.do(issuance(total_units=300))
    market.open_trading()
    market.give_units("alice", 100)
    market.rest("alice", SELL, 50, 1_050)
    market.tick_to(parse_date("2030-01-17"))
    assert market.phase() is Phase.DELISTED
    assert market.units("alice") == (100, 0)
    assert _pay(market, 300, "final") == {"alice": 100, ISSUER: 200}
