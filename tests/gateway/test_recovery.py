"""Nothing acknowledged is ever lost: restarts, SIGTERM and SIGKILL of a real server process.

And nothing that was not written is ever shown: after a journal failure no query, push or
MQTT message (periodic snapshot, or a reconnection's) shows the batch that failed; the MQTT
publisher says "offline" and clears its retained market data.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiomqtt
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from exchange.commands import Role, command_decoder
from exchange.core import Exchange
from exchange.events import OrderAccepted, TradeExecuted
from gateway import sessions
from gateway.admin_cli import create_account
from gateway.client import ClientError, IpxClient, RequestFailed
from gateway.market_data import BookL2, Ticker, decode
from gateway.mqtt_publisher import MqttPublisher
from gateway.serve_cli import EXIT_SNAPSHOT_FAILED
from gateway.server import HEARTBEAT_INTERVAL_S, RunningServer, run_server
from ledger.file_store import SNAPSHOT_DIR, FileJournal
from tests.gateway.conftest import SYMBOL, Venue, http_get, list_the_market, scrape_metrics
from tests.integrations.conftest import MQTT_HOST, MQTT_PORT, require_service
from tests.integrations.test_mqtt_publisher import Proxy, wait_until, withdrawn

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 20.0

pytestmark = pytest.mark.asyncio


class ServerProcess:
    """`ipx serve` in a child process, on a free port."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url

    @classmethod
    async def start(cls, data_dir: str, stderr: IO[bytes] | None = None) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", "--data-dir", data_dir, "--port", "0",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL if stderr is None else stderr,
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
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        placed = await alice.place(SYMBOL, "buy", 7, "98.30", cl_ord_id="keep-me")
        await alice.close()
    assert os.listdir(os.path.join(venue.data_dir, SNAPSHOT_DIR))  # Written at shutdown.
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
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


async def test_a_torn_tail_cut_at_the_start_is_logged_and_shown_in_readyz(
    venue: Venue, caplog: pytest.LogCaptureFixture
) -> None:
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        await list_the_market(venue)
        last_seq = running.gateway.sequencer.journal.last_seq
    last_segment = max((Path(venue.data_dir) / "journal").glob("*.seg"))
    with last_segment.open("ab") as file:
        file.write(b"\x2a\x01\x00")  # A frame header that power loss cut short.
    with caplog.at_level("WARNING", logger="ipx"):
        async with run_server(venue.data_dir) as running:
            venue.url = running.url
            body = await asyncio.to_thread(http_get, f"{running.http_url}readyz?verbose")
            recovery = json.loads(body)["recovery"]
    assert recovery["torn_bytes_truncated"] == 3 and recovery["torn_seq"] == last_seq + 1
    assert "header cut short" in recovery["torn_reason"]
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert any(f"cut a torn tail of 3 bytes at seq {last_seq + 1}" in line for line in warnings)


async def _first_book_update(venue: Venue, price: str) -> dict[str, Any]:
    # Subscribe to book.l2, rest an order, return the update it makes.
    watcher, alice = await venue.client("bob"), await venue.client("alice")
    try:
        await watcher.request("md.subscribe", {"symbol": SYMBOL, "channels": ["book.l2"]})
        snapshot = await asyncio.wait_for(watcher.pushes.get(), START_TIMEOUT_S)
        assert snapshot["type"] == "snapshot"
        await alice.place(SYMBOL, "buy", 1, price)
        update: dict[str, Any] = await asyncio.wait_for(watcher.pushes.get(), START_TIMEOUT_S)
        assert update["type"] == "update"
        return update
    finally:
        await watcher.close()
        await alice.close()


async def test_public_seqs_after_a_restart_show_a_gap_to_a_client_that_kept_its_own(
    venue: Venue,
) -> None:
    # The channels' state is not in the journal: a new run starts them afresh. A client that
    # kept its seq must see a gap (and resubscribe), never an update it takes for one it had.
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        await list_the_market(venue)
        before = await _first_book_update(venue, "98.00")
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        after = await _first_book_update(venue, "97.00")
    assert after["prev_seq"] != before["seq"] and after["seq"] > before["seq"]


