"""The rulebook of cancel-on-disconnect: what the end of a gateway session cancels."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exchange import trading
from exchange.commands import Deposit, EndSession, SetCancelOnDisconnect
from exchange.core import Exchange, Outcome
from exchange.events import (
    CancelOnDisconnectSet,
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    SessionEnded,
)
from exchange.reasons import Reject
from ledger.frames import FRAME_PAYLOAD_BYTES_MAX, seal_batch
from ledger.records import GENESIS_HASH, encode_record
from matching.orders import CancelReason
from tests.exchange import rulebook
from tests.exchange.rulebook import (
    BUY,
    CASH,
    ISSUER,
    OPERATOR,
    SELL,
    USD,
    Market,
    accepted,
    buy_need,
    events,
)


@pytest.fixture
def market() -> Iterator[Market]:
    yield from rulebook.checked_market()


def _canceled(outcome: Outcome) -> dict[int, CancelReason]:
    return {event.order_id: event.reason for event in events(outcome, OrderCanceled)}


def _set(market: Market, account: str, session: str, scope: str) -> None:
    outcome = market.do(SetCancelOnDisconnect(account, session, scope))
    assert outcome.reply == CancelOnDisconnectSet(account, session, scope)


def test_the_end_of_a_session_cancels_the_orders_it_placed_and_only_those(market: Market) -> None:
    market.trading()
    mine = [market.rest("alice", BUY, 10, 990, session="s1")]  # Before it asked: covered too.
    _set(market, "alice", "s1", "session")
    mine.append(market.rest("alice", BUY, 5, 980, session="s1"))
    elsewhere = market.rest("alice", BUY, 3, 970, session="s2")
    unnamed = market.rest("alice", BUY, 2, 960)
    outcome = market.do(EndSession("alice", "s1"))
    assert outcome.reply == SessionEnded("alice", "s1", 2)
    assert _canceled(outcome) == dict.fromkeys(mine, CancelReason.DISCONNECT)
    assert market.open_orders("alice") == [elsewhere, unnamed]
    assert market.cash("alice") == (CASH - buy_need(970, 3) - buy_need(960, 2),
                                    buy_need(970, 3) + buy_need(960, 2))  # fmt: skip


def test_scope_account_cancels_every_open_order_of_the_account(market: Market) -> None:
    market.trading()
    alices = [
        market.rest("alice", BUY, 10, 990, session="s1"),
        market.rest("alice", BUY, 5, 980, session="s2"),
        market.rest("alice", BUY, 2, 960),
    ]
    bobs = market.rest("bob", BUY, 1, 990, session="s3")
    _set(market, "alice", "s1", "account")
    outcome = market.do(EndSession("alice", "s1"))
    assert outcome.reply == SessionEnded("alice", "s1", 3)
    assert _canceled(outcome) == dict.fromkeys(alices, CancelReason.DISCONNECT)
    assert market.open_orders("alice") == []
    assert market.open_orders("bob") == [bobs]
    assert list(market.exchange.state.sessions) == ["s3"]


def test_a_session_that_asked_for_nothing_ends_and_its_orders_stay(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990, session="s1")
    outcome = market.do(EndSession("alice", "s1"))
    assert outcome.reply == SessionEnded("alice", "s1", 0)
    assert market.open_orders("alice") == [order_id]
    assert market.exchange.state.sessions == {}
    assert market.exchange.state.order_sessions == {}


def test_switched_off_again_it_cancels_nothing(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990, session="s1")
    _set(market, "alice", "s1", "session")
    _set(market, "alice", "s1", "")
    assert market.do(EndSession("alice", "s1")).reply == SessionEnded("alice", "s1", 0)
    assert market.open_orders("alice") == [order_id]


def test_ending_a_session_twice_cancels_nothing_the_second_time(market: Market) -> None:
    market.trading()
    market.rest("alice", BUY, 10, 990, session="s1")
    _set(market, "alice", "s1", "session")
    assert market.do(EndSession("alice", "s1")).reply == SessionEnded("alice", "s1", 1)
    again = market.do(EndSession("alice", "s1"))
    assert again.reply == SessionEnded("alice", "s1", 0)
    assert again.record.postings == ()


def test_another_account_can_neither_end_nor_set_my_session(market: Market) -> None:
    market.trading()
    order_id = market.rest("alice", BUY, 10, 990, session="s1")
    _set(market, "alice", "s1", "session")
    outcome = market.do(EndSession("bob", "s1"))
    assert outcome.reply == SessionEnded("bob", "s1", 0)  # As for a session that is not there.
    assert market.open_orders("alice") == [order_id]
    market.refused(SetCancelOnDisconnect("bob", "s1", ""), Reject.VALIDATION_ERROR, "s1")
    assert market.exchange.state.sessions["s1"].cancel_scope == "session"
    # An order bob places under alice's session id stays out of her session.
    bobs = market.rest("bob", BUY, 1, 980, session="s1")
    assert market.do(EndSession("alice", "s1")).reply == SessionEnded("alice", "s1", 1)
    assert market.open_orders("bob") == [bobs]


def test_a_resend_through_another_session_is_the_same_order_and_stays_with_the_first(
    market: Market,
) -> None:
    market.trading()
    _set(market, "alice", "s1", "session")
    first = market.do(market.order("alice", BUY, 10, 990, cl="x", session="s1"))
    again = market.do(market.order("alice", BUY, 10, 990, cl="x", session="s2"))
    assert again.reply == first.reply and again.events == [] and again.record.postings == ()
    assert market.do(EndSession("alice", "s2")).reply == SessionEnded("alice", "s2", 0)
    outcome = market.do(EndSession("alice", "s1"))
    assert _canceled(outcome) == {accepted(first): CancelReason.DISCONNECT}


def test_an_order_that_finishes_leaves_its_session(market: Market) -> None:
    market.trading()
    market.give_units("bob", 10)
    market.rest("alice", BUY, 10, 990, session="s1")
    assert list(market.exchange.state.sessions) == ["s1"]
    market.sell("bob", 10, 990)  # Fills alice's order whole.
    assert market.exchange.state.sessions == {}
    _set(market, "alice", "s1", "session")
    assert market.do(EndSession("alice", "s1")).reply == SessionEnded("alice", "s1", 0)


def test_bad_scopes_and_session_ids_are_refused(market: Market) -> None:
    market.trading()
    market.refused(SetCancelOnDisconnect("alice", "s1", "everything"), Reject.VALIDATION_ERROR)
    market.refused(SetCancelOnDisconnect("alice", "", "session"), Reject.VALIDATION_ERROR)
    market.refused(SetCancelOnDisconnect("alice", "s" * 65, "session"), Reject.VALIDATION_ERROR)
    market.refused(EndSession("alice", ""), Reject.VALIDATION_ERROR)
    market.refused(EndSession("nobody", "s1"), Reject.FORBIDDEN)


def test_an_offering_keeps_its_own_order_when_the_issuers_session_ends(market: Market) -> None:
    market.pre_open()
    market.offering(100, 900)
    _set(market, ISSUER, "si", "account")
    assert market.do(EndSession(ISSUER, "si")).reply == SessionEnded(ISSUER, "si", 0)
    market.buy("alice", 100, 900)
    market.tick(rulebook.HOUR)
    assert market.units("alice") == (100, 0)


def test_sessions_survive_a_snapshot_and_end_the_same_after_it(market: Market) -> None:
    market.trading()
    market.give_units("bob", 10)
    market.rest("alice", BUY, 10, 990, session="s1")
    market.rest("bob", SELL, 4, 1_010, session="s2")
    _set(market, "alice", "s1", "session")
    _set(market, "bob", "s2", "account")
    restored = Exchange.from_snapshot(market.exchange.snapshot())
    assert restored.state_hash() == market.exchange.state_hash()
    ts_ns = market.ts_ns + 1
    for account, session in (("alice", "s1"), ("bob", "s2")):
        expected = market.do(EndSession(account, session))
        assert restored.handle(EndSession(account, session), ts_ns).events == expected.events
        ts_ns += 1
    assert restored.state_hash() == market.exchange.state_hash()


def test_a_session_id_no_end_could_name_is_refused(market: Market) -> None:
    market.trading()
    market.refused(
        market.order("alice", BUY, 1, 990, session="s" * 65), Reject.VALIDATION_ERROR, "session_id"
    )
    assert market.exchange.state.sessions == {}


def test_an_account_has_at_most_so_many_open_orders(
    monkeypatch: pytest.MonkeyPatch,
    market: Market,  # Unpatched after the market's replay.
) -> None:
    monkeypatch.setattr(trading, "OPEN_ORDERS_PER_ACCOUNT_MAX", 3)
    market.trading()
    first = [market.rest("alice", BUY, 1, 990 - index, session="s1") for index in range(3)]
    market.refused(market.order("alice", BUY, 1, 980), Reject.LIMIT_EXCEEDED, "3 open orders")
    market.rest("bob", BUY, 1, 980)  # Per account.
    market.cancel("alice", first[0])
    market.rest("alice", BUY, 1, 980)


def test_the_largest_cancel_one_command_can_make_fits_in_one_journal_frame() -> None:
    # An account at the cap, every order placed through one session with scope "account":
    # its end cancels them all in one record, which must be journaled (else a restart, which
    # ends the session first, could never complete).
    market = Market()
    market.trading()
    market.do(Deposit(OPERATOR, "carol", USD, 10**12))
    _set(market, "carol", "big", "account")
    exchange, cap = market.exchange, trading.OPEN_ORDERS_PER_ACCOUNT_MAX
    ts_ns = market.ts_ns
    for index in range(cap):  # Straight to the core: the rulebook's checks walk every book.
        ts_ns += 1
        order = market.order("carol", BUY, 1, 900 + index % 100, cl=f"o{index}", session="big")
        assert isinstance(exchange.handle(order, ts_ns).reply, OrderAccepted)
    refused = exchange.handle(market.order("carol", BUY, 1, 950, session="big"), ts_ns + 1)
    assert isinstance(refused.reply, OrderRejected)
    assert refused.reply.reason is Reject.LIMIT_EXCEEDED
    ended = exchange.handle(EndSession("carol", "big"), ts_ns + 2)
    assert ended.reply == SessionEnded("carol", "big", cap)
    (frame,) = seal_batch(GENESIS_HASH, [ended.record]).records
    assert len(encode_record(frame)) < FRAME_PAYLOAD_BYTES_MAX // 2
