"""The rulebook of operator controls: accounts and cash, cancel-all, the kill switch, closing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exchange.admin import AMOUNT_MINOR_MAX
from exchange.commands import (
    CancelAll,
    CloseMarket,
    Deposit,
    KillSwitch,
    OpenAccount,
    Resume,
    Role,
    Withdraw,
)
from exchange.core import ADMIN_ACTOR, Exchange, Outcome
from exchange.currencies import cash_text
from exchange.events import (
    AccountOpened,
    AllOrdersCanceled,
    CashDeposited,
    CashWithdrawn,
    KillSwitchChanged,
    OrderCanceled,
    Phase,
    PhaseChanged,
)
from exchange.reasons import Reject
from ledger.records import BALANCE_MAX
from matching.orders import CancelReason
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    CASH,
    DAY,
    ISSUER,
    OPENING_AUCTION_NS,
    OPERATOR,
    SELL,
    SYMBOL,
    USD,
    Market,
    accepted,
    accepted_reply,
    buy_need,
    events,
    issuance,
)

OTHER = "RS-US10123456B2.B"


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


def _two_instruments(market: Market) -> None:
    market.trading()
    market.do(issuance(symbol=OTHER))
    market.open_trading(OTHER)


def _canceled(outcome: Outcome) -> dict[int, CancelReason]:
    return {event.order_id: event.reason for event in events(outcome, OrderCanceled)}


# Accounts and cash.


def test_the_administrator_opens_the_first_operator(market: Market) -> None:
    outcome = market.do(OpenAccount(ADMIN_ACTOR, OPERATOR, Role.OPERATOR))
    assert outcome.reply == AccountOpened(OPERATOR, Role.OPERATOR)
    market.refused(OpenAccount("nobody", "sybil", Role.OPERATOR), Reject.FORBIDDEN)


@pytest.mark.parametrize(
    ("account", "reason"),
    [
        ("alice", Reject.ALREADY_EXISTS),
        ("exchange:fees", Reject.ALREADY_EXISTS),
        ("exchange:anything", Reject.ALREADY_EXISTS),
        ("@bank", Reject.VALIDATION_ERROR),
        ("", Reject.VALIDATION_ERROR),
        ("x" * 65, Reject.VALIDATION_ERROR),
        ("alice\n", Reject.VALIDATION_ERROR),  # Not a second alice.
    ],
)
def test_an_account_id_is_new_well_formed_and_not_reserved(
    market: Market, account: str, reason: Reject
) -> None:
    market.accounts()
    market.refused(OpenAccount(OPERATOR, account, Role.INVESTOR), reason)


def test_a_deposit_credits_available_cash(market: Market) -> None:
    market.accounts()
    outcome = market.do(Deposit(OPERATOR, "alice", USD, 1_234))
    assert outcome.reply == CashDeposited("alice", USD, 1_234)
    assert market.cash("alice") == (CASH + 1_234, 0)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (Deposit(OPERATOR, "nobody", USD, 1), Reject.UNKNOWN_ACCOUNT),
        (Deposit(OPERATOR, "alice", USD, 0), Reject.VALIDATION_ERROR),
        (Deposit(OPERATOR, "alice", "usd", 1), Reject.VALIDATION_ERROR),
        (Deposit(OPERATOR, "alice", "USD\n", 1), Reject.VALIDATION_ERROR),
        (Deposit(OPERATOR, "alice", USD, 10**15 + 1), Reject.VALIDATION_ERROR),
        (Withdraw(OPERATOR, "alice", USD, CASH + 1), Reject.INSUFFICIENT_BALANCE),
        (Withdraw(OPERATOR, "alice", USD, -1), Reject.VALIDATION_ERROR),
        (Withdraw(OPERATOR, "nobody", USD, 1), Reject.UNKNOWN_ACCOUNT),
    ],
    ids=[
        "unknown",
        "zero",
        "currency",
        "currency and newline",
        "too much",
        "overdraw",
        "negative",
        "unknown out",
    ],
)
def test_bad_cash_movements_are_rejected_and_change_nothing(
    market: Market, command: Deposit | Withdraw, reason: Reject
) -> None:
    market.accounts()
    market.refused(command, reason)


def test_units_are_never_withdrawn_or_deposited_as_cash(market: Market) -> None:
    # Only cash crosses the bank; units enter only by issuance and never leave.
    market.pre_open()
    market.refused(Withdraw(OPERATOR, ISSUER, SYMBOL, 10), Reject.VALIDATION_ERROR, "ISO 4217")
    market.refused(Deposit(OPERATOR, "alice", SYMBOL, 10), Reject.VALIDATION_ERROR, "ISO 4217")


def test_a_withdrawal_of_everything_available_empties_the_account(market: Market) -> None:
    market.accounts()
    outcome = market.do(Withdraw(OPERATOR, "alice", USD, CASH))
    assert outcome.reply == CashWithdrawn("alice", USD, CASH)
    assert market.cash("alice") == (0, 0)


def test_cash_outstanding_in_a_currency_never_exceeds_balance_max(market: Market) -> None:
    # Each deposit is bounded, but deposits add up: the bank's balance is minus their sum, and
    # past -2**63 neither the state hash, a snapshot nor `ipx ledger verify` could encode it.
    # The deposit that would go past BALANCE_MAX is refused and changes nothing (N and N+1).
    market.accounts()
    market.fund_to_the_limit("alice")
    balances_hash = market.exchange.balances.state_hash()
    market.refused(
        Deposit(OPERATOR, "bob", USD, 1), Reject.LIMIT_EXCEEDED, cash_text(BALANCE_MAX, USD)
    )
    assert market.exchange.balances.state_hash() == balances_hash
    assert Exchange.from_snapshot(market.exchange.snapshot()).state_hash() == (
        market.exchange.state_hash()
    )
    # Each currency has its own bound, and a withdrawal makes room again.
    accepted_reply(market.do(Deposit(OPERATOR, "bob", "EUR", AMOUNT_MINOR_MAX)))
    accepted_reply(market.do(Withdraw(OPERATOR, "alice", USD, 1)))
    accepted_reply(market.do(Deposit(OPERATOR, "bob", USD, 1)))


# Cancel-all.


def test_an_operator_cancels_every_open_order_of_an_account_and_frees_its_reservations(
    market: Market,
) -> None:
    _two_instruments(market)
    market.give_units("alice", 10)
    ids = [
        market.rest("alice", BUY, 10, 990),
        market.rest("alice", SELL, 10, 1_050),
        market.rest("alice", BUY, 5, 980, symbol=OTHER),
    ]
    bobs = market.rest("bob", BUY, 10, 990)
    outcome = market.do(CancelAll(OPERATOR, "alice"))
    assert outcome.reply == AllOrdersCanceled("alice", "", 3)
    assert _canceled(outcome) == dict.fromkeys(ids, CancelReason.OPERATOR)
    assert market.cash("alice")[1] == 0 and market.units("alice")[1] == 0
    assert market.open_orders("bob") == [bobs]


def test_an_account_may_cancel_all_of_its_own_orders_in_one_instrument(market: Market) -> None:
    _two_instruments(market)
    here = market.rest("alice", BUY, 10, 990)
    there = market.rest("alice", BUY, 5, 980, symbol=OTHER)
    outcome = market.do(CancelAll("alice", "alice", SYMBOL))
    assert outcome.reply == AllOrdersCanceled("alice", SYMBOL, 1)
    assert _canceled(outcome) == {here: CancelReason.USER}
    assert market.open_orders("alice") == [there]
    assert market.cash("alice")[1] == buy_need(980, 5)


def test_cancel_all_of_an_unknown_account_is_rejected(market: Market) -> None:
    market.trading()
    market.refused(CancelAll(OPERATOR, "nobody"), Reject.UNKNOWN_ACCOUNT)


@pytest.mark.parametrize("actor", [OPERATOR, "alice"])
def test_cancel_all_in_an_unknown_symbol_is_rejected_and_cancels_nothing(
    market: Market, actor: str
) -> None:
    market.trading()
    market.rest("alice", BUY, 10, 990)
    market.refused(CancelAll(actor, "alice", "RS-US1012345B2"), Reject.UNKNOWN_SYMBOL)
    # The symbol is checked before the account, as the gateway checks it before sequencing.
    market.refused(CancelAll(OPERATOR, "nobody", "RS-US1012345B2"), Reject.UNKNOWN_SYMBOL)


# The kill switch.


def test_the_kill_switch_cancels_an_accounts_orders_and_blocks_its_entry(market: Market) -> None:
    _two_instruments(market)
    ids = [market.rest("alice", BUY, 10, 990), market.rest("alice", BUY, 3, 995, symbol=OTHER)]
    bobs = market.rest("bob", BUY, 10, 990)
    outcome = market.do(KillSwitch(OPERATOR, "alice", True))
    assert outcome.reply == KillSwitchChanged("alice", True)
    assert _canceled(outcome) == dict.fromkeys(ids, CancelReason.KILL_SWITCH)
    assert market.cash("alice") == (CASH, 0)
    market.refused(market.order("alice", BUY, 1, 990), Reject.ACCOUNT_SUSPENDED)
    market.refused(market.order("alice", BUY, 1, 990, symbol=OTHER), Reject.ACCOUNT_SUSPENDED)
    assert market.open_orders("bob") == [bobs]


def test_releasing_the_kill_switch_lets_the_account_trade_again(market: Market) -> None:
    market.trading()
    market.do(KillSwitch(OPERATOR, "alice", True))
    outcome = market.do(KillSwitch(OPERATOR, "alice", False))
    assert outcome.reply == KillSwitchChanged("alice", False)
    accepted(market.buy("alice", 1, 990))


def test_the_kill_switch_leaves_a_running_offering_to_finish(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900)
    market.buy("alice", 100, 900)
    market.do(KillSwitch(OPERATOR, ISSUER, True))
    assert market.units(ISSUER)[1] == 100
    market.tick(rulebook.HOUR)
    assert market.units("alice") == (100, 0)


def test_the_kill_switch_needs_a_known_account(market: Market) -> None:
    market.trading()
    market.refused(KillSwitch(OPERATOR, "nobody", True), Reject.UNKNOWN_ACCOUNT)


# Closing the market.


def test_closing_the_market_stops_entry_expires_day_orders_and_keeps_gtc_orders(
    market: Market,
) -> None:
    market.trading()
    day_id = market.rest("alice", BUY, 10, 990, tif=DAY)
    gtc_id = market.rest("alice", BUY, 10, 980)
    outcome = market.do(CloseMarket(OPERATOR, SYMBOL))
    assert _canceled(outcome) == {day_id: CancelReason.DAY_EXPIRED}
    assert [event.phase for event in events(outcome, PhaseChanged)] == [Phase.CLOSED]
    market.refused(market.order("bob", BUY, 1, 990), Reject.MARKET_CLOSED, "closed")
    market.refused(CloseMarket(OPERATOR, SYMBOL), Reject.MARKET_CLOSED)
    assert market.book_order(gtc_id) is not None
    assert market.cash("alice")[1] == buy_need(980, 10)
    assert isinstance(market.cancel("alice", gtc_id).reply, OrderCanceled)


def test_a_closed_market_reopens_through_an_opening_auction(market: Market) -> None:
    market.trading()
    market.rest(ISSUER, SELL, 10, 1_000)
    market.rest("alice", BUY, 10, 990)
    market.do(CloseMarket(OPERATOR, SYMBOL))
    outcome = market.do(Resume(OPERATOR, SYMBOL))
    assert [event.phase for event in events(outcome, PhaseChanged)] == [Phase.AUCTION]
    market.tick(OPENING_AUCTION_NS)
    assert market.phase() is Phase.CONTINUOUS
    assert len(market.open_orders("alice")) == 1


def test_closing_one_instrument_leaves_the_others_trading(market: Market) -> None:
    _two_instruments(market)
    market.do(CloseMarket(OPERATOR, SYMBOL))
    assert market.phase(OTHER) is Phase.CONTINUOUS
    accepted(market.buy("alice", 1, 990, symbol=OTHER))
