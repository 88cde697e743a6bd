"""Operations: /metrics of a running gateway parses as Prometheus text and moves with trading.

Rules:
- Orders, trades, acks, fsyncs and the journal seq move with trading.
- Every rejection counts in ipx_rejects_total by its code, whether the gateway refused the
  request at the edge (a price off the tick, an unknown symbol, bad params, a forbidden
  method, a logon with a bad token) or the core rejected the command; an order.place refused
  either way counts as a rejected order. Each counts once.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.client import IpxClient, RequestFailed
from tests.gateway.conftest import (
    SYMBOL,
    Venue,
    alice_buys_issuer_sells,
    metrics_url,
    scrape_metrics,
)

pytestmark = pytest.mark.asyncio


async def test_metrics_parse_and_count_orders_trades_and_acks(market: Venue) -> None:
    before = await asyncio.to_thread(scrape_metrics, metrics_url(market.url))
    await alice_buys_issuer_sells(market)
    after = await asyncio.to_thread(scrape_metrics, metrics_url(market.url))

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("ipx_orders_total", result="accepted") == 2
    assert moved("ipx_trades_total", symbol=SYMBOL) == 1
    assert moved("ipx_ack_latency_seconds_count") >= 2
    assert moved("ipx_fsync_latency_seconds_count") >= 1
    assert after[("ipx_journal_seq", ())] > before[("ipx_journal_seq", ())]


async def test_rejections_at_the_edge_count_as_the_cores_do(market: Venue) -> None:
    before = await asyncio.to_thread(scrape_metrics, metrics_url(market.url))
    alice = await market.client("alice")
    codes: list[str] = []
    try:
        for method, params in (
            ("order.place", {"symbol": SYMBOL, "side": "buy", "quantity": 1, "price": "99.05"}),
            ("order.place", {"symbol": "RS-NONE", "side": "buy", "quantity": 1, "price": "1.00"}),
            ("order.place", {"symbol": SYMBOL, "side": "buy", "quantity": 0, "price": "99.00"}),
            ("order.place", {"symbol": SYMBOL, "side": "buy", "quantity": 1, "price": "150.00"}),
            ("op.halt", {"symbol": SYMBOL}),
        ):
            if method == "order.place":
                params["cl_ord_id"] = f"r{len(codes)}"
            with pytest.raises(RequestFailed) as refused:
                await alice.request(method, params)
            codes.append(refused.value.code)
    finally:
        await alice.close()
    with pytest.raises(RequestFailed) as refused:  # A session.logon frame with a bad token.
        await IpxClient.connect(market.url, "not-a-token", bearer=False)
    codes.append(refused.value.code)
    after = await asyncio.to_thread(scrape_metrics, metrics_url(market.url))

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert codes == [
        "INVALID_PRICE_INCREMENT",
        "UNKNOWN_SYMBOL",
        "VALIDATION_ERROR",
        "PRICE_BAND",  # The core's.
        "FORBIDDEN",
        "UNAUTHORIZED",
    ]
    assert {code: moved("ipx_rejects_total", reason=code) for code in codes} == dict.fromkeys(
        codes, 1
    )
    assert moved("ipx_orders_total", result="rejected") == 4
    assert moved("ipx_orders_total", result="accepted") == 0
