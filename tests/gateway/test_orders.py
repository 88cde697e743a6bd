"""Order entry through a real gateway: the round trips an investor relies on."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from exchange.commands import PlaceOrder, command_decoder
from gateway import event_loop
from gateway.client import RequestFailed, RequestTimedOut
from gateway.server import RunningServer, run_server
from tests.gateway.conftest import SYMBOL, Venue, list_the_market
from tests.gateway.test_asyncapi import validate

# On both loops: these hold the session rules and limits, which lean on the loop most.
pytestmark = pytest.mark.asyncio(loop_factories=list(event_loop.EVENT_LOOPS))


async def test_place_then_cancel_round_trip(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        placed = await alice.place(SYMBOL, "buy", 10, "99.50", cl_ord_id="a-1")
        assert placed["status"] == "open"
        assert placed["price"] == "99.50"
        assert (placed["quantity"], placed["filled"], placed["leaves"]) == (10, 0, 10)
        book = await alice.request("book.snapshot", {"symbol": SYMBOL})
        assert book["bids"] == [["99.50", 10]]
        canceled = await alice.cancel(order_id=placed["order_id"])
        assert canceled["status"] == "canceled"
        assert canceled["canceled_units"] == 10
        book = await alice.request("book.snapshot", {"symbol": SYMBOL})
        assert book["bids"] == []
    finally:
        await alice.close()


async def test_a_buy_reserves_cash_and_a_cancel_releases_it(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        placed = await alice.place(SYMBOL, "buy", 10, "100.00")
        balances = (await alice.request("account.balances"))["balances"]
        # 10 x 100.00 = 1,000.00 plus the larger fee (25 bps): 2.50.
        assert balances["USD"] == {"available": "98997.50", "held": "1002.50", "kind": "cash"}
        await alice.cancel(order_id=placed["order_id"])
        balances = (await alice.request("account.balances"))["balances"]
        assert balances["USD"] == {"available": "100000.00", "held": "0.00", "kind": "cash"}
    finally:
        await alice.close()


async def test_a_crossing_order_trades_and_reports_its_fill(market: Venue) -> None:
    issuer = await market.client("issuer")
    alice = await market.client("alice")
    try:
        await issuer.place(SYMBOL, "sell", 5, "101.00")
        bought = await alice.place(SYMBOL, "buy", 8, "101.00")
        assert (bought["filled"], bought["leaves"], bought["status"]) == (5, 3, "partially_filled")
        assert bought["fills"] == [
            {
                "trade_id": bought["fills"][0]["trade_id"],
                "price": "101.00",
                "quantity": 5,
                "liquidity": "taker",
                "fee": "1.26",  # 25 bps of 505.00, rounded down.
            }
        ]
        balances = (await alice.request("account.balances"))["balances"]
        assert balances[SYMBOL] == {"available": 5, "held": 0, "kind": "units"}
    finally:
        await alice.close()
        await issuer.close()


async def test_amend_and_status_by_client_order_id(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        await alice.place(SYMBOL, "buy", 10, "99.00", cl_ord_id="amend-me")
        amended = await alice.amend("98.50", 6, cl_ord_id="amend-me")
        assert (amended["price"], amended["quantity"], amended["leaves"]) == ("98.50", 6, 6)
        status = await alice.status(cl_ord_id="amend-me")
        assert status == amended
        listing = await alice.request("orders.open")
        assert [order["cl_ord_id"] for order in listing["orders"]] == ["amend-me"]
    finally:
        await alice.close()


async def test_resending_the_same_order_returns_the_same_order(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        first = await alice.place(SYMBOL, "buy", 10, "99.00", cl_ord_id="once")
        again = await alice.place(SYMBOL, "buy", 10, "99.00", cl_ord_id="once")
        assert again["order_id"] == first["order_id"]
        listing = await alice.request("orders.open")
        assert len(listing["orders"]) == 1
        with pytest.raises(RequestFailed) as refused:
            await alice.place(SYMBOL, "buy", 11, "99.00", cl_ord_id="once")
        assert (refused.value.status, refused.value.code) == (409, "DUPLICATE_CL_ORD_ID")
    finally:
        await alice.close()


async def test_business_rejections_are_typed(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        cases: list[tuple[dict[str, object], int, str]] = [
            ({"price": "150.00"}, 422, "PRICE_BAND"),
            ({"price": "99.05"}, 400, "INVALID_PRICE_INCREMENT"),
            ({"price": "99.001"}, 400, "INVALID_PRICE_INCREMENT"),
            ({"quantity": 10_000_000}, 422, "INSUFFICIENT_BALANCE"),
            ({"symbol": "RS-NOPE"}, 404, "UNKNOWN_SYMBOL"),
            ({"side": "sell"}, 422, "INSUFFICIENT_SHARES"),
        ]
        for index, (changes, status, code) in enumerate(cases):
            params = {"symbol": SYMBOL, "side": "buy", "quantity": 10, "price": "99.00"}
            params.update(changes)
            params["cl_ord_id"] = f"bad-{index}"
            with pytest.raises(RequestFailed) as refused:
                await alice.request("order.place", params)
            assert (refused.value.status, refused.value.code) == (status, code), changes
    finally:
        await alice.close()


async def test_a_market_order_says_ioc_or_fok_and_trades_no_further_than_the_band(
    market: Venue,
) -> None:
    # As gateway/protocol.py and the README say: the default time in force (gtc) is refused.
    issuer, alice = await market.client("issuer"), await market.client("alice")
    try:
        await issuer.place(SYMBOL, "sell", 5, "100.00")
        with pytest.raises(RequestFailed) as refused:
            await alice.place(SYMBOL, "buy", 3, type="market")
        assert (refused.value.status, refused.value.code) == (400, "VALIDATION_ERROR")
        assert "IOC or FOK" in refused.value.message
        bought = await alice.place(SYMBOL, "buy", 3, type="market", time_in_force="ioc")
        assert (bought["status"], bought["filled"], bought["fills"][0]["price"]) == (
            "filled",
            3,
            "100.00",
        )
        assert bought["price"] == "110.00"  # Its protection: the static band's edge.
    finally:
        await issuer.close()
        await alice.close()


async def test_an_overloaded_exchange_answers_503_and_does_nothing(venue: Venue) -> None:
    async with run_server(venue.data_dir, queue_max=1) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        try:
            prices = [f"{90 + index % 10}.00" for index in range(100)]
            answers = await asyncio.gather(
                *(
                    alice.request(
                        "order.place",
                        {
                            "symbol": SYMBOL,
                            "cl_ord_id": f"o-{index}",
                            "side": "buy",
                            "quantity": 1,
                            "price": price,
                        },
                    )
                    for index, price in enumerate(prices)
                ),
                return_exceptions=True,
            )
            refused = {
                f"o-{index}"
                for index, answer in enumerate(answers)
                if isinstance(answer, RequestFailed)
            }
            placed = {answer["cl_ord_id"] for answer in answers if isinstance(answer, dict)}
            assert len(refused) + len(placed) == 100
            assert refused, "a one-command queue should have overflowed"
            for answer in answers:
                if isinstance(answer, RequestFailed):
                    assert (answer.status, answer.code) == (503, "OVERLOADED")
                    assert "retry" in answer.message
            open_orders = (await alice.request("orders.open"))["orders"]
            assert {order["cl_ord_id"] for order in open_orders} == placed
            for cl_ord_id in sorted(refused)[:5]:  # Nothing was done: unknown to the exchange.
                with pytest.raises(RequestFailed):
                    await alice.status(cl_ord_id=cl_ord_id)
        finally:
            await alice.close()


async def test_a_resting_order_reports_its_fill_to_its_owner_only(market: Venue) -> None:
    # Reports are numbered per account: every session of Alice's numbers them alike, and the
    # numbering goes on in a later session (it counts from her account's opening: the account
    # and its deposit were her first two).
    alice = await market.client("alice")
    alice_too = await market.client("alice", bearer=False)  # A second session of Alice's.
    bob = await market.client("bob")
    issuer = await market.client("issuer")
    try:
        for client in (alice, alice_too, bob):
            assert await client.subscribe_executions() == {"channel": "executions", "seq": 2}
        resting = await alice.place(SYMBOL, "buy", 4, "99.90")
        await issuer.place(SYMBOL, "sell", 4, "99.90")
        for session in (alice, alice_too):
            reports = [await asyncio.wait_for(session.pushes.get(), 5.0) for _ in range(2)]
            assert [(r["seq"], r["prev_seq"], r["channel"]) for r in reports] == [
                (3, 2, "executions"),
                (4, 3, "executions"),
            ]
            accepted, filled = (report["event"] for report in reports)
            assert (accepted["type"], accepted["order_id"]) == (
                "order_accepted",
                resting["order_id"],
            )
            assert (accepted["exec_type"], accepted["ord_status"]) == ("new", "open")
            assert filled["type"] == "order_filled"
            assert (filled["price"], filled["quantity_units"], filled["leaves_units"]) == (
                "99.90",
                4,
                0,
            )
            assert (filled["exec_type"], filled["ord_status"]) == ("trade", "filled")
            assert (filled["liquidity"], filled["fee"]) == ("maker", "0.39")  # 10 bps of 399.60.
        assert (await alice.status(order_id=resting["order_id"]))["status"] == "filled"
        await asyncio.sleep(0.1)
        assert bob.pushes.empty()
        later = await market.client("alice")
        assert await later.subscribe_executions() == {"channel": "executions", "seq": 4}
        await later.close()
    finally:
        for client in (alice, alice_too, bob, issuer):
            await client.close()


async def test_each_report_says_what_happened_and_the_orders_status_after_it(
    market: Venue,
) -> None:
    alice = await market.client("alice")
    issuer = await market.client("issuer")
    try:
        await alice.subscribe_executions()
        bid = await alice.place(SYMBOL, "buy", 10, "99.00")
        await issuer.place(SYMBOL, "sell", 4, "99.00")
        await alice.amend(order_id=bid["order_id"], quantity=8, price="99.00")
        await alice.cancel(order_id=bid["order_id"])
        refused_cl = alice.next_cl_ord_id()
        with pytest.raises(RequestFailed):
            await alice.place(SYMBOL, "buy", 50, "99.00", cl_ord_id=refused_cl, time_in_force="fok")
        refused = (await alice.status(cl_ord_id=refused_cl))["order_id"]
        by_id = await alice.status(order_id=refused)  # The refused order has an id: found by it.
        assert (by_id["status"], by_id["reason"], by_id["cl_ord_id"]) == (
            "rejected",
            "FOK_NOT_FILLABLE",
            refused_cl,
        )
        seen = []
        for _ in range(5):
            report = await asyncio.wait_for(alice.pushes.get(), 5.0)
            validate(report, "ExecutionReportPush")  # As the AsyncAPI document describes it.
            event = report["event"]
            seen.append((event["type"], event["exec_type"], event["ord_status"]))
        assert seen == [
            ("order_accepted", "new", "open"),
            ("order_filled", "trade", "partially_filled"),
            ("order_amended", "replaced", "partially_filled"),
            ("order_canceled", "canceled", "canceled"),
            ("order_rejected", "rejected", "rejected"),
        ]
    finally:
        await alice.close()
        await issuer.close()


async def test_an_orders_answer_reaches_its_sender_before_its_execution_report(
    market: Venue,
) -> None:
    # The answer and the report are released by the same durable batch; the answer is written
    # in that loop pass, the report by the session's push writer after it.
    headers = {"Authorization": f"Bearer {market.tokens['alice']}"}
    async with connect(market.url, additional_headers=headers) as alice:
        await alice.send(json.dumps({"id": "s", "method": "executions.subscribe"}))
        assert json.loads(await alice.recv())["id"] == "s"
        for n in range(20):
            params = {"symbol": SYMBOL, "side": "buy", "type": "limit", "quantity": 1,
                      "price": "95.00", "cl_ord_id": f"order-{n}"}  # fmt: skip
            await alice.send(json.dumps({"id": str(n), "method": "order.place", "params": params}))
            first = json.loads(await alice.recv())
            second = json.loads(await alice.recv())
            assert (first.get("id"), first.get("status")) == (str(n), 200), first
            assert second["channel"] == "executions", second
            assert second["event"]["cl_ord_id"] == f"order-{n}"


async def test_the_client_resends_a_timed_out_order_with_the_same_client_id(
    market: Venue, server: RunningServer
) -> None:
    alice = await market.client("alice")
    try:
        cl_ord_id = alice.next_cl_ord_id()
        with pytest.raises(RequestTimedOut):
            # Every attempt gives up before the answer can come: the order is sent three times.
            await alice.place(SYMBOL, "buy", 2, "97.00", cl_ord_id=cl_ord_id, timeout_s=0.0)
        await asyncio.sleep(0.2)  # Let the three sends be handled.
        journal = server.gateway.sequencer.journal
        sent = [
            command
            for record in journal.records()
            if record.kind == "place_order"
            and isinstance(command := command_decoder.decode(record.command), PlaceOrder)
            and command.cl_ord_id == cl_ord_id
        ]
        assert len(sent) == 3 and sent[0] == sent[1] == sent[2]
        status = await alice.status(cl_ord_id=cl_ord_id)
        assert (status["status"], status["quantity"]) == ("open", 2)
        assert len((await alice.request("orders.open"))["orders"]) == 1  # Never a second order.
        again = await alice.place(SYMBOL, "buy", 2, "97.00", cl_ord_id=cl_ord_id)
        assert again["order_id"] == status["order_id"]
    finally:
        await alice.close()
