"""The rest of the method table, each through a real server: who may call it and what it says.

orders.open and account.fills answer in pages (gateway/protocol.py): orders in order_id
order, `next` the cursor for `after`, None on the last page; the client's open_orders() and
fills() walk every page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from exchange.state import FEE_ACCOUNT
from gateway.client import IpxClient, RequestFailed
from tests.gateway.conftest import SYMBOL, Venue, wait_for_phase

pytestmark = pytest.mark.asyncio

OTHER_PATENT = "EP3000001B1"
OTHER_SYMBOL = "RS-EP3000001B1"


@pytest_asyncio.fixture
async def clients(market: Venue) -> AsyncIterator[dict[str, IpxClient]]:
    opened = {account: await market.client(account) for account in market.tokens}
    try:
        yield opened
    finally:
        for client in opened.values():
            await client.close()


async def refused(client: IpxClient, method: str, params: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(RequestFailed) as failure:
        await client.request(method, params)
    return failure.value.status, failure.value.code


async def alice_buys_ten_from_the_issuer(clients: dict[str, IpxClient]) -> None:
    await clients["issuer"].place(SYMBOL, "sell", 10, "100.00")
    bought = await clients["alice"].place(SYMBOL, "buy", 10, "100.00")
    assert bought["status"] == "filled"


async def test_order_cancel_all_cancels_only_the_callers_orders(
    clients: dict[str, IpxClient],
) -> None:
    alice, bob = clients["alice"], clients["bob"]
    for price in ("98.00", "97.00"):
        await alice.place(SYMBOL, "buy", 5, price)
    bobs = await bob.place(SYMBOL, "buy", 5, "96.00")
    result = await alice.request("order.cancel_all", {"symbol": SYMBOL})
    assert result["orders_canceled"] == 2
    assert (await alice.request("orders.open"))["orders"] == []
    assert (await bob.status(order_id=bobs["order_id"]))["status"] == "open"
    assert (await alice.request("order.cancel_all"))["orders_canceled"] == 0
    assert await refused(alice, "order.cancel_all", {"symbol": "NOPE"}) == (404, "UNKNOWN_SYMBOL")


async def test_orders_open_answers_in_pages_of_ascending_order_ids(
    clients: dict[str, IpxClient],
) -> None:
    alice = clients["alice"]
    ids = [(await alice.place(SYMBOL, "buy", 1, f"9{n}.00"))["order_id"] for n in range(5)]
    await clients["bob"].place(SYMBOL, "buy", 1, "95.00")  # Never in alice's pages.
    first = await alice.request("orders.open", {"limit": 2})
    assert ([o["order_id"] for o in first["orders"]], first["next"]) == (ids[:2], ids[1])
    await alice.cancel(order_id=ids[2])  # Changes between pages show in the later ones.
    ids.append((await alice.place(SYMBOL, "buy", 1, "98.50"))["order_id"])
    second = await alice.request("orders.open", {"limit": 2, "after": first["next"]})
    assert ([o["order_id"] for o in second["orders"]], second["next"]) == (ids[3:5], ids[4])
    last = await alice.request("orders.open", {"limit": 2, "after": second["next"]})
    assert ([o["order_id"] for o in last["orders"]], last["next"]) == (ids[5:], None)
    assert [o["order_id"] for o in await alice.open_orders(page_limit=1)] == ids[:2] + ids[3:]
    assert await alice.open_orders("OTHER") == []
    assert (await alice.request("orders.open", {"symbol": SYMBOL, "limit": 5}))["next"] is None


async def test_the_clients_fills_walks_every_page(clients: dict[str, IpxClient]) -> None:
    await clients["issuer"].place(SYMBOL, "sell", 5, "100.00")
    for _ in range(5):
        await clients["alice"].place(SYMBOL, "buy", 1, "100.00")
    page = await clients["alice"].request("account.fills", {"limit": 2})
    assert (len(page["fills"]), page["next"] is not None) == (2, True)
    fills = await clients["alice"].fills(page_limit=2)
    assert len(fills["fills"]) == 5 and fills["truncated"] is False
    assert fills["fills"][:2] == page["fills"]
    assert len({fill["trade_id"] for fill in fills["fills"]}) == 5


async def test_account_fills_lists_the_days_fills_of_the_caller_only(
    clients: dict[str, IpxClient],
) -> None:
    await alice_buys_ten_from_the_issuer(clients)
    alices = await clients["alice"].request("account.fills")
    assert alices["truncated"] is False
    [fill] = alices["fills"]
    assert fill["symbol"] == SYMBOL
    assert (fill["side"], fill["price"], fill["quantity"]) == ("buy", "100.00", 10)
    assert (fill["liquidity"], fill["fee"]) == ("taker", "2.50")  # 25 bps of 1,000.00.
    [issuers] = (await clients["issuer"].request("account.fills"))["fills"]
    assert (issuers["side"], issuers["liquidity"], issuers["fee"]) == ("sell", "maker", "1.00")
    assert issuers["trade_id"] == fill["trade_id"]
    assert (await clients["bob"].request("account.fills"))["fills"] == []
    filtered = await clients["alice"].request("account.fills", {"symbol": "OTHER"})
    assert filtered["fills"] == []


async def test_account_royalties_per_period_and_trailing_yield(
    clients: dict[str, IpxClient],
) -> None:
    op = clients["op"]
    await alice_buys_ten_from_the_issuer(clients)
    await op.request("op.deposit", {"account_id": "issuer", "currency": "USD", "amount": "5000"})
    distribution = {
        "symbol": SYMBOL,
        "amount": "1000.00",
        "payer_account": "issuer",
        "period_id": "2026-Q3",
    }
    paid = await op.request("op.distribute_royalty", distribution)
    assert (paid["amount_minor"], paid["total_units"]) == (100_000, 100_000)
    assert paid["amount"] == "1000.00"  # Cash on the wire is a decimal string, as sent.
    royalties = await clients["alice"].request("account.royalties")
    [payment] = royalties["payments"]
    assert (payment["period_id"], payment["units_held"], payment["amount"]) == (
        "2026-Q3",
        10,
        "0.10",
    )
    [held] = royalties["instruments"]
    assert held["units_held"] == 10
    assert held["ttm_royalties"] == "1000.00"
    assert held["ttm_royalties_per_unit"] == "0.01000000"  # 1,000.00 / 100,000 units.
    assert held["ttm_yield_percent_at_last_price"] == "0.0100"  # 0.01 / 100.00.
    bobs = await clients["bob"].request("account.royalties")
    assert bobs == {"account": "bob", "payments": [], "payments_made": [], "instruments": []}
    assert await refused(op, "op.distribute_royalty", distribution) == (
        409,
        "DUPLICATE_DISTRIBUTION",
    )


async def test_a_royalty_payer_gets_an_execution_report_and_its_payments_made(
    clients: dict[str, IpxClient],
) -> None:
    # The issuer pays as licensee and holds 99,990 of the 100,000 units: of the 1,000.00 it
    # pays, 999.90 comes back to it as a holder; its cash goes down by 0.10.
    op, issuer = clients["op"], clients["issuer"]
    await alice_buys_ten_from_the_issuer(clients)
    await op.request("op.deposit", {"account_id": "issuer", "currency": "USD", "amount": "5000"})
    await issuer.request("subscribe", {"channel": "executions"})
    distribution = {
        "symbol": SYMBOL,
        "amount": "1000.00",
        "payer_account": "issuer",
        "period_id": "2026-Q3",
    }
    await op.request("op.distribute_royalty", distribution)
    reports = [await asyncio.wait_for(issuer.pushes.get(), 5.0) for _ in range(2)]
    charged, paid = (report["event"] for report in reports)
    assert (charged["type"], charged["period_id"], charged["amount"], charged["own_share"]) == (
        "royalty_charged",
        "2026-Q3",
        "1000.00",
        "999.90",
    )
    assert (paid["type"], paid["amount"]) == ("royalty_paid", "999.90")
    royalties = await issuer.request("account.royalties")
    [made] = royalties["payments_made"]
    assert (made["symbol"], made["period_id"], made["amount"]) == (SYMBOL, "2026-Q3", "1000.00")
    assert (made["own_share"], made["net_amount"], made["currency"]) == ("999.90", "0.10", "USD")
    [received] = royalties["payments"]
    assert received["amount"] == "999.90"
    alices = await clients["alice"].request("account.royalties")
    assert alices["payments_made"] == []


async def test_instrument_info_shows_the_patent_terms_and_market(
    clients: dict[str, IpxClient],
) -> None:
    await alice_buys_ten_from_the_issuer(clients)
    info = await clients["bob"].request("instrument.info", {"symbol": SYMBOL})
    assert info["patent"]["patent_id"] == "US10123456B2"
    assert info["patent"]["licensees"] == ["Acme Corp"]
    assert info["patent"]["trailing_royalties_at_listing"] == "1200.00"
    assert (info["total_units"], info["tick_size"], info["lot_size_units"]) == (100_000, "0.10", 1)
    assert (info["phase"], info["last_price"]) == ("continuous", "100.00")
    assert info["static_band"] == ["90.00", "110.00"]
    assert info["royalties"]["ttm_royalties"] == "0.00"
    assert info["royalties"]["ttm_yield_percent_at_last_price"] == "0.0000"
    assert await refused(clients["bob"], "instrument.info", {"symbol": "NOPE"}) == (
        404,
        "UNKNOWN_SYMBOL",
    )


async def test_op_withdraw_takes_cash_out(clients: dict[str, IpxClient]) -> None:
    params = {"account_id": "alice", "currency": "USD", "amount": "100.00"}
    assert await refused(clients["alice"], "op.withdraw", params) == (403, "FORBIDDEN")
    withdrawn = await clients["op"].request("op.withdraw", params)
    assert (withdrawn["amount_minor"], withdrawn["amount"]) == (10_000, "100.00")
    balances = (await clients["alice"].request("account.balances"))["balances"]
    assert balances["USD"]["available"] == "99900.00"
    too_much = {**params, "amount": "1000000.00"}
    assert await refused(clients["op"], "op.withdraw", too_much) == (422, "INSUFFICIENT_BALANCE")


async def test_op_withdraw_takes_the_collected_fees_out(clients: dict[str, IpxClient]) -> None:
    await alice_buys_ten_from_the_issuer(clients)  # Fees 2.50 (taker) + 1.00 (maker).
    fees = {"account_id": FEE_ACCOUNT, "currency": "USD", "amount": "3.51"}
    assert await refused(clients["op"], "op.withdraw", fees) == (422, "INSUFFICIENT_BALANCE")
    withdrawn = await clients["op"].request("op.withdraw", {**fees, "amount": "3.50"})
    assert (withdrawn["account"], withdrawn["amount"]) == (FEE_ACCOUNT, "3.50")
    assert await refused(clients["alice"], "op.withdraw", fees) == (403, "FORBIDDEN")


async def test_op_open_offering_opens_a_pre_open_instrument(
    market: Venue, clients: dict[str, IpxClient]
) -> None:
    op = clients["op"]
    listing = {
        "patent_id": OTHER_PATENT,
        "title": "Battery electrode coating",
        "jurisdiction": "EP",
        "owner_account": "issuer",
        "filing_date": "2018-01-01",
        "expiry_date": "2038-01-01",
        "cpc_class": "H01M 4/04",
        "royalty_terms": "2% of net sales",
        "currency": "USD",
        "family": ["US10987654B2", "KR1020180004321"],  # One asset with its counterparts.
    }
    # The royalty terms are required by the schema as by the core (a default of "" was
    # documented, then always refused).
    no_terms = {key: value for key, value in listing.items() if key != "royalty_terms"}
    with pytest.raises(RequestFailed, match="missing required field `royalty_terms`"):
        await op.request("op.list_asset", no_terms)
    await op.request("op.list_asset", listing)
    await op.request(
        "op.issue_shares",
        {
            "patent_id": OTHER_PATENT,
            "symbol": OTHER_SYMBOL,
            "issuer_account": "issuer",
            "total_units": 1_000,
            "currency": "USD",
            "tick_size": "0.01",
            "reference_price": "10.00",
        },
    )
    offering = {
        "symbol": OTHER_SYMBOL,
        "units": 500,
        "min_price": "9.50",
        "end_ts_ns": time.time_ns() + 60_000_000_000,
    }
    assert await refused(clients["issuer"], "op.open_offering", offering) == (403, "FORBIDDEN")
    opened = await op.request("op.open_offering", offering)
    assert (opened["units"], opened["min_price_ticks"], opened["min_price"]) == (500, 950, "9.50")
    info = await op.request("instrument.info", {"symbol": OTHER_SYMBOL})
    assert info["phase"] == "offering"
    assert info["patent"]["family"] == ["US10987654B2", "KR1020180004321"]
    assert await refused(op, "op.open_offering", offering) == (422, "MARKET_CLOSED")


async def test_op_kill_switch_cancels_and_blocks_then_releases(
    clients: dict[str, IpxClient],
) -> None:
    op, alice = clients["op"], clients["alice"]
    order = await alice.place(SYMBOL, "buy", 5, "98.00")
    engage = {"account_id": "alice", "engaged": True}
    assert await refused(alice, "op.kill_switch", engage) == (403, "FORBIDDEN")
    await op.request("op.kill_switch", engage)
    assert (await alice.status(order_id=order["order_id"]))["status"] == "canceled"
    with pytest.raises(RequestFailed) as blocked:
        await alice.place(SYMBOL, "buy", 5, "98.00")
    assert blocked.value.code == "ACCOUNT_SUSPENDED"
    await op.request("op.kill_switch", {"account_id": "alice", "engaged": False})
    assert (await alice.place(SYMBOL, "buy", 5, "98.00"))["status"] == "open"


async def test_op_cancel_all_cancels_another_accounts_orders(
    clients: dict[str, IpxClient],
) -> None:
    op, bob = clients["op"], clients["bob"]
    await bob.place(SYMBOL, "buy", 5, "98.00")
    await clients["alice"].place(SYMBOL, "buy", 5, "97.00")
    params = {"account_id": "bob"}
    assert await refused(clients["alice"], "op.cancel_all", params) == (403, "FORBIDDEN")
    result = await op.request("op.cancel_all", params)
    assert (result["account"], result["orders_canceled"]) == ("bob", 1)
    assert (await bob.request("orders.open"))["orders"] == []
    assert len((await clients["alice"].request("orders.open"))["orders"]) == 1


async def test_op_cancel_all_refuses_an_unknown_symbol_as_order_cancel_all_does(
    clients: dict[str, IpxClient],
) -> None:
    # A misspelt symbol is a typo to report, not "0 orders canceled" while the orders rest on.
    op, bob = clients["op"], clients["bob"]
    await bob.place(SYMBOL, "buy", 5, "98.00")
    misspelt = {"account_id": "bob", "symbol": SYMBOL[:-1]}
    assert await refused(op, "op.cancel_all", misspelt) == (404, "UNKNOWN_SYMBOL")
    assert len((await bob.request("orders.open"))["orders"]) == 1


async def test_op_start_auction_interrupts_continuous_trading(
    clients: dict[str, IpxClient],
) -> None:
    op = clients["op"]
    params = {"symbol": SYMBOL, "duration_ns": 200_000_000}
    assert await refused(clients["bob"], "op.start_auction", params) == (403, "FORBIDDEN")
    await op.request("op.start_auction", params)
    assert (await op.request("instrument.info", {"symbol": SYMBOL}))["phase"] == "auction"
    await wait_for_phase(op, "continuous")  # The auction ends on its own.


async def test_op_close_market_closes_it_to_new_orders(clients: dict[str, IpxClient]) -> None:
    op = clients["op"]
    assert await refused(clients["alice"], "op.close_market", {"symbol": SYMBOL}) == (
        403,
        "FORBIDDEN",
    )
    await op.request("op.close_market", {"symbol": SYMBOL})
    assert (await op.request("instrument.info", {"symbol": SYMBOL}))["phase"] == "closed"
    with pytest.raises(RequestFailed) as closed:
        await clients["alice"].place(SYMBOL, "buy", 5, "98.00")
    assert closed.value.code == "MARKET_CLOSED"


async def test_subscribe_and_unsubscribe_by_channel(clients: dict[str, IpxClient]) -> None:
    alice = clients["alice"]
    assert await refused(alice, "subscribe", {"channel": "book.l2"}) == (400, "VALIDATION_ERROR")
    book = await alice.request("subscribe", {"channel": "book.l2", "symbol": SYMBOL})
    snapshot = await asyncio.wait_for(alice.pushes.get(), 5.0)
    assert (snapshot["channel"], snapshot["type"], snapshot["seq"]) == (
        "book.l2",
        "snapshot",
        book["seq"],
    )
    await alice.request("unsubscribe", {"channel": "book.l2", "symbol": SYMBOL})
    await alice.request("subscribe", {"channel": "executions"})
    await alice.place(SYMBOL, "buy", 5, "98.00")
    report = await asyncio.wait_for(alice.pushes.get(), 5.0)
    assert (report["channel"], report["event"]["type"]) == ("executions", "order_accepted")
    await alice.request("unsubscribe", {"channel": "executions"})
    await alice.place(SYMBOL, "buy", 5, "97.00")
    await clients["bob"].place(SYMBOL, "buy", 5, "96.00")  # Would move book.l2, were it on.
    await asyncio.sleep(0.2)
    assert alice.pushes.empty()


async def test_an_investor_is_refused_every_operator_method(clients: dict[str, IpxClient]) -> None:
    bob = clients["bob"]
    operator_only: list[tuple[str, dict[str, Any]]] = [
        ("op.withdraw", {"account_id": "bob", "currency": "USD", "amount": "1.00"}),
        ("op.open_offering", {"symbol": SYMBOL, "units": 1, "min_price": "1.00", "end_ts_ns": 1}),
        (
            "op.distribute_royalty",
            {"symbol": SYMBOL, "amount": "1.00", "payer_account": "bob", "period_id": "x"},
        ),
        ("op.kill_switch", {"account_id": "alice", "engaged": True}),
        ("op.cancel_all", {"account_id": "alice"}),
        ("op.start_auction", {"symbol": SYMBOL, "duration_ns": 1}),
        ("op.close_market", {"symbol": SYMBOL}),
    ]
    for method, params in operator_only:
        assert await refused(bob, method, params) == (403, "FORBIDDEN"), method
    info = await bob.request("instrument.info", {"symbol": SYMBOL})
    assert info["phase"] == "continuous"
