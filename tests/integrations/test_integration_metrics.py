"""Integration: /metrics shows what each integration wrote, dropped and holds, and its lag."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path

import pytest

from gateway.server import run_server
from tests.gateway.conftest import (
    SYMBOL,
    MetricSamples,
    alice_buys_issuer_sells,
    http_get,
    list_the_market,
    prepare_data_dir,
    scrape_metrics,
)
from tests.integrations.conftest import RedisKeys

pytestmark = pytest.mark.asyncio
WAIT_S = 10.0


def _redis(samples: MetricSamples, name: str) -> float:
    return samples.get((name, (("sink", "redis"),)), -1.0)


async def test_redis_publishing_shows_in_published_backlog_dropped_and_lag(
    tmp_path: Path, redis_keys: RedisKeys
) -> None:
    url, prefix = redis_keys.url, redis_keys.prefix
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with run_server(venue.data_dir, redis_url=url, redis_prefix=prefix) as running:
        venue.url = running.url
        metrics_url = f"{running.http_url}metrics"
        first_seq = running.gateway.sequencer.exchange.seq  # Journaled before: not sent.
        await list_the_market(venue)
        await alice_buys_issuer_sells(venue)
        last_seq = running.gateway.sequencer.exchange.seq
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            samples = await asyncio.to_thread(scrape_metrics, metrics_url)
            published = _redis(samples, "ipx_publisher_published_total")
            if published >= last_seq - first_seq and (
                _redis(samples, "ipx_publisher_lag_seconds_count") >= 1
            ):
                break
            assert asyncio.get_running_loop().time() < deadline, samples
            await asyncio.sleep(0.05)
    # Every outcome journaled while serving (one per seq) was written, none dropped or left.
    assert published == last_seq - first_seq > 0
    assert running.gateway.readiness()["integrations"]["redis"]["connected"] is True
    assert _redis(samples, "ipx_publisher_dropped_total") == 0
    assert _redis(samples, "ipx_publisher_backlog") == 0
    lag_sum = _redis(samples, "ipx_publisher_lag_seconds_sum")
    assert 0 < lag_sum < WAIT_S * _redis(samples, "ipx_publisher_lag_seconds_count")
    assert ("ipx_publisher_backlog", (("sink", "mqtt"),)) not in samples


async def test_mqtt_publishing_shows_in_metrics_and_verbose_readyz(
    tmp_path: Path, mqtt_service: tuple[str, int]
) -> None:
    host, port = mqtt_service
    prefix = f"ipx-test-{secrets.token_hex(4)}/v1"
    venue = prepare_data_dir(os.fspath(tmp_path))
    mqtt_url = f"mqtt://{host}:{port}"
    async with run_server(venue.data_dir, mqtt_url=mqtt_url, mqtt_prefix=prefix) as running:
        venue.url = running.url
        base = running.http_url
        await list_the_market(venue)
        alice = await venue.client("alice")
        try:
            await alice.place(SYMBOL, "buy", 10, "99.00")
        finally:
            await alice.close()
        deadline = asyncio.get_running_loop().time() + WAIT_S
        lag_count = ("ipx_publisher_lag_seconds_count", (("sink", "mqtt"),))
        while True:
            samples = await asyncio.to_thread(scrape_metrics, f"{base}metrics")
            state = json.loads(await asyncio.to_thread(http_get, f"{base}readyz?verbose"))
            state = state["integrations"]
            published = samples.get(("ipx_publisher_published_total", (("sink", "mqtt"),)), 0)
            if published > 0 and state["mqtt"]["buffered"] == 0 and samples.get(lag_count, 0):
                break
            assert asyncio.get_running_loop().time() < deadline, (samples, state)
            await asyncio.sleep(0.05)
    assert state["mqtt"]["connected"] is True and state["mqtt"]["dropped"] == 0
    assert state["mqtt"]["published"] == published
    assert samples[("ipx_publisher_dropped_total", (("sink", "mqtt"),))] == 0
    assert samples[("ipx_publisher_backlog", (("sink", "mqtt"),))] == 0
    # The publisher reports the highest journal seq the broker took: its lag is sampled.
    lag_sum = samples[("ipx_publisher_lag_seconds_sum", (("sink", "mqtt"),))]
    assert 0 < lag_sum < WAIT_S * samples[lag_count]
    assert "redis" not in state
