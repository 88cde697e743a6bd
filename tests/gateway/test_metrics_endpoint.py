"""Operations: /metrics of a running gateway parses as Prometheus text and moves with trading."""

from __future__ import annotations

import asyncio

import pytest

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
