"""The client's followers against a real server: a followed L2 book and followed executions.

Rules:
- A followed book, once a heartbeat's worth of messages has arrived, equals the server's
  book.snapshot at the same seq, whatever other clients did meanwhile.
- An update lost or damaged inside the client (a test hook on the book's apply) is noticed
  by the next update, the next heartbeat or the checksum; the client resubscribes by itself
  (one resync) and the book is equal to the server's again.
- Followed executions hand over every report of the account in seq order, and each order's
  events add up to what order.status says; a report lost inside the client is flagged.
- Pushes no follower claims still reach `pushes`; unfollowing or closing ends the waits.
- Following a book that another call is still subscribing to returns the same book, and only
  once it has its snapshot.

The random order flow replays with IPX_TEST_SEED=<seed> (printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from typing import Any

import msgspec
import pytest

from gateway.client import ClientError, FollowedBook, IpxClient, RequestFailed
from gateway.market_data import L2, BookL2, Heartbeat
from gateway.server import RunningServer
from tests.gateway.conftest import SYMBOL, Venue

pytestmark = pytest.mark.asyncio

WAIT_S = 5.0  # Covers a heartbeat (one a second) and a resubscription.
COMMANDS = 60


def _seeded() -> random.Random:
    seed = int(os.environ.get("IPX_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (replay with IPX_TEST_SEED={seed})")
    return random.Random(seed)


def _price(rng: random.Random) -> str:
    ticks = rng.randrange(985, 1016)  # 98.50 to 101.50: bids and asks cross now and then.
    return f"{ticks // 10}.{ticks % 10}0"


async def _flow(rng: random.Random, buyer: IpxClient, seller: IpxClient) -> list[int]:
    # Places, cancels and amends from both; return the buyer's order ids.
    resting: list[tuple[IpxClient, int]] = []
    bought: list[int] = []
    for _ in range(COMMANDS):
        roll = rng.random()
        if roll < 0.25 and resting:
            client, order_id = resting.pop(rng.randrange(len(resting)))
            with contextlib.suppress(RequestFailed):  # It may have filled meanwhile.
                if roll < 0.15:
                    await client.cancel(order_id=order_id)
                else:
                    await client.amend(_price(rng), rng.randrange(1, 6), order_id=order_id)
                    resting.append((client, order_id))
            continue
        client, side = (buyer, "buy") if roll < 0.65 else (seller, "sell")
        placed = await client.place(SYMBOL, side, rng.randrange(1, 6), _price(rng))
        if client is buyer:
            bought.append(placed["order_id"])
        if placed["leaves"]:
            resting.append((client, placed["order_id"]))
    return bought


async def _caught_up(book: FollowedBook, server: RunningServer) -> None:
    # Until the book is in sync at the seq the server published last on book.l2.
    async with asyncio.timeout(WAIT_S):
        while not (book.in_sync and book.seq == server.gateway.market_data.seq(L2, SYMBOL)):
            await book.next_change()


async def _assert_equals_server(
    book: FollowedBook, client: IpxClient, server: RunningServer
) -> None:
    snapshot = await client.request("book.snapshot", {"symbol": SYMBOL, "depth": 50})
    # Nothing happened between the two: the snapshot is the book at the followed seq.
    assert snapshot["seq"] == server.gateway.sequencer.exchange.seq
    assert book.seq == server.gateway.market_data.seq(L2, SYMBOL)
    assert book.in_sync, book.problem
    assert [list(level) for level in book.bids()] == snapshot["bids"]
    assert [list(level) for level in book.asks()] == snapshot["asks"]


async def test_a_followed_book_equals_the_servers_after_a_random_session(
    market: Venue, server: RunningServer
) -> None:
    rng = _seeded()
    watcher, alice, issuer = [await market.client(name) for name in ("bob", "alice", "issuer")]
    try:
        book = await watcher.follow_book(SYMBOL)
        assert (book.in_sync, book.bids(), book.asks()) == (True, [], [])
        assert await watcher.follow_book(SYMBOL) is book  # Following again: the same book.
        await watcher.request("md.subscribe", {"symbol": SYMBOL, "channels": ["trades"]})
        await _flow(rng, alice, issuer)
        await _caught_up(book, server)
        await _assert_equals_server(book, watcher, server)
        assert book.resyncs == 0
        assert book.bids() or book.asks()
        # Trades are nobody's to follow: they, and only they, went to `pushes`.
        channels = {watcher.pushes.get_nowait()["channel"] for _ in range(watcher.pushes.qsize())}
        assert channels == {"trades"}
    finally:
        for client in (watcher, alice, issuer):
            await client.close()


@pytest.mark.parametrize(
    ("fault", "orders", "noticed_as"),
    [
        ("drop", 2, "gap: update"),  # The next update's prev_seq shows it.
        ("drop", 1, "gap: heartbeat"),  # The last one lost: only a heartbeat can tell.
        ("damage", 1, "checksum"),  # A quantity changed on the way.
    ],
)
async def test_a_lost_or_damaged_update_is_noticed_and_resynced(
    market: Venue,
    server: RunningServer,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    orders: int,
    noticed_as: str,
) -> None:
    watcher, alice = await market.client("bob"), await market.client("alice")
    problems: list[str] = []

    def listen(book: FollowedBook, _: BookL2 | Heartbeat) -> None:
        if book.resyncs > len(problems):  # A resubscription just asked for: why.
            problems.append(book.problem)

    try:
        await alice.place(SYMBOL, "buy", 3, "97.00")
        book = await watcher.follow_book(SYMBOL, listener=listen)
        apply, hit = book.apply, list[int]()

        def faulty(message: BookL2) -> bool:
            if message.type == "snapshot" or hit:
                return apply(message)
            hit.append(message.seq)
            if fault == "drop":
                return book.in_sync
            bids = [(price, units + 1) for price, units in message.bids]
            return apply(msgspec.structs.replace(message, bids=bids))

        monkeypatch.setattr(book, "apply", faulty)
        for index in range(orders):
            await alice.place(SYMBOL, "buy", 2, f"98.{index}0")
        await _caught_up(book, server)
        await _assert_equals_server(book, watcher, server)
        assert len(hit) == 1
        assert book.resyncs == 1 and len(problems) == 1
        assert problems[0].startswith(noticed_as), problems
    finally:
        await watcher.close()
        await alice.close()


async def test_a_second_follow_returns_once_the_snapshot_is_applied(market: Venue) -> None:
    alice, bob = await market.client("alice"), await market.client("bob")
    try:
        await alice.place(SYMBOL, "buy", 3, "97.00")
        first = asyncio.create_task(bob.follow_book(SYMBOL))
        await asyncio.sleep(0)  # The first call has claimed the book and is subscribing.
        book = await bob.follow_book(SYMBOL)
        assert (book.in_sync, book.seq is not None) == (True, True), book.problem
        assert book.bids() == [("97.00", 3)]
        assert await first is book
    finally:
        await alice.close()
        await bob.close()


async def test_unfollowing_or_closing_ends_the_wait(market: Venue) -> None:
    watcher = await market.client("bob")
    book = await watcher.follow_book(SYMBOL)
    waiting = asyncio.create_task(book.next_change())
    await watcher.unfollow_book(SYMBOL)
    with pytest.raises(ClientError, match="unfollowed"):
        await asyncio.wait_for(waiting, WAIT_S)
    book = await watcher.follow_book(SYMBOL)  # A new book: following again starts afresh.
    executions = await watcher.follow_executions()
    await watcher.close()
    with pytest.raises(ClientError, match="closed"):
        await asyncio.wait_for(book.next_change(), WAIT_S)
    with pytest.raises(ClientError, match="closed"):
        await asyncio.wait_for(executions.get(), WAIT_S)


def _final_state(events: list[dict[str, Any]]) -> tuple[int, int]:
    # Walk one order's events in order; return (filled, leaves) after the last one.
    assert events[0]["type"] == "order_accepted", events
    filled, leaves = 0, events[0]["quantity_units"]
    for event in events[1:]:
        if event["type"] == "order_filled":
            assert event["cum_units"] == filled + event["quantity_units"], events
        assert event["type"] in ("order_filled", "order_amended", "order_canceled"), events
        filled, leaves = event["cum_units"], event["leaves_units"]
    return filled, leaves


async def test_followed_executions_report_every_event_in_order(market: Venue) -> None:
    rng = _seeded()
    alice, issuer = await market.client("alice"), await market.client("issuer")
    try:
        executions = await alice.follow_executions()
        first_prev_seq = executions.seq
        order_ids = await _flow(rng, alice, issuer)
        marker = await alice.place(SYMBOL, "buy", 1, "90.00")  # Its cancel is the last report.
        await alice.cancel(order_id=marker["order_id"])
        reports = []
        async with asyncio.timeout(WAIT_S):
            async for report in executions:
                reports.append(report)
                event = report.event
                if event["type"] == "order_canceled" and event["order_id"] == marker["order_id"]:
                    break
        assert executions.gaps == 0 and not any(report.gap for report in reports)
        assert [report.prev_seq for report in reports] == [
            first_prev_seq,
            *(report.seq for report in reports[:-1]),
        ]
        by_order: dict[int, list[dict[str, Any]]] = {}
        for report in reports:
            by_order.setdefault(report.event["order_id"], []).append(report.event)
        assert set(by_order) == {*order_ids, marker["order_id"]}
        for order_id in order_ids:
            status = await alice.status(order_id=order_id)
            assert _final_state(by_order[order_id]) == (status["filled"], status["leaves"])
        assert alice.pushes.empty()  # Every report went to the follower.
    finally:
        await alice.close()
        await issuer.close()


async def test_a_report_lost_in_the_client_is_flagged_not_hidden(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        executions = await alice.follow_executions()
        assert await alice.follow_executions() is executions
        for price in ("97.00", "97.10", "97.20"):
            await alice.place(SYMBOL, "buy", 1, price)
        async with asyncio.timeout(WAIT_S):
            while executions._queue.qsize() < 3:  # The three acceptances are in.
                await asyncio.sleep(0.01)
        first = await executions.get()
        executions._queue.get_nowait()  # The test hook: the second is lost on the way.
        third = await executions.get()
        assert (first.gap, third.gap, executions.gaps) == (False, True, 1)
        assert third.prev_seq != first.seq
        await alice.unfollow_executions()
        assert [report async for report in executions] == []  # Ended: nothing held back.
        await alice.place(SYMBOL, "buy", 1, "97.30")
        await asyncio.sleep(0.2)
        assert alice.pushes.empty()  # Unsubscribed: no report comes at all.
    finally:
        await alice.close()