async def test_after_a_journal_failure_nothing_that_was_not_written_is_shown(
    venue: Venue,
) -> None:
    # The batch whose append failed is in memory but not on disk: the restart will not have
    # it. Its sender hears "unknown", and no query may then show it as if it had happened.
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        watcher = await venue.client("bob")
        try:
            await watcher.request("subscribe", {"channel": "book.l2", "symbol": SYMBOL})
            await alice.place(SYMBOL, "buy", 5, "98.00", cl_ord_id="written")
            durable_seq = running.gateway.sequencer.journal.last_seq
            running.gateway.sequencer.journal.close()  # The next append fails, as a dead disk.
            order = {"symbol": SYMBOL, "cl_ord_id": "not-written", "side": "buy", "quantity": 7,
                     "price": "99.00"}  # fmt: skip
            with pytest.raises(RequestFailed) as unknown:
                await alice.request("order.place", order)
            assert unknown.value.status == 500
            asks: list[tuple[str, dict[str, object]]] = [
                ("order.status", {"cl_ord_id": "not-written"}),
                ("order.status", {"cl_ord_id": "written"}),
                ("orders.open", {}),
                ("book.snapshot", {"symbol": SYMBOL}),
                ("account.balances", {}),
                ("subscribe", {"channel": "book.l2", "symbol": SYMBOL}),
            ]
            for method, params in asks:
                with pytest.raises(RequestFailed) as refused:
                    await alice.request(method, params)
                assert (refused.value.status, refused.value.code) == (503, "UNAVAILABLE"), method
                assert "restart" in refused.value.message
            # Nor do pushes, health or a new session: no heartbeat carries the lost batch's seq.
            with pytest.raises(urllib.error.HTTPError) as not_ready:  # 503: not ready.
                await asyncio.to_thread(http_get, running.http_url + "readyz?verbose")
            readiness = json.loads(not_ready.value.read())
            assert readiness["journal"] == {"writable": False, "last_seq": durable_seq}
            metrics = await asyncio.to_thread(scrape_metrics, running.http_url + "metrics")
            assert metrics[("ipx_journal_seq", ())] == durable_seq
            for bearer in (True, False):  # No new session: its upgrade is refused.
                with pytest.raises(InvalidStatus) as upgrade:
                    await venue.client("alice", bearer=bearer)
                assert upgrade.value.response.status_code == 503
            while not watcher.pushes.empty():
                watcher.pushes.get_nowait()
            await asyncio.sleep(2.5 * HEARTBEAT_INTERVAL_S)
            assert watcher.pushes.empty()
        finally:
            await alice.close()
            await watcher.close()
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        alice = await venue.client("alice")
        try:
            assert (await alice.status(cl_ord_id="written"))["status"] == "open"
            with pytest.raises(RequestFailed):
                await alice.status(cl_ord_id="not-written")
        finally:
            await alice.close()


def _mqtt_publisher(running: RunningServer) -> MqttPublisher:
    (feed,) = running.gateway.publishers
    publisher = getattr(feed, "publisher", None)
    assert isinstance(publisher, MqttPublisher)
    return publisher


def _bids_shown(message: aiomqtt.Message) -> list[str]:
    # The bid prices an L2 or bbo message shows (none for the other topics).
    if not message.payload or not str(message.topic).endswith(
        ("/l2/snapshot", "/l2/delta", "/bbo")
    ):
        return []
    decoded = decode(bytes(message.payload))
    if isinstance(decoded, BookL2):
        return [price for price, _ in decoded.bids]
    if isinstance(decoded, Ticker) and decoded.best_bid is not None:
        return [decoded.best_bid]
    return []


