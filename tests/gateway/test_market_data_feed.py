"""Public market data through a real server: a snapshot, then durable updates in seq order.

A subscriber that does not read is dropped (1008 SLOW_CONSUMER), never waited for; one that
reads is never dropped for the size of one batch: a cancel_all of more orders than its outbox
holds reaches every session of the account whole (gateway/outbox.py).

The seeded order flow replays with IPX_TEST_SEED=<seed> (printed).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from gateway import market_data
from gateway.client import IpxClient, RequestFailed
from gateway.local_book import LocalBook
from gateway.outbox import Outbox
from gateway.server import HEARTBEAT_INTERVAL_S, RunningServer, run_server
from tests.gateway.conftest import SYMBOL, Venue, list_the_market

pytestmark = pytest.mark.asyncio

PUSH_WAIT_S = 5.0
COMMANDS = 60


async def _push(client: IpxClient) -> Any:
    return await asyncio.wait_for(client.pushes.get(), PUSH_WAIT_S)


def _typed(message: dict[str, Any]) -> Any:
    return market_data.decode(json.dumps(message))


async def _flow(rng: random.Random, alice: IpxClient, issuer: IpxClient) -> int:
    # Resting bids and asks, some crossing, some canceled; return how many units traded.
    traded = 0
    resting: list[tuple[IpxClient, int]] = []
    for _ in range(COMMANDS):
        roll = rng.random()
        if roll < 0.2 and resting:
            client, order_id = resting.pop(rng.randrange(len(resting)))
            with contextlib.suppress(RequestFailed):  # It may have filled meanwhile.
                await client.cancel(order_id=order_id)
            continue
        client, side = (alice, "buy") if roll < 0.6 else (issuer, "sell")
        ticks = rng.randrange(985, 1016)  # 98.50 to 101.50: they cross now and then.
        placed = await client.place(
            SYMBOL, side, rng.randrange(1, 6), f"{ticks // 10}.{ticks % 10}0"
        )
        traded += placed["filled"]
        if placed["leaves"]:
            resting.append((client, placed["order_id"]))
    return traded


async def test_a_subscriber_keeps_an_exact_book_from_snapshot_and_updates(
    market: Venue, server: RunningServer
) -> None:
    seed = int(os.environ.get("IPX_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (replay with IPX_TEST_SEED={seed})")
    watcher = await market.client("bob")
    alice = await market.client("alice")
    issuer = await market.client("issuer")
    try:
        subscribed = await watcher.request(
            "md.subscribe", {"symbol": SYMBOL, "channels": ["book.l2", "trades"]}
        )
        base = server.gateway.market_data.seq("trades", SYMBOL)  # This run's: nothing yet.
        assert subscribed == {"symbol": SYMBOL, "channels": {"book.l2": base, "trades": base}}
        book = LocalBook(SYMBOL)
        snapshots = [await _push(watcher), await _push(watcher)]
        assert [(m["channel"], m["type"]) for m in snapshots] == [
            ("book.l2", "snapshot"),
            ("trades", "snapshot"),
        ]
        book.apply(_typed(snapshots[0]))
        traded = await _flow(random.Random(seed), alice, issuer)
        server_book = await watcher.request("book.snapshot", {"symbol": SYMBOL, "depth": 50})
        printed = 0
        trades_seq = base
        while True:  # Until a heartbeat vouches that nothing is missing.
            message = await _push(watcher)
            if message["channel"] == "heartbeat":
                if message["channels"]["book.l2"] == book.seq:
                    assert message["channels"]["trades"] == trades_seq
                    break
                continue
            if message["channel"] == "trades":
                assert (message["seq"], message["prev_seq"]) == (trades_seq + 1, trades_seq)
                trades_seq = message["seq"]
                printed += sum(trade["quantity_units"] for trade in message["trades"])
                continue
            assert book.apply(_typed(message)), book.problem
        assert book.in_sync
        assert [list(level) for level in book.bids()] == server_book["bids"]
        assert [list(level) for level in book.asks()] == server_book["asks"]
        assert traded > 0, "the flow should have crossed at least once"
        assert printed == traded
    finally:
        for client in (watcher, alice, issuer):
            await client.close()


async def test_market_data_requests_are_checked(market: Venue) -> None:
    watcher = await market.client("bob")
    try:
        for params, code in [
            ({"symbol": "RS-NOPE", "channels": ["book.l2"]}, "UNKNOWN_SYMBOL"),
            ({"symbol": SYMBOL, "channels": ["heartbeat"]}, "VALIDATION_ERROR"),
            ({"symbol": SYMBOL, "channels": []}, "VALIDATION_ERROR"),
        ]:
            with pytest.raises(RequestFailed) as refused:
                await watcher.request("md.subscribe", params)
            assert refused.value.code == code
        await watcher.request("md.subscribe", {"symbol": SYMBOL, "channels": ["ticker"]})
        assert (await _push(watcher))["channel"] == "ticker"
        await watcher.request("md.unsubscribe", {"symbol": SYMBOL, "channels": ["ticker"]})
        alice = await market.client("alice")
        await alice.place(SYMBOL, "buy", 1, "99.00")  # Would change the ticker's best bid.
        await alice.close()
        await asyncio.sleep(1.5)  # A heartbeat would have come by now, had anything remained.
        assert watcher.pushes.empty()
    finally:
        await watcher.close()


async def test_a_subscriber_that_does_not_read_is_disconnected_not_waited_for(
    venue: Venue,
) -> None:
    async with run_server(venue.data_dir, outbox_max=20) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        await asyncio.gather(
            *(alice.place(SYMBOL, "buy", 1, f"{90 + index % 10}.{index // 10 % 10}0")
              for index in range(300))
        )  # fmt: skip
        # A reader with a tiny receive buffer that stops reading: the server's socket fills.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((running.host, running.port))
        sock.setblocking(False)
        headers = {"Authorization": f"Bearer {venue.tokens['bob']}"}
        slow = await connect(venue.url, sock=sock, additional_headers=headers, max_queue=1)
        subscribe = json.dumps(
            {"id": "s", "method": "md.subscribe", "params": {"symbol": SYMBOL,
                                                              "channels": ["book.l3"]}}
        )  # fmt: skip
        for _ in range(400):  # ~20 KB of book.l3 snapshot each.
            await slow.send(subscribe)
        # The exchange is not slowed: another account trades on at once.
        placed = await asyncio.wait_for(alice.place(SYMBOL, "buy", 1, "95.00"), 2.0)
        assert placed["status"] == "open"
        with pytest.raises(ConnectionClosed):
            while True:  # Read the backlog out; the close frame comes behind it.
                await asyncio.wait_for(slow.recv(), 20.0)
        assert slow.close_code == 1008
        assert slow.close_reason == "SLOW_CONSUMER: more than 20 pushes unread"
        await alice.close()


async def test_a_batch_of_more_reports_than_an_outbox_holds_reaches_every_prompt_reader(
    venue: Venue,
) -> None:
    # One cancel_all of more open orders than outbox_max makes that many reports in one
    # batch, queued before any can be written: they are accepted whole, and every session
    # that reads promptly gets them all and stays. Slowness is judged on what it could read.
    outbox_max = 20
    orders = 3 * outbox_max
    async with run_server(venue.data_dir, outbox_max=outbox_max) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        readers = [await venue.client("alice") for _ in range(2)]
        try:
            await asyncio.gather(*(alice.place(SYMBOL, "buy", 1, "95.00") for _ in range(orders)))
            followers = [await reader.follow_executions() for reader in readers]
            canceled = await alice.request("order.cancel_all")
            assert canceled["orders_canceled"] == orders
            for follower in followers:
                reports = [
                    await asyncio.wait_for(follower.get(), PUSH_WAIT_S) for _ in range(orders)
                ]
                assert {report.event["type"] for report in reports} == {"order_canceled"}
                assert not any(report.gap for report in reports)
            for reader in readers:
                assert (await reader.request("account.balances"))["account"] == "alice"
            slow = running.gateway.metrics.registry.get_sample_value
            assert not slow("ipx_slow_consumer_disconnects_total")
        finally:
            for client in (alice, *readers):
                await client.close()


async def test_a_slow_consumer_dropped_in_the_middle_of_a_batch_costs_no_one_else_a_push(
    venue: Venue,
) -> None:
    # Alice's slow session is dropped at her first report of a batch; her later reports of
    # the same batch, and everyone else's pushes, still go out.
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        await list_the_market(venue)
        issuer, alice, alice_slow = [
            await venue.client(name) for name in ("issuer", "alice", "alice")
        ]
        await issuer.place(SYMBOL, "sell", 5, "100.00")
        await issuer.subscribe_executions()
        await issuer.request("md.subscribe", {"symbol": SYMBOL, "channels": ["book.l2"]})
        await alice_slow.subscribe_executions()
        gateway = running.gateway
        [slow] = gateway._subscribed["alice"]
        # The state of a session that stopped reading: its writer stuck, its outbox full (two
        # earlier passes past its limit of 1: the second counts the first).
        assert slow.writer is not None
        slow.writer.cancel()
        slow.writer = stuck = asyncio.create_task(asyncio.sleep(3600))
        slow.outbox = Outbox(1, gateway.passes)
        for _ in range(2):
            gateway.passes.start()
            assert slow.push_text(b"unread") and slow.push_text(b"unread")
        try:
            while not issuer.pushes.empty():  # The book's snapshot.
                issuer.pushes.get_nowait()
            await alice.place(SYMBOL, "buy", 5, "100.00")  # Alice: accepted, filled.
            seen: set[tuple[str, str]] = set()
            async with asyncio.timeout(PUSH_WAIT_S):  # Heartbeats come meanwhile: a deadline.
                while {("executions", "order_filled"), ("book.l2", "update")} - seen:
                    message = await _push(issuer)
                    seen.add((message["channel"], message.get("event", message)["type"]))
            assert "alice" not in gateway._subscribed
        finally:
            stuck.cancel()
            for client in (issuer, alice, alice_slow):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.close(), 2.0)


async def test_repeated_subscribes_between_two_batches_make_one_snapshot(
    market: Venue, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A book.l3 snapshot walks every resting order: a client repeating subscribes must not
    # make the gateway walk them again while nothing changed.
    made: list[tuple[str, str]] = []
    snapshot = market_data.MarketData.snapshot

    def counted(data: market_data.MarketData, channel: str, symbol: str) -> Any:
        made.append((channel, symbol))
        return snapshot(data, channel, symbol)

    monkeypatch.setattr(market_data.MarketData, "snapshot", counted)
    alice = await market.client("alice")
    try:
        await alice.place(SYMBOL, "buy", 3, "95.00")
        params = {"symbol": SYMBOL, "channels": ["book.l3"]}
        for _ in range(5):
            await alice.request("md.subscribe", params)
        texts: list[str] = []
        while len(texts) < 5:
            message = await _push(alice)
            if message["channel"] == "book.l3":  # Not a heartbeat.
                texts.append(json.dumps(message))
        assert made == [("book.l3", SYMBOL)] and len(set(texts)) == 1
        await alice.place(SYMBOL, "buy", 2, "94.00")  # The book changed: a fresh snapshot.
        await alice.request("md.subscribe", params)
        assert made == [("book.l3", SYMBOL)] * 2
    finally:
        await alice.close()


async def test_a_subscribed_symbol_gets_a_heartbeat_every_second_with_the_latest_seqs(
    market: Venue, server: RunningServer
) -> None:
    watcher = await market.client("bob")
    try:
        await watcher.request("md.subscribe", {"symbol": SYMBOL, "channels": ["trades"]})
        arrivals: list[float] = []
        loop = asyncio.get_running_loop()
        while len(arrivals) < 3:
            message = await _push(watcher)
            if message["channel"] != "heartbeat":
                continue
            arrivals.append(loop.time())
            assert message["seq"] == server.gateway.sequencer.exchange.seq  # The journal's.
            trades_seq = server.gateway.market_data.seq("trades", SYMBOL)
            assert message["channels"]["trades"] == trades_seq
        gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
        # About HEARTBEAT_INTERVAL_S apart: a quiet book still shows a lost last update soon.
        assert all(0.5 * HEARTBEAT_INTERVAL_S < gap < 2 * HEARTBEAT_INTERVAL_S for gap in gaps)
    finally:
        await watcher.close()
