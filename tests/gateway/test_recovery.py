"""Nothing acknowledged is ever lost: restarts, SIGTERM and SIGKILL of a real server process."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from gateway.client import ClientError, IpxClient, RequestFailed
from gateway.server import run_server
from ledger.file_store import SNAPSHOT_DIR
from tests.gateway.conftest import SYMBOL, Venue, list_the_market

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0
LOAD_SECONDS = 1.5
LOAD_ORDERS_MAX = 2_000

pytestmark = pytest.mark.asyncio


class ServerProcess:
    """`ipx serve` in a child process, on a free port."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    async def start(cls, data_dir: str) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", "--data-dir", data_dir, "--port", "0",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        text = line.decode()
        assert " at ws://" in text, text
        url = text.split(" at ", 1)[1].split(" ", 1)[0]
        return cls(process, url)

    async def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), START_TIMEOUT_S)
        code = await asyncio.wait_for(self.process.wait(), START_TIMEOUT_S)
        return code, rest.decode()


def _verify(data_dir: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ledger", "verify", data_dir],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


async def test_an_acknowledged_order_survives_a_restart(venue: Venue) -> None:
    async with run_server(venue.data_dir) as running:
        venue.url = f"ws://{running.host}:{running.port}/"
        await list_the_market(venue)
        alice = await venue.client("alice")
        placed = await alice.place(SYMBOL, "buy", 7, "98.30", cl_ord_id="keep-me")
        await alice.close()
    assert os.listdir(os.path.join(venue.data_dir, SNAPSHOT_DIR))  # Written at shutdown.
    async with run_server(venue.data_dir) as running:
        venue.url = f"ws://{running.host}:{running.port}/"
        alice = await venue.client("alice")
        try:
            assert await alice.status(cl_ord_id="keep-me") == {
                key: placed[key] for key in placed if key != "fills"
            }
            book = await alice.request("book.snapshot", {"symbol": SYMBOL})
            assert book["bids"] == [["98.30", 7]]
        finally:
            await alice.close()
    assert _verify(venue.data_dir).returncode == 0


async def test_sigterm_drains_closes_with_1001_and_exits_cleanly(venue: Venue) -> None:
    server = await ServerProcess.start(venue.data_dir)
    venue.url = server.url
    await list_the_market(venue)
    alice = await venue.client("alice")
    await alice.place(SYMBOL, "buy", 3, "99.00", cl_ord_id="before-term")
    code, output = await server.stop(signal.SIGTERM)
    assert code == 0
    assert "stopped cleanly" in output
    await asyncio.wait_for(alice.connection.wait_closed(), 5.0)
    assert alice.connection.close_code == 1001
    await alice.close()
    result = _verify(venue.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr


async def _load(client: IpxClient, side: str, acked: dict[str, int], seed: int) -> None:
    # Place orders until the connection dies; remember every one the server acknowledged.
    rng = random.Random(seed)
    deadline = time.monotonic() + 2 * LOAD_SECONDS + 5.0
    while time.monotonic() < deadline and len(acked) < LOAD_ORDERS_MAX:
        cl_ord_id = client.next_cl_ord_id()
        price = _price(rng)
        try:
            result = await client.request(
                "order.place",
                {"symbol": SYMBOL, "cl_ord_id": cl_ord_id, "side": side, "quantity": 1,
                 "price": price},
            )  # fmt: skip
        except RequestFailed:
            continue  # A business rejection is an answer too, but not an order to look for.
        except (ClientError, ConnectionClosed):
            return
        acked[cl_ord_id] = result["order_id"]


def _price(rng: random.Random) -> str:
    # 97.00 to 103.00 in ticks of 0.10: buyers and sellers cross often. Integer arithmetic.
    ticks = rng.randrange(970, 1031)
    return f"{ticks // 10}.{ticks % 10}0"


@pytest.mark.slow
async def test_sigkill_under_load_loses_no_acknowledged_order(venue: Venue) -> None:
    seed = int(os.environ.get("IPX_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (replay with IPX_TEST_SEED={seed})")
    server = await ServerProcess.start(venue.data_dir)
    venue.url = server.url
    await list_the_market(venue)
    clients = {name: await venue.client(name) for name in ("alice", "bob", "issuer")}
    acked: dict[str, dict[str, int]] = {name: {} for name in clients}
    sides = {"alice": "buy", "bob": "buy", "issuer": "sell"}
    loads = [
        asyncio.create_task(_load(client, sides[name], acked[name], seed + index))
        for index, (name, client) in enumerate(clients.items())
    ]
    await asyncio.sleep(LOAD_SECONDS)
    server.process.kill()  # SIGKILL: no drain, no snapshot, maybe a torn frame.
    await server.process.wait()
    await asyncio.wait_for(asyncio.gather(*loads), 30.0)
    for client in clients.values():
        await client.close()
    total = sum(len(orders) for orders in acked.values())
    print(f"{total} orders acknowledged before the kill")
    assert total > 50, f"only {total} orders were acknowledged before the kill"
    async with run_server(venue.data_dir) as running:
        venue.url = f"ws://{running.host}:{running.port}/"
        for name, orders in acked.items():
            client = await venue.client(name)
            try:
                for cl_ord_id, order_id in orders.items():
                    status = await client.status(cl_ord_id=cl_ord_id)
                    assert status["order_id"] == order_id, (name, cl_ord_id)
            finally:
                await client.close()
    result = _verify(venue.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
