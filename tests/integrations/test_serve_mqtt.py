"""Integration: `ipx serve --mqtt-url` publishes market data to a real MQTT v5 broker.

Rules:
- A served trade reaches the trades topic; the status is retained.
- When market data breaks (WebSocket subscribers are closed with 1011), MQTT subscribers are
  told too: the publisher's state turns "offline" and the retained market data (l2/snapshot,
  bbo, status, liquidity) is cleared, while trading goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from gateway.server import run_server
from tests.gateway.conftest import (
    SYMBOL,
    alice_buys_issuer_sells,
    list_the_market,
    prepare_data_dir,
)
from tests.integrations.test_mqtt_publisher import retained, withdrawn

pytestmark = pytest.mark.asyncio
WAIT_S = 10.0


async def test_a_served_trade_reaches_mqtt_and_the_status_is_retained(
    tmp_path: Path, mqtt_service: tuple[str, int]
) -> None:
    host, port = mqtt_service
    prefix = f"ipx-test-{secrets.token_hex(4)}/v1"
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with (
        run_server(venue.data_dir, mqtt_url=f"mqtt://{host}:{port}", mqtt_prefix=prefix) as running,
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as subscriber,
    ):
        venue.url = running.url
        await subscriber.subscribe(f"{prefix}/md/{SYMBOL}/trades")
        await list_the_market(venue)
        await alice_buys_issuer_sells(venue)
        message = await asyncio.wait_for(anext(aiomqtt_messages(subscriber)), WAIT_S)
        trade = json.loads(bytes(message.payload))
        assert trade["channel"] == "trades" and trade["symbol"] == SYMBOL
        await subscriber.subscribe(f"{prefix}/md/{SYMBOL}/status")
        retained = await asyncio.wait_for(anext(aiomqtt_messages(subscriber)), WAIT_S)
        assert retained.retain and json.loads(bytes(retained.payload))["channel"] == "status"


async def aiomqtt_messages(client: aiomqtt.Client) -> AsyncIterator[aiomqtt.Message]:
    async for message in client.messages:
        yield message


async def test_when_market_data_breaks_mqtt_says_offline_and_clears_its_retained_market_data(
    tmp_path: Path, mqtt_service: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left alone, the retained book would stay frozen at the failure, its expiry refreshed
    # every 30 s, while the exchange trades on: a wrong book with no sign of it.
    host, port = mqtt_service
    prefix = f"ipx-test-{secrets.token_hex(4)}/v1"
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with run_server(
        venue.data_dir, mqtt_url=f"mqtt://{host}:{port}", mqtt_prefix=prefix
    ) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        try:
            await alice.place(SYMBOL, "buy", 5, "98.00")
            await retained(host, port, f"{prefix}/md/{SYMBOL}/#", 4)  # Snapshot, bbo, ...

            def broken(outcome: object) -> list[object]:
                raise AssertionError("a bug in market data")

            monkeypatch.setattr(running.gateway.market_data, "on_outcome", broken)
            placed = await alice.place(SYMBOL, "buy", 7, "99.00")
            assert placed["status"] == "open"  # Trading goes on ...
            await withdrawn(host, port, prefix)  # ... and MQTT says so.
            await asyncio.sleep(1.5)  # Past a snapshot interval: nothing comes back.
            await alice.place(SYMBOL, "buy", 9, "99.50")
            await withdrawn(host, port, prefix)
        finally:
            await alice.close()
