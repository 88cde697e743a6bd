"""Execution reports: each account's private events, numbered, and what they say of the order.

The rulebook's market checks after every command of every scenario that each account's
execution_seq equals the number of private events it has had; these tests add the rules that
a count alone does not show.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator

import msgspec
import pytest

from exchange.events import (
    PRIVATE_EVENTS,
    Event,
    OrderAmended,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
)
from exchange.reasons import Reject
from tests.exchange import rulebook
from tests.exchange.rulebook import BUY, FOK, HOUR, ISSUER, SELL, Market, events


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


def test_the_private_events_are_exactly_the_events_that_name_an_account() -> None:
    naming = {
        kind
        for kind in typing.get_args(Event)
        if "account" in {field.name for field in msgspec.structs.fields(kind)}
    }
    assert naming == PRIVATE_EVENTS


def test_an_accounts_reports_are_numbered_in_order_and_no_one_elses_count(
    market: Market,
) -> None:
    market.trading()
    alice = market.exchange.state.accounts["alice"]
    before = alice.execution_seq
    bid = market.rest("alice", BUY, 10, 990)  # accepted: +1
    assert alice.execution_seq == before + 1
    market.rest("bob", BUY, 10, 980)  # bob's: alice's count does not move
    assert alice.execution_seq == before + 1
    market.sell(ISSUER, 4, 990)  # a fill of alice's bid: +1
    assert alice.execution_seq == before + 2
    market.cancel("alice", bid)  # the rest canceled: +1
    assert alice.execution_seq == before + 3


def test_an_order_from_no_account_is_refused_and_numbered_for_nobody(market: Market) -> None:
    market.trading()
    market.refused(market.order("ghost", BUY, 1, 1_000), Reject.FORBIDDEN)
    assert "ghost" not in market.exchange.state.accounts


def test_cancels_and_amends_say_how_much_of_the_order_has_filled(market: Market) -> None:
    # With leaves_units, cum_units gives the order's status after the event.
    market.trading()
    bid = market.rest("alice", BUY, 10, 990)
    market.sell(ISSUER, 4, 990)
    amended = events(market.amend("alice", bid, 8, 990), OrderAmended)
    assert [(event.cum_units, event.leaves_units) for event in amended] == [(4, 4)]
    canceled = events(market.cancel("alice", bid), OrderCanceled)
    assert [(event.cum_units, event.leaves_units) for event in canceled] == [(4, 0)]


def test_an_order_the_book_refused_keeps_its_id_for_the_day(market: Market) -> None:
    # A fill-or-kill the book cannot fill got an order id: it is found by that id until the
    # day rolls, as its cl_ord_id is.
    market.trading()
    market.give_units("bob", 5)
    market.rest("bob", SELL, 5, 1_000)
    refused = market.do(market.order("alice", BUY, 50, 1_000, tif=FOK, cl="all-or-nothing"))
    rejection = refused.reply
    assert isinstance(rejection, OrderRejected)
    assert rejection.reason is Reject.FOK_NOT_FILLABLE
    assert rejection.order_id > 0
    state = market.exchange.state
    assert state.rejected_orders[rejection.order_id] == ("alice", "all-or-nothing")
    assert not events(refused, OrderFilled)
    market.tick(24 * HOUR)
    assert rejection.order_id not in state.rejected_orders
