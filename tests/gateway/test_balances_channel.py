"""The private `balances` channel: an account's balances, pushed as they change, to it alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.client import IpxClient, RequestFailed
from tests.gateway.conftest import SYMBOL, Venue
from tests.gateway.test_asyncapi import validate

pytestmark = pytest.mark.asyncio

PUSH_WAIT_S = 5.0


async def _next_balances(client: IpxClient) -> dict[str, Any]:
    while True:  # Skips anything else pushed to the session.
        message: dict[str, Any] = await asyncio.wait_for(client.pushes.get(), PUSH_WAIT_S)
        if message.get("channel") == "balances":
            return message


async def test_a_subscriber_gets_a_snapshot_then_every_balance_a_batch_changes(
    market: Venue,
) -> None:
    alice, bob, issuer = [await market.client(name) for name in ("alice", "bob", "issuer")]
    try:
        assert await alice.request("subscribe", {"channel": "balances"}) == {
            "channel": "balances",
            "seq": 1,
        }
        await bob.request("subscribe", {"channel": "balances"})
        snapshot = await _next_balances(alice)
        validate(snapshot, "BalancesPush")  # As the AsyncAPI document describes it.
        assert (snapshot["type"], snapshot["seq"], snapshot["prev_seq"]) == ("snapshot", 1, 0)
        assert snapshot["balances"] == (await alice.request("account.balances"))["balances"]
        await _next_balances(bob)  # Bob's own snapshot.

        await alice.place(SYMBOL, "buy", 10, "100.00")  # Cash moves to held.
        update = await _next_balances(alice)
        validate(update, "BalancesPush")
        assert (update["type"], update["seq"], update["prev_seq"]) == ("update", 2, 1)
        # 10 x 100.00 held, plus the larger fee (25 bps): 2.50.
        assert update["balances"] == {
            "USD": {"available": "98997.50", "held": "1002.50", "kind": "cash"}
        }
        await issuer.place(SYMBOL, "sell", 4, "100.00")  # A trade: units in, cash out.
        update = await _next_balances(alice)
        assert update["seq"] == 3
        now = (await alice.request("account.balances"))["balances"]
        assert update["balances"] == {asset: now[asset] for asset in ("USD", SYMBOL)}
        assert update["balances"][SYMBOL] == {"available": 4, "held": 0, "kind": "units"}
        await asyncio.sleep(0.1)
        assert all(message.get("channel") != "balances" for message in _drain(bob))
    finally:
        for client in (alice, bob, issuer):
            await client.close()


async def test_unsubscribing_stops_the_updates_and_subscribing_again_resyncs(
    market: Venue,
) -> None:
    alice = await market.client("alice")
    try:
        await alice.request("subscribe", {"channel": "balances"})
        await _next_balances(alice)
        await alice.request("unsubscribe", {"channel": "balances"})
        await alice.place(SYMBOL, "buy", 1, "95.00")
        await asyncio.sleep(0.1)
        assert all(message.get("channel") != "balances" for message in _drain(alice))
        assert await alice.request("subscribe", {"channel": "balances"}) == {
            "channel": "balances",
            "seq": 2,
        }
        snapshot = await _next_balances(alice)
        assert snapshot["type"] == "snapshot"
        assert snapshot["balances"] == (await alice.request("account.balances"))["balances"]
    finally:
        await alice.close()


async def test_the_balances_channel_is_the_callers_own_and_takes_no_symbol(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        with pytest.raises(RequestFailed) as refused:
            await alice.request("subscribe", {"channel": "balances", "symbol": SYMBOL})
        assert (refused.value.status, refused.value.code) == (400, "VALIDATION_ERROR")
    finally:
        await alice.close()


def _drain(client: IpxClient) -> list[dict[str, Any]]:
    messages = []
    while not client.pushes.empty():
        messages.append(client.pushes.get_nowait())
    return messages
