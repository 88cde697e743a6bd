"""Integration: `ipx serve --mqtt-url` publishes market data to a real MQTT v5 broker.

Rules:
- mqtt://user:password@host:port logs on to the broker as that user (both percent-decoded).
- A broker that refuses the user (wrong password, or none where one is required) is a
  WARNING in the log, every try, and /readyz?verbose shows the publisher not connected.
- The password is never printed nor logged: not at start, not in a refusal, not in the error
  about a malformed --mqtt-url.
- A served trade reaches the trades topic; the status is retained.
- When market data breaks (WebSocket subscribers are closed with 1011), MQTT subscribers are
  told too: the publisher's state turns "offline" and the retained market data (l2/snapshot,
  bbo, status, liquidity) is cleared, while trading goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from gateway.server import Gateway, run_server
from tests.gateway.conftest import (
    IPX_SERVE_TIMEOUT_S,
    SYMBOL,
    alice_buys_issuer_sells,
    http_get,
    list_the_market,
    prepare_data_dir,
    start_ipx_serve,
    stop_ipx_serve,
)
from tests.integrations.conftest import PrivateBroker
from tests.integrations.test_mqtt_publisher import retained, withdrawn

WAIT_S = 10.0


@pytest.mark.asyncio
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


def mqtt_url(broker: PrivateBroker, username: str | None, password: str | None) -> str:
    """mqtt://user:password@host:port, each part percent-encoded as a URL requires."""
    userinfo = ""
    if username is not None:
        userinfo = urllib.parse.quote(username, safe="")
        if password is not None:
            userinfo += ":" + urllib.parse.quote(password, safe="")
        userinfo += "@"
    return f"mqtt://{userinfo}{broker.host}:{broker.port}"