async def test_after_a_journal_failure_mqtt_publishes_nothing_that_was_not_written(
    venue: Venue,
) -> None:
    # The same failure with MQTT on: its snapshots read MarketData and the exchange, which
    # hold the lost batch; neither a periodic snapshot nor a reconnection's may show it.
    require_service("the MQTT broker", MQTT_HOST, MQTT_PORT)
    proxy = Proxy(MQTT_HOST, MQTT_PORT)  # Cut after the failure: the publisher reconnects.
    await proxy.open()
    prefix = f"ipx-test-{secrets.token_hex(4)}/v1"
    seen: list[aiomqtt.Message] = []

    async def watch(client: aiomqtt.Client) -> None:
        async for message in client.messages:
            seen.append(message)

    mqtt_url = f"mqtt://127.0.0.1:{proxy.port}"
    try:
        async with (
            run_server(venue.data_dir, mqtt_url=mqtt_url, mqtt_prefix=prefix) as running,
            aiomqtt.Client(MQTT_HOST, MQTT_PORT, protocol=aiomqtt.ProtocolVersion.V5) as client,
        ):
            venue.url = running.url
            publisher = _mqtt_publisher(running)
            await list_the_market(venue)
            alice = await venue.client("alice")
            try:
                await alice.place(SYMBOL, "buy", 5, "98.00", cl_ord_id="written")
                await client.subscribe(f"{prefix}/#")
                watcher = asyncio.create_task(watch(client))
                running.gateway.sequencer.journal.close()  # The next append fails.
                order = {"symbol": SYMBOL, "cl_ord_id": "not-written", "side": "buy",
                         "quantity": 7, "price": "99.00"}  # fmt: skip
                with pytest.raises(RequestFailed):
                    await alice.request("order.place", order)
                await asyncio.sleep(2.5)  # Past two snapshot intervals (1 s).
                await proxy.cut()
                await wait_until(lambda: not publisher.connected, "the publisher to see the cut")
                await proxy.open()  # The same port again: it reconnects.
                await wait_until(lambda: publisher.stats.connections >= 2, "the reconnection")
                await asyncio.sleep(2.5)
            finally:
                await alice.close()
            # A new subscriber finds the publisher "offline" and no market data at all.
            await withdrawn(MQTT_HOST, MQTT_PORT, prefix)
            watcher.cancel()
            shown = [(str(m.topic), price) for m in seen for price in _bids_shown(m)]
            assert shown and all(price == "98.00" for _, price in shown), shown
    finally:
        with contextlib.suppress(AssertionError):
            await proxy.cut()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_sigterm_drains_closes_with_1001_and_exits_cleanly(
    venue: Venue, signum: signal.Signals
) -> None:
    # SIGINT (Ctrl-C in a terminal) stops the exchange as cleanly as SIGTERM does.
    server = await ServerProcess.start(venue.data_dir)
    venue.url = server.url
    await list_the_market(venue)
    alice = await venue.client("alice")
    await alice.place(SYMBOL, "buy", 3, "99.00", cl_ord_id="before-term")
    code, output = await server.stop(signum)
    assert code == 0
    assert "stopped cleanly" in output
    await asyncio.wait_for(alice.connection.wait_closed(), 5.0)
    assert alice.connection.close_code == 1001
    await alice.close()
    result = _verify(venue.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_stop_whose_snapshot_fails_says_so_and_exits_3_with_the_journal_complete(
    venue: Venue, tmp_path: Path
) -> None:
    # Not "stopped cleanly" and 0: an operator (or a supervisor) must learn that the next start
    # replays the journal, and that an upgrade should not start from this stop.
    said_path = tmp_path / "serve-stderr.txt"
    snapshots = Path(venue.data_dir) / SNAPSHOT_DIR
    with said_path.open("wb") as said:
        server = await ServerProcess.start(venue.data_dir, said)
        venue.url = server.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        await alice.place(SYMBOL, "buy", 3, "99.00", cl_ord_id="before-term")
        await alice.close()
        # The disk refuses the snapshot: its directory is now a file (ENOTDIR, even for root).
        shutil.rmtree(snapshots, ignore_errors=True)
        snapshots.write_bytes(b"")
        code, output = await server.stop(signal.SIGTERM)
    assert code == EXIT_SNAPSHOT_FAILED, output
    assert "stopped cleanly" not in output
    text = said_path.read_text()
    assert "shutdown snapshot was not written" in text and "journal holds every command" in text
    snapshots.unlink()
    snapshots.mkdir()
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        recovery = running.gateway.recovery
        assert recovery is not None and recovery.snapshot_seq == 0  # All from the journal.
        alice = await venue.client("alice")
        try:
            assert (await alice.status(cl_ord_id="before-term"))["status"] == "open"
        finally:
            await alice.close()
    result = _verify(venue.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr


async def _protected_orders(venue: Venue) -> list[IpxClient]:
    """Alice's orders from three sessions: one that asks the end of the session to cancel
    what it placed (a1, a2), one that asks nothing (kept), and bob's, whose session asks for
    every order of his account (b1, and b2 from a session of his that asks nothing)."""
    careful, casual = await venue.client("alice"), await venue.client("alice")
    bob, bobs_other = await venue.client("bob"), await venue.client("bob")
    await careful.request("session.cancel_on_disconnect", {"enabled": True})
    await bob.cancel_on_disconnect("account")  # The client's helper for the same request.
    await careful.place(SYMBOL, "buy", 1, "98.00", cl_ord_id="a1")
    await careful.place(SYMBOL, "buy", 2, "97.50", cl_ord_id="a2")
    await casual.place(SYMBOL, "buy", 3, "97.00", cl_ord_id="kept")
    await bob.place(SYMBOL, "buy", 4, "96.50", cl_ord_id="b1")
    await bobs_other.place(SYMBOL, "buy", 5, "96.00", cl_ord_id="b2")
    return [careful, casual, bob, bobs_other]


async def _only_unprotected_orders_are_open(venue: Venue, server_url: str) -> None:
    venue.url = server_url
    alice, bob = await venue.client("alice"), await venue.client("bob")
    try:
        open_ids = [order["cl_ord_id"] for order in (await alice.request("orders.open"))["orders"]]
        assert open_ids == ["kept"]
        assert (await bob.request("orders.open"))["orders"] == []
        for cl_ord_id in ("a1", "a2"):
            assert (await alice.status(cl_ord_id=cl_ord_id))["status"] == "canceled"
        for cl_ord_id in ("b1", "b2"):
            assert (await bob.status(cl_ord_id=cl_ord_id))["status"] == "canceled"
    finally:
        await alice.close()
        await bob.close()


async def test_cancel_on_disconnect_outlives_a_clean_restart(venue: Venue) -> None:
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        await list_the_market(venue)
        clients = await _protected_orders(venue)
        # The server stops with every session connected: none could be ended then.
    for client in clients:
        await client.close()
    async with run_server(venue.data_dir) as running:
        assert running.gateway.recovery is not None
        assert running.gateway.recovery.sessions_ended == 4  # Every session that placed.
        assert running.gateway.state.sessions == {}
        await _only_unprotected_orders_are_open(venue, running.url)
    assert _verify(venue.data_dir).returncode == 0


async def test_cancel_on_disconnect_outlives_a_sigkill(venue: Venue) -> None:
    server = await ServerProcess.start(venue.data_dir)
    venue.url = server.url
    await list_the_market(venue)
    clients = await _protected_orders(venue)
    server.process.kill()  # No session ends: no EndSession can be journaled.
    await asyncio.wait_for(server.process.wait(), START_TIMEOUT_S)
    for client in clients:
        await client.close()
    restarted = await ServerProcess.start(venue.data_dir)
    try:
        await _only_unprotected_orders_are_open(venue, restarted.url)
    finally:
        code, _ = await restarted.stop(signal.SIGTERM)
    assert code == 0
    assert _verify(venue.data_dir).returncode == 0


KILL_AT_ACKS = 21_000  # SIGKILL once this many orders are acknowledged; the load goes on.
ACKS_MIN = 20_000
LOAD_DEADLINE_S = 25.0
WORKERS_PER_CLIENT = 24  # Requests in flight per connection (the server allows 64).
BUYERS = [f"buyer{index}" for index in range(5)]
SELLERS = [f"seller{index}" for index in range(5)]
SELLER_UNITS = 10_000


@dataclass
class Acks:
    orders: dict[tuple[str, str], int] = field(default_factory=dict)  # (account, cl_ord_id) -> id
    trades: list[int] = field(default_factory=list)  # trade ids of the fills in the acks


async def _worker(
    client: IpxClient, account: str, side: str, acks: Acks, rng: random.Random, stop: asyncio.Event
) -> None:
    # Place orders until the connection dies; remember every one the server acknowledged.
    while not stop.is_set():
        cl_ord_id = client.next_cl_ord_id()
        try:
            result = await client.request(
                "order.place",
                {"symbol": SYMBOL, "cl_ord_id": cl_ord_id, "side": side, "quantity": 1,
                 "price": _price(rng)},
            )  # fmt: skip
        except RequestFailed as error:  # An answer, but not an order to look for.
            if error.retry_after_ms is not None:
                await asyncio.sleep(error.retry_after_ms / 1000)
            continue
        except (ClientError, ConnectionClosed):
            return
        acks.orders[(account, cl_ord_id)] = result["order_id"]
        acks.trades.extend(fill["trade_id"] for fill in result["fills"])


def _price(rng: random.Random) -> str:
    # 97.00 to 103.00 in ticks of 0.10: buyers and sellers cross often. Integer arithmetic.
    ticks = rng.randrange(970, 1031)
    return f"{ticks // 10}.{ticks % 10}0"


async def _fund_the_load_accounts(venue: Venue) -> None:
    # Buyers get cash; sellers get cash and SELLER_UNITS units each, bought from the issuer.
    op, issuer = await venue.client("op"), await venue.client("issuer")
    try:
        for account in BUYERS + SELLERS:
            await op.request(
                "op.deposit", {"account_id": account, "currency": "USD", "amount": "10000000"}
            )
        for account in SELLERS:
            await issuer.place(SYMBOL, "sell", SELLER_UNITS, "100.00")
            seller = await venue.client(account)
            bought = await seller.place(SYMBOL, "buy", SELLER_UNITS, "100.00")
            await seller.close()
            assert bought["status"] == "filled", bought
    finally:
        await op.close()
        await issuer.close()


def _journal_counts(data_dir: str) -> tuple[Counter[int], Counter[int]]:
    """Replay the journal: how many times each order id was accepted and each trade executed."""
    accepted: Counter[int] = Counter()
    traded: Counter[int] = Counter()
    exchange = Exchange()
    journal = FileJournal.open(data_dir)
    try:
        for record in journal.records(1):
            outcome = exchange.handle(command_decoder.decode(record.command), record.ts_ns)
            for event in outcome.events:
                if isinstance(event, OrderAccepted):
                    accepted[event.order_id] += 1
                elif isinstance(event, TradeExecuted):
                    traded[event.trade_id] += 1
    finally:
        journal.close()
    return accepted, traded


async def _check_statuses(venue: Venue, acks: Acks) -> None:
    # Every acknowledged order, asked by its cl_ord_id of the recovered server, pipelined.
    for account in BUYERS + SELLERS:
        mine = [(cl, order_id) for (owner, cl), order_id in acks.orders.items() if owner == account]
        client = await venue.client(account)
        try:
            for start in range(0, len(mine), 48):
                chunk = mine[start : start + 48]
                answers = await asyncio.gather(*(client.status(cl_ord_id=cl) for cl, _ in chunk))
                for (cl_ord_id, order_id), answer in zip(chunk, answers, strict=True):
                    assert answer["order_id"] == order_id, (account, cl_ord_id, answer)
        finally:
            await client.close()


@pytest.mark.slow
async def test_sigkill_under_load_loses_no_acknowledged_order_or_trade(venue: Venue) -> None:
    seed = int(os.environ.get("IPX_TEST_SEED", random.randrange(1 << 30)))
    print(f"seed {seed} (replay with IPX_TEST_SEED={seed})")
    for account in BUYERS + SELLERS:
        create_account(venue.data_dir, account, Role.INVESTOR)
        venue.tokens[account], _ = sessions.issue_token(venue.data_dir, account)
    server = await ServerProcess.start(venue.data_dir)
    venue.url = server.url
    await list_the_market(venue)
    await _fund_the_load_accounts(venue)
    clients = {account: await venue.client(account) for account in BUYERS + SELLERS}
    acks, stop, rng = Acks(), asyncio.Event(), random.Random(seed)
    sides = {account: "buy" if account in BUYERS else "sell" for account in clients}
    workers = [
        asyncio.create_task(
            _worker(client, account, sides[account], acks, random.Random(rng.random()), stop)
        )
        for account, client in clients.items()
        for _ in range(WORKERS_PER_CLIENT)
    ]
    started = time.monotonic()
    while len(acks.orders) < KILL_AT_ACKS and time.monotonic() - started < LOAD_DEADLINE_S:
        await asyncio.sleep(0.01)
    server.process.kill()  # SIGKILL mid-load: no drain, no snapshot, maybe a torn frame.
    await server.process.wait()
    stop.set()
    await asyncio.wait_for(asyncio.gather(*workers), 30.0)
    for client in clients.values():
        await client.close()
    elapsed = time.monotonic() - started
    total = len(acks.orders)
    print(f"{total} orders and {len(acks.trades)} taker fills acknowledged in {elapsed:.1f} s")
    assert total >= ACKS_MIN, f"only {total} orders were acknowledged before the kill"
    async with run_server(venue.data_dir) as running:
        venue.url = running.url
        await _check_statuses(venue, acks)
    accepted, traded = _journal_counts(venue.data_dir)
    lost = [order_id for order_id in acks.orders.values() if accepted[order_id] != 1]
    lost_trades = [trade_id for trade_id in acks.trades if traded[trade_id] != 1]
    print(f"after recovery: {len(lost)} orders and {len(lost_trades)} trades lost or doubled")
    assert not lost and not lost_trades
    assert len(set(acks.trades)) == len(acks.trades)  # No trade acknowledged twice either.
    assert all(count == 1 for count in traded.values())
    result = _verify(venue.data_dir)
    assert result.returncode == 0, result.stdout + result.stderr
