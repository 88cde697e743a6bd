"""No frame a client can send stops the exchange: seeded random requests against a real server.

Replay a run with IPX_TEST_SEED=<seed> (printed); IPX_FUZZ_FRAMES sets how many frames.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest
from websockets.asyncio.client import connect

from gateway import protocol
from gateway.server import RunningServer
from tests.gateway.conftest import PATENT, SYMBOL, Venue

pytestmark = pytest.mark.asyncio

FRAMES = int(os.environ.get("IPX_FUZZ_FRAMES", "600"))
STATUSES = {200, 400, 401, 403, 404, 409, 422, 503}

# Values each field may take: plausible, edge and hostile ones.
VALUES: list[Any] = [
    0, 1, -1, 7, 10**9, 10**9 + 1, 2**63, 10**40, 1.5, True, None, "", "x" * 300, [], {},
    "99.00", "99.10", "99.01", "0", "0.0", "1e3", "NaN", "-5", "100000000000000000000",
    "buy", "sell", "limit", "market", "gtc", "ioc", "fok", "gtd", "day", "expire_both",
    "investor", "operator", SYMBOL, PATENT, "alice", "bob", "issuer", "USD", "JPY", "2035-03-01",
    "2015-02-30",
]  # fmt: skip
FIELDS = [
    "symbol", "cl_ord_id", "side", "quantity", "price", "type", "time_in_force", "post_only",
    "stp_mode", "expire_ts_ns", "order_id", "depth", "account_id", "currency", "amount", "role",
    "token", "patent_id", "title", "tick_size", "reference_price", "total_units",
]  # fmt: skip


def _frame(rng: random.Random) -> str:
    method = rng.choice([*protocol.METHODS, "order.nope", ""])
    params: dict[str, Any] = {}
    for _ in range(rng.randrange(0, 7)):
        params[rng.choice(FIELDS)] = rng.choice(VALUES)
    if rng.random() < 0.35:
        # Many plausible orders, so the core itself is exercised too.
        method = "order.place"
        params = {
            "symbol": SYMBOL,
            "cl_ord_id": f"z-{rng.randrange(1_000)}",  # Now and then a duplicate.
            "side": rng.choice(["buy", "sell"]),
            "quantity": rng.choice([1, 5, 10, 10**9 + 1]),
            "price": rng.choice(["95.00", "99.90", "100.00", "100.10", "104.30", "99.95"]),
            "time_in_force": rng.choice(["gtc", "ioc", "fok", "day"]),
        }
    return json.dumps({"id": str(rng.randrange(10**6)), "method": method, "params": params})


async def test_random_frames_get_answers_and_the_exchange_keeps_running(
    market: Venue, server: RunningServer
) -> None:
    seed = int(os.environ.get("IPX_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (replay with IPX_TEST_SEED={seed})")
    rng = random.Random(seed)
    statuses: dict[int, int] = {}
    for account in ("op", "alice"):
        headers = {"Authorization": f"Bearer {market.tokens[account]}"}
        async with connect(market.url, additional_headers=headers) as connection:
            for _ in range(FRAMES // 2):
                frame = _frame(rng)
                await connection.send(frame)
                answer = json.loads(await connection.recv())
                while "channel" in answer:  # An execution report (executions.subscribe).
                    answer = json.loads(await connection.recv())
                assert answer["status"] in STATUSES, (frame, answer)
                assert answer["id"] == json.loads(frame)["id"]
                statuses[answer["status"]] = statuses.get(answer["status"], 0) + 1
    print(f"answers by status: {dict(sorted(statuses.items()))}")
    assert statuses.get(200, 0) > FRAMES // 100, "too few requests got through to test anything"
    assert server.gateway.sequencer.running
