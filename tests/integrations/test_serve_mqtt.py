"""Integration: `ipx serve --mqtt-url` publishes market data to a real MQTT v5 broker."""

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