async def mqtt_state_until(gateway: Gateway, done: Any, what: str) -> dict[str, Any]:
    """The gateway's MQTT readiness, polled until done(it) (bounded by WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        state: dict[str, Any] = gateway.readiness()["integrations"]["mqtt"]
        if done(state):
            return state
        assert time.monotonic() < deadline, f"MQTT publisher never {what}: {state}"
        await asyncio.sleep(0.05)


@pytest.mark.asyncio
async def test_the_user_and_password_of_the_mqtt_url_log_on_to_the_broker(
    tmp_path: Path, private_broker: PrivateBroker
) -> None:
    broker = private_broker
    prefix = f"ipx-test-{secrets.token_hex(4)}/v1"
    venue = prepare_data_dir(os.fspath(tmp_path))
    url = mqtt_url(broker, broker.username, broker.password)
    assert "%40" in url and "%3A" in url  # The password's "@" and ":" go encoded.
    async with (
        run_server(venue.data_dir, mqtt_url=url, mqtt_prefix=prefix) as running,
        aiomqtt.Client(
            broker.host,
            broker.port,
            username=broker.username,
            password=broker.password,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as subscriber,
    ):
        venue.url = running.url
        await mqtt_state_until(running.gateway, lambda state: state["connected"], "connected")
        await subscriber.subscribe(f"{prefix}/md/{SYMBOL}/trades")
        await list_the_market(venue)
        await alice_buys_issuer_sells(venue)
        message = await asyncio.wait_for(anext(aiomqtt_messages(subscriber)), WAIT_S)
        assert json.loads(bytes(message.payload))["channel"] == "trades"


@pytest.mark.asyncio
async def test_a_broker_refusing_the_user_is_a_warning_and_not_connected(
    tmp_path: Path, private_broker: PrivateBroker, caplog: pytest.LogCaptureFixture
) -> None:
    broker = private_broker
    venue = prepare_data_dir(os.fspath(tmp_path))
    for username, password in ((broker.username, "wrong-password"), (None, None)):
        caplog.clear()
        url = mqtt_url(broker, username, password)
        with caplog.at_level(logging.INFO, logger="ipx.mqtt"):
            async with run_server(venue.data_dir, mqtt_url=url) as running:
                state = await mqtt_state_until(
                    running.gateway, lambda state: state["connect_failures"] >= 1, "refused"
                )
                assert not state["connected"]
        refusals = [
            record
            for record in caplog.records
            if record.name == "ipx.mqtt" and "not authorized" in record.getMessage().lower()
        ]
        assert refusals, [record.getMessage() for record in caplog.records]
        assert all(record.levelno == logging.WARNING for record in refusals)
        assert not any("wrong-password" in record.getMessage() for record in caplog.records)


def test_ipx_serve_never_prints_nor_logs_the_mqtt_password(
    tmp_path: Path, private_broker: PrivateBroker
) -> None:
    broker = private_broker
    secrets_shown = (broker.password, urllib.parse.quote(broker.password, safe=""))
    log_path = tmp_path / "serve.log"
    url = mqtt_url(broker, broker.username, broker.password)
    with log_path.open("w") as log_file:
        process, lines, ws_url = start_ipx_serve(
            tmp_path / "exchange", "--mqtt-url", url, "--log-format", "text", stderr=log_file
        )
        try:
            readyz = ws_url.replace("ws://", "http://") + "readyz?verbose"
            deadline = time.monotonic() + WAIT_S
            while not json.loads(http_get(readyz))["integrations"]["mqtt"]["connected"]:
                assert time.monotonic() < deadline, "ipx serve never connected to the broker"
                time.sleep(0.05)
        finally:
            stop_ipx_serve(process)
        assert process.stdout is not None
        printed = "\n".join(lines) + process.stdout.read()
    logged = log_path.read_text()
    assert "MQTT connected" in logged  # The log was read, and it says so.
    for shown in secrets_shown:
        assert shown not in printed and shown not in logged
    # A malformed URL is refused (exit 2) without echoing it.
    userinfo = url.removeprefix("mqtt://").partition("@")[0]
    malformed = (
        f"http://{userinfo}@{broker.host}:{broker.port}",  # Not the scheme.
        f"mqtt://{userinfo}@:{broker.port}",  # No host.
        f"mqtt://{userinfo}@{broker.host}:port",  # No port number.
    )
    for bad in malformed:
        command = ["serve", "--data-dir", str(tmp_path / "other"), "--port", "0", "--mqtt-url", bad]
        refused = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *command],
            capture_output=True,
            text=True,
            timeout=IPX_SERVE_TIMEOUT_S,
        )
        assert refused.returncode == 2, (bad, refused.stderr)
        assert "--mqtt-url" in refused.stderr
        for shown in secrets_shown:
            assert shown not in refused.stdout + refused.stderr, refused.stderr


@pytest.mark.asyncio
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


@pytest.mark.asyncio
async def test_restarts_of_one_exchange_leave_one_retained_publisher_state(
    tmp_path: Path, private_broker: PrivateBroker
) -> None:
    # Its MQTT id was the process id: every restart left one more retained state topic on the
    # broker, for ever. It is now the same for every run of one data dir.
    broker = private_broker
    url = mqtt_url(broker, broker.username, broker.password)
    for _ in range(2):
        process, _, ws_url = await asyncio.to_thread(
            start_ipx_serve, tmp_path / "exchange", "--mqtt-url", url
        )
        try:
            readyz = ws_url.replace("ws://", "http://") + "readyz?verbose"
            deadline = time.monotonic() + WAIT_S
            while not json.loads(await asyncio.to_thread(http_get, readyz))["integrations"]["mqtt"][
                "connected"
            ]:
                assert time.monotonic() < deadline, "ipx serve never connected to the broker"
                await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(stop_ipx_serve, process)
    states: dict[str, bytes] = {}
    async with aiomqtt.Client(
        broker.host,
        broker.port,
        username=broker.username,
        password=broker.password,
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe("ipx/v1/publisher/+/state")

        async def collect() -> None:
            async for message in client.messages:
                if message.retain:
                    states[str(message.topic)] = message.payload

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(collect(), 1.0)
    assert list(states.values()) == [b"offline"], states
