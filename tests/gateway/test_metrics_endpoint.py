"""Operations: /metrics of a running gateway parses as Prometheus text and moves with trading."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.gateway.conftest import SYMBOL, Venue

pytestmark = pytest.mark.asyncio


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    http_url = url.replace("ws://", "http://") + "metrics"
    with urllib.request.urlopen(http_url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_parse_and_count_orders_trades_and_acks(market: Venue) -> None:
    before = await asyncio.to_thread(_scrape, market.url)
    alice, issuer = await market.client("alice"), await market.client("issuer")
    try:
        await alice.place(SYMBOL, "buy", 10, "100.00")
        await issuer.place(SYMBOL, "sell", 10, "100.00")  # Trades against the bid.
    finally:
        await alice.close()
        await issuer.close()
    after = await asyncio.to_thread(_scrape, market.url)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert moved("ipx_orders_total", result="accepted") == 2
    assert moved("ipx_trades_total", symbol=SYMBOL) == 1
    assert moved("ipx_ack_latency_seconds_count") >= 2
    assert moved("ipx_fsync_latency_seconds_count") >= 1
    assert after[("ipx_journal_seq", ())] > before[("ipx_journal_seq", ())]
