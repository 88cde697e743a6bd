"""Integration: `ipx serve --mqtt-url` keeps each symbol's liquidity on a retained MQTT topic.

Rules, against the real broker (Mosquitto on 127.0.0.1:1883; a unique prefix per test):
- `{prefix}/md/{symbol}/liquidity` is retained: a subscriber that comes late finds the
  latest figures at once, as a LiquidityMessage (channel "liquidity", type "update").
- It follows the book: after a bid at 99.90 and an ask at 100.10 it shows the 0.20 spread
  (20 bps) and no flag; the figures are refreshed about once a second even when nothing moves.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import pytest

from gateway import liquidity
from gateway.server import run_server
from tests.gateway.conftest import (
    SYMBOL,
    alice_buys_issuer_sells,
    list_the_market,
    prepare_data_dir,
)

pytestmark = pytest.mark.asyncio
WAIT_S = 10.0


async def _next_liquidity(
    subscriber: aiomqtt.Client,
    done: Callable[[liquidity.LiquidityMessage], bool],
    timeout_s: float = WAIT_S,
) -> tuple[aiomqtt.Message, liquidity.LiquidityMessage]:
    # The next messages until one satisfies done (bounded by timeout_s).
    deadline = time.monotonic() + timeout_s

    async def scan() -> tuple[aiomqtt.Message, liquidity.LiquidityMessage]:
        async for message in subscriber.messages:
            figures = liquidity.decode(bytes(message.payload))
            if done(figures):
                return message, figures
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(scan(), max(0.0, deadline - time.monotonic()))


async def test_liquidity_is_retained_per_symbol_and_follows_the_book(
    tmp_path: Path, mqtt_service: tuple[str, int]
) -> None:
    host, port = mqtt_service
    prefix = f"ipx-test-{secrets.token_hex(4)}/v1"
    topic = f"{prefix}/md/{SYMBOL}/liquidity"
    venue = prepare_data_dir(os.fspath(tmp_path))
    async with run_server(
        venue.data_dir, mqtt_url=f"mqtt://{host}:{port}", mqtt_prefix=prefix
    ) as running:
        venue.url = running.url
        await list_the_market(venue)
        await alice_buys_issuer_sells(venue, (5, "99.90"), (7, "100.10"))
        async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as subscriber:
            await subscriber.subscribe(topic)
            # A late subscriber: the retained figures come first, then the refreshes.
            message, figures = await _next_liquidity(subscriber, lambda m: True)
            assert message.retain and figures.symbol == SYMBOL and figures.type == "update"
            _, quoted = await _next_liquidity(subscriber, lambda m: m.best_ask is not None)
            assert (quoted.best_bid, quoted.best_ask, quoted.mid) == ("99.90", "100.10", "100.00")
            assert (quoted.quoted_spread, quoted.quoted_spread_bps) == ("0.20", 20)
            assert quoted.flags == []
            _, refreshed = await _next_liquidity(subscriber, lambda m: m.seq > quoted.seq)
            assert refreshed.quoted_spread_bps == 20 and refreshed.ts_ns > quoted.ts_ns
