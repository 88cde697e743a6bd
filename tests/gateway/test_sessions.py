"""Who may do what: tokens, logon, and the wall between accounts.

A bearer token rides on one Authorization header: an upgrade with two is malformed (400).
A connection holds at most WRITE_BACKLOG_MAX bytes of answers not yet taken by the kernel
(built and not yet written, or written and not yet sent), plus the one answer that passed it:
past that its requests are not read, so a client that asks for large answers and never reads
them costs bounded memory, and everyone else is served meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
import struct
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode

from exchange.commands import Command, EndSession
from exchange.core import Outcome
from gateway import event_loop, sessions
from gateway.client import ClientError, IpxClient, RequestFailed
from gateway.sequencer import Overloaded
from gateway.server import IN_FLIGHT_MAX, WRITE_BACKLOG_MAX, RunningServer, Session, run_server
from tests.gateway.conftest import SYMBOL, Venue, list_the_market, raw_http
from tests.gateway.server_thread import server_thread

ROOT = Path(__file__).resolve().parents[2]

# On both loops: these hold the session rules and limits, which lean on the loop most.
pytestmark = pytest.mark.asyncio(loop_factories=list(event_loop.EVENT_LOOPS))


async def test_logon_with_a_good_token_by_header_or_by_message(market: Venue) -> None:
    for bearer in (True, False):
        alice = await market.client("alice", bearer=bearer)
        try:
            balances = await alice.request("account.balances")
            assert balances["account"] == "alice"
        finally:
            await alice.close()


async def test_a_bad_bearer_token_is_refused_at_the_upgrade(market: Venue) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await IpxClient.connect(market.url, "not-a-token")
    assert refused.value.response.status_code == 401


async def test_two_authorization_headers_are_refused_with_400_not_a_server_error(
    market: Venue, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Which of two tokens would the session be? Neither: the upgrade is refused as malformed,
    # for anyone, before any token is looked up; nothing is logged as a server error.
    token = market.tokens["alice"]
    for second in (token, "not-a-token"):
        request = (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\nAuthorization: Bearer {second}\r\n\r\n"
        ).encode()
        status, answer = await asyncio.to_thread(raw_http, server.port, request)
        assert status == 400, answer[:200]
        assert answer.endswith(b"send one Authorization header, not 2\n")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]
    alice = await market.client("alice")  # One header is still a logon.
    await alice.close()


async def test_a_bad_logon_token_gets_401_and_the_connection_closes(market: Venue) -> None:
    async with connect(market.url) as connection:
        await connection.send(
            json.dumps({"id": "1", "method": "session.logon", "params": {"token": "nope"}})
        )
        answer = json.loads(await connection.recv())
        assert answer == {
            "id": "1",
            "status": 401,
            "error": {"code": "UNAUTHORIZED", "message": "unknown or revoked token"},
        }
        with pytest.raises(ConnectionClosed):
            await connection.recv()
        assert connection.close_code == 1008


async def test_a_request_before_logon_gets_401(market: Venue) -> None:
    async with connect(market.url) as connection:
        await connection.send(json.dumps({"id": "7", "method": "orders.open", "params": {}}))
        answer = json.loads(await connection.recv())
        assert (answer["id"], answer["status"], answer["error"]["code"]) == (
            "7",
            401,
            "UNAUTHORIZED",
        )


async def test_no_logon_in_time_closes_the_connection(server: RunningServer, venue: Venue) -> None:
    async with connect(venue.url) as connection:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(connection.recv(), 5.0)  # The fixture's timeout is 1 s.
        assert connection.close_code == 1008


async def test_a_revoked_token_no_longer_logs_on(market: Venue) -> None:
    token, entry = sessions.issue_token(market.data_dir, "bob")
    client = await IpxClient.connect(market.url, token)
    await client.close()
    assert sessions.revoke_token(market.data_dir, entry.token_id) == entry
    with pytest.raises(InvalidStatus):
        await IpxClient.connect(market.url, token)


async def test_revoking_a_token_closes_the_sessions_it_opened(market: Venue) -> None:
    token, entry = sessions.issue_token(market.data_dir, "bob")
    by_header = await IpxClient.connect(market.url, token)
    by_logon = await IpxClient.connect(market.url, token, bearer=False)
    other = await market.client("bob")  # Bob's other token: its session stays open.
    try:
        await by_header.request("md.subscribe", {"symbol": SYMBOL, "channels": ["book.l2"]})
        revoke = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "tokens", "revoke",
            "--data-dir", market.data_dir, entry.token_id,
            cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(revoke.communicate(), 20.0)
        assert revoke.returncode == 0, output
        for client in (by_header, by_logon):
            await asyncio.wait_for(client.connection.wait_closed(), 5.0)
            assert client.connection.close_code == 4001
            assert client.connection.close_reason == "token revoked"
        assert (await other.request("orders.open"))["orders"] == []
        with pytest.raises(InvalidStatus):
            await IpxClient.connect(market.url, token)
    finally:
        for client in (by_header, by_logon, other):
            await client.close()


async def test_a_token_file_that_cannot_be_read_for_a_while_stops_no_revocation(
    market: Venue,
) -> None:
    # A hand edit left tokens.json half written: the last good list stays in force (logons
    # with it are answered, not failed), and once the file reads again its revocations apply.
    token, entry = sessions.issue_token(market.data_dir, "bob")
    client = await IpxClient.connect(market.url, token)
    path = Path(sessions.tokens_path(market.data_dir))
    good = path.read_text()
    try:
        path.write_text(good[: len(good) // 2])
        await asyncio.sleep(3 * sessions.TOKEN_POLL_S)  # The watcher looks, and fails.
        again = await IpxClient.connect(market.url, token)  # Not a 500: the last good list.
        await again.close()
        path.write_text(good)
        assert sessions.revoke_token(market.data_dir, entry.token_id) == entry
        await asyncio.wait_for(client.connection.wait_closed(), 5.0)
        assert client.connection.close_code == 4001
    finally:
        await client.close()


async def test_another_account_cannot_query_cancel_or_amend_my_order(market: Venue) -> None:
    alice = await market.client("alice")
    bob = await market.client("bob")
    try:
        mine = await alice.place(SYMBOL, "buy", 10, "99.00", cl_ord_id="private")
        unknown_id = mine["order_id"] + 1_000
        for method, params in [
            ("order.status", {}),
            ("order.cancel", {}),
            ("order.amend", {"price": "98.00", "quantity": 5}),
        ]:
            answers = []
            for order_id in (mine["order_id"], unknown_id):
                with pytest.raises(RequestFailed) as refused:
                    await bob.request(method, {"order_id": order_id, **params})
                answers.append((refused.value.status, refused.value.code, refused.value.message))
            # Bob cannot tell Alice's order from one that does not exist.
            assert answers[0] == answers[1] == (404, "UNKNOWN_ORDER", "no such open order")
        with pytest.raises(RequestFailed) as refused:
            await bob.status(cl_ord_id="private")  # Client ids are per account.
        assert refused.value.code == "UNKNOWN_ORDER"
        assert (await bob.request("orders.open"))["orders"] == []
        assert (await alice.status(order_id=mine["order_id"]))["status"] == "open"
    finally:
        await alice.close()
        await bob.close()


async def test_an_investor_cannot_call_operator_methods(market: Venue) -> None:
    alice = await market.client("alice")
    try:
        for method, params in [
            ("op.deposit", {"account_id": "alice", "currency": "USD", "amount": "1.00"}),
            ("op.halt", {"symbol": SYMBOL}),
            ("op.resume", {"symbol": SYMBOL}),
            ("op.open_account", {"account_id": "mallory", "role": "operator"}),
        ]:
            with pytest.raises(RequestFailed) as refused:
                await alice.request(method, params)
            assert (refused.value.status, refused.value.code) == (403, "FORBIDDEN"), method
        balances = (await alice.request("account.balances"))["balances"]
        assert balances["USD"]["available"] == "100000.00"
    finally:
        await alice.close()


async def test_an_operator_can_halt_and_orders_are_then_refused(market: Venue) -> None:
    op = await market.client("op")
    alice = await market.client("alice")
    try:
        halted = await op.request("op.halt", {"symbol": SYMBOL})
        assert halted["phase"] == "halted"
        with pytest.raises(RequestFailed) as refused:
            await alice.place(SYMBOL, "buy", 1, "99.00")
        assert (refused.value.status, refused.value.code) == (422, "TRADING_HALTED")
        with pytest.raises(RequestFailed) as refused:
            await op.place(SYMBOL, "buy", 1, "99.00")
        assert refused.value.code == "FORBIDDEN"  # Operators do not trade.
    finally:
        await alice.close()
        await op.close()


async def test_health_endpoints(market: Venue, server: RunningServer) -> None:
    base = f"http://{server.host}:{server.port}"

    def fetch(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    assert await asyncio.to_thread(fetch, "/livez") == (200, "ok\n")
    assert await asyncio.to_thread(fetch, "/readyz") == (200, "ready\n")
    # A query string changes nothing (Kubernetes probes and Prometheus jobs may add one).
    assert await asyncio.to_thread(fetch, "/livez?verbose") == (200, "ok\n")
    status, metrics = await asyncio.to_thread(fetch, "/metrics?collect=all")
    assert status == 200 and "ipx_" in metrics


async def test_orders_beyond_the_rate_get_429_but_cancels_still_pass(venue: Venue) -> None:
    async with run_server(venue.data_dir, order_rate_per_s=0.5, order_burst=5) as running:
        venue.url = running.url
        await list_the_market(venue)
        alice = await venue.client("alice")
        try:
            placed = [
                await alice.request(
                    "order.place",
                    {
                        "symbol": SYMBOL,
                        "cl_ord_id": f"r-{index}",
                        "side": "buy",
                        "quantity": 1,
                        "price": "99.00",
                    },
                )
                for index in range(5)
            ]
            with pytest.raises(RequestFailed) as refused:
                await alice.request(
                    "order.place",
                    {"symbol": SYMBOL, "cl_ord_id": "r-5", "side": "buy", "quantity": 1,
                     "price": "99.00"},
                )  # fmt: skip
            assert (refused.value.status, refused.value.code) == (429, "RATE_LIMITED")
            assert refused.value.retry_after_ms is not None
            assert 0 < refused.value.retry_after_ms <= 2_000
            with pytest.raises(RequestFailed):
                await alice.status(cl_ord_id="r-5")  # Refused at the edge: nothing was done.
            for order in placed:
                canceled = await alice.cancel(order_id=order["order_id"])
                assert canceled["status"] == "canceled"
            # Each setting of cancel-on-disconnect is journaled: it spends the same budget.
            with pytest.raises(RequestFailed) as refused:
                await alice.cancel_on_disconnect()
            assert (refused.value.status, refused.value.code) == (429, "RATE_LIMITED")
            # The budget is the account's: another connection of hers shares it, another
            # account has its own.
            second, bob = await venue.client("alice"), await venue.client("bob")
            try:
                order = {"symbol": SYMBOL, "side": "buy", "quantity": 1, "price": "98.00"}
                with pytest.raises(RequestFailed) as refused:
                    await second.request("order.place", {**order, "cl_ord_id": "other-conn"})
                assert (refused.value.status, refused.value.code) == (429, "RATE_LIMITED")
                placed_by_bob = await bob.request("order.place", {**order, "cl_ord_id": "b-1"})
                assert placed_by_bob["status"] == "open"
            finally:
                await second.close()
                await bob.close()
        finally:
            await alice.close()


async def _open_orders_once_settled(client: IpxClient, expected: int) -> list[dict[str, Any]]:
    # The cancels of a disconnect are sent when the server sees the connection end.
    for _ in range(100):
        orders: list[dict[str, Any]] = (await client.request("orders.open"))["orders"]
        if len(orders) == expected:
            break
        await asyncio.sleep(0.02)
    return orders


async def test_cancel_on_disconnect_cancels_the_orders_that_session_placed(
    market: Venue,
) -> None:
    careful = await market.client("alice")
    other = await market.client("alice")  # Another session of the same account.
    try:
        assert await careful.request("session.cancel_on_disconnect", {"enabled": True}) == {
            "cancel_on_disconnect": True,
            "scope": "session",
        }
        await careful.place(SYMBOL, "buy", 1, "98.00")
        await careful.place(SYMBOL, "buy", 1, "97.50")
        kept = await other.place(SYMBOL, "buy", 1, "97.00")
        await careful.close()
        orders = await _open_orders_once_settled(other, 1)
        assert [order["order_id"] for order in orders] == [kept["order_id"]]
    finally:
        await careful.close()
        await other.close()


async def test_cancel_on_disconnect_also_cancels_an_order_answered_after_the_end(
    market: Venue,
) -> None:
    headers = {"Authorization": f"Bearer {market.tokens['alice']}"}
    careful = await connect(market.url, additional_headers=headers)
    enable = {"enabled": True}
    await careful.send(json.dumps({"id": "c", "method": "session.cancel_on_disconnect",
                                   "params": enable}))  # fmt: skip
    assert json.loads(await careful.recv())["status"] == 200
    params = {"symbol": SYMBOL, "cl_ord_id": "in-flight", "side": "buy", "quantity": 1,
              "price": "98.00"}  # fmt: skip
    await careful.send(json.dumps({"id": "p", "method": "order.place", "params": params}))
    await careful.close()  # Without waiting for the answer.
    alice = await market.client("alice")
    try:
        assert await _open_orders_once_settled(alice, 0) == []
        status = await alice.status(cl_ord_id="in-flight")
        assert status["status"] == "canceled"
    finally:
        await alice.close()


def _burst_then_reset(port: int, token: str, orders: int) -> None:
    # A client that enables cancel-on-disconnect, writes a burst of orders in one write and
    # crashes: its socket is reset (SO_LINGER 0), no close frame.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )

        def frame(request: dict[str, Any]) -> bytes:
            data = json.dumps(request).encode()
            return Frame(Opcode.TEXT, data).serialize(mask=True, extensions=[])

        enable = {"id": "c", "method": "session.cancel_on_disconnect", "params": {"enabled": True}}
        sock.sendall(frame(enable))
        received = b""
        while b'"id":"c"' not in received:
            received += sock.recv(65536)
        sock.sendall(b"".join(
            frame({"id": str(index), "method": "order.place", "params": {
                "symbol": SYMBOL, "cl_ord_id": f"burst-{index}", "side": "buy", "quantity": 1,
                "price": "90.00"}})
            for index in range(orders)
        ))  # fmt: skip
        time.sleep(0.01)  # The server reads the burst: up to the in-flight cap, the rest held.

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_cancel_on_disconnect_cancels_a_burst_cut_by_a_reset_and_nothing_runs_after(
    venue: Venue,
) -> None:
    # Past IN_FLIGHT_MAX the rest of a burst read at once is held; the gateway handed it over
    # once the session's end had been answered, and those orders outlived its
    # cancel-on-disconnect (hundreds of a 400-order burst). The server runs in a thread of
    # its own, as in production: the burst and the reset race its loop.
    async with server_thread(venue.data_dir) as server:
        venue.url = server.url
        await list_the_market(venue)
        assert server.running is not None
        await asyncio.to_thread(_burst_then_reset, server.running.port, venue.tokens["alice"], 400)
        alice = await venue.client("alice")
        try:
            await asyncio.sleep(0.5)  # Whatever would still run after the end has run by now.
            assert await _open_orders_once_settled(alice, 0) == []
        finally:
            await alice.close()


async def test_cancel_on_disconnect_of_the_account_cancels_every_order_of_it(
    market: Venue,
) -> None:
    careful = await market.client("alice")
    other = await market.client("alice")
    try:
        params = {"enabled": True, "scope": "account"}
        assert await careful.request("session.cancel_on_disconnect", params) == {
            "cancel_on_disconnect": True,
            "scope": "account",
        }
        await careful.place(SYMBOL, "buy", 1, "98.00")
        await other.place(SYMBOL, "buy", 1, "97.00")
        await careful.close()
        assert await _open_orders_once_settled(other, 0) == []
        await other.place(SYMBOL, "buy", 1, "96.00")  # The other session has no such flag.
        await other.close()
        again = await market.client("alice")
        try:
            assert len((await again.request("orders.open"))["orders"]) == 1
        finally:
            await again.close()
    finally:
        await careful.close()
        await other.close()


async def test_the_end_of_a_session_that_meets_a_full_queue_is_retried_until_taken(
    market: Venue, server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sequencer = server.gateway.sequencer
    submit = sequencer.submit
    refusals = 0

    async def full_for_a_while(command: Command) -> Outcome:
        nonlocal refusals
        if isinstance(command, EndSession) and refusals < 8:  # ~1.5 s of a full queue.
            refusals += 1
            raise Overloaded("the command queue is full")
        return await submit(command)

    monkeypatch.setattr(sequencer, "submit", full_for_a_while)
    careful, other = await market.client("alice"), await market.client("alice")
    try:
        await careful.request("session.cancel_on_disconnect", {"enabled": True})
        await careful.place(SYMBOL, "buy", 1, "98.00")
        await careful.close()
        for _ in range(400):  # Bounded: 4 s.
            if not (await other.request("orders.open"))["orders"]:
                break
            await asyncio.sleep(0.01)
        assert (await other.request("orders.open"))["orders"] == []
        assert refusals == 8
    finally:
        await careful.close()
        await other.close()


async def test_connections_per_token_are_limited(venue: Venue) -> None:
    async with run_server(venue.data_dir, connections_per_token_max=2) as running:
        venue.url = running.url
        first, second = await venue.client("alice"), await venue.client("alice")
        for client in (first, second):
            assert (await client.request("orders.open"))["orders"] == []  # N: both serve.
        third = await venue.client("alice", bearer=False)  # N + 1: closed after logon.
        await asyncio.wait_for(third.connection.wait_closed(), 5.0)
        assert third.connection.close_code == 1008
        assert third.connection.close_reason is not None
        assert third.connection.close_reason.startswith("LIMIT_EXCEEDED")
        bob = await venue.client("bob")  # Per token: another account's,
        assert (await bob.request("orders.open"))["orders"] == []
        token, _ = sessions.issue_token(venue.data_dir, "alice")  # or alice's other one.
        desk = await IpxClient.connect(venue.url, token)
        assert (await desk.request("orders.open"))["orders"] == []
        await desk.close()
        await first.close()
        for _ in range(100):  # The server counts the closed one out when its handler ends.
            fourth = await venue.client("alice")
            try:
                await fourth.request("orders.open", timeout_s=1.0)
                break
            except ClientError:
                await asyncio.sleep(0.02)
            finally:
                await fourth.close()
        else:
            raise AssertionError("a freed connection slot was never given back")
        for client in (second, third, bob):
            await client.close()


async def test_a_client_that_does_not_read_its_answers_is_not_read_either(
    market: Venue, server: RunningServer
) -> None:
    # The server writes answers without waiting for the client to take them; when a client
    # sends and never reads, the server stops reading its requests once the unsent answers
    # pass a cap, so its memory stays bounded. Others are served meanwhile; nothing is lost.
    requests = 20_000
    bob = await market.client("bob")
    answer_bytes = len(json.dumps(await bob.request("instruments.list")))
    answered = server.gateway.metrics.registry.get_sample_value
    before = answered("ipx_ack_latency_seconds_count") or 0.0
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # The client's kernel buffer.
    sock.connect((server.host, server.port))
    headers = {"Authorization": f"Bearer {market.tokens['alice']}"}
    async with connect(
        market.url, sock=sock, compression=None, max_queue=1, additional_headers=headers
    ) as alice:
        port = sock.getsockname()[1]
        (connection,) = [c for c in server.server.connections if c.remote_address[1] == port]

        async def send_all() -> None:
            for n in range(requests):
                await alice.send(json.dumps({"id": str(n), "method": "instruments.list"}))

        sender = asyncio.create_task(send_all())
        counts: list[float] = []
        backlog_max = 0
        while len(counts) < 3 or counts[-1] != counts[-3]:  # Until it stops answering.
            await asyncio.sleep(0.1)
            counts.append((answered("ipx_ack_latency_seconds_count") or 0.0) - before)
            backlog_max = max(backlog_max, connection.transport.get_write_buffer_size())
            assert len(counts) < 100, "the server kept answering a client that does not read"
        assert counts[-1] < requests
        assert backlog_max <= WRITE_BACKLOG_MAX + IN_FLIGHT_MAX * (answer_bytes + 100)

        balances = await bob.request("account.balances", timeout_s=2.0)  # Others are served.
        assert balances["account"] == "bob"
        await bob.close()

        ids = [json.loads(await alice.recv())["id"] for _ in range(requests)]
        await sender
        assert ids == [str(n) for n in range(requests)]


LARGE_ANSWER_ORDERS = 1_000


async def test_large_answers_a_client_does_not_read_are_bounded_in_bytes_not_requests(
    market: Venue, server: RunningServer
) -> None:
    # Each orders.open answer lists 1,000 open orders (~180 KB): IN_FLIGHT_MAX of them at
    # once would be ~11 MB held for a client that never reads. What the server holds for it
    # (answers queued plus the transport's unsent bytes) stays within the byte cap plus one
    # answer, and another account is served at once meanwhile.
    placer = await market.client("alice")
    prices = [f"{90 + n % 10}.{n // 10 % 10}0" for n in range(LARGE_ANSWER_ORDERS)]
    await asyncio.gather(*(placer.place(SYMBOL, "buy", 1, price) for price in prices))
    listing = await placer.request("orders.open")
    await placer.close()
    answer_bytes = len(json.dumps({"id": "9999", "status": 200, "result": listing}))
    assert answer_bytes > 100_000
    bob = await market.client("bob")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # The client's kernel buffer.
    sock.connect((server.host, server.port))
    headers = {"Authorization": f"Bearer {market.tokens['alice']}"}
    requests = 2 * IN_FLIGHT_MAX
    async with connect(
        market.url, sock=sock, compression=None, max_queue=1, additional_headers=headers
    ) as alice:
        port = sock.getsockname()[1]
        for _ in range(100):  # Its handler registers it once the upgrade is done (1 s).
            found = [s for s in server.gateway._sessions if s.connection.remote_address[1] == port]
            if found:
                break
            await asyncio.sleep(0.01)
        (session,) = found
        held: list[int] = []  # At each write to alice: bytes given to the transport, unsent.
        write_texts = session.connection.write_texts

        def measured(texts: Sequence[bytes]) -> bool:
            pending = session.connection.transport.get_write_buffer_size()
            held.append(pending + sum(len(text) for text in texts))
            return write_texts(texts)

        session.connection.write_texts = measured  # type: ignore[method-assign]
        for n in range(requests):
            await alice.send(json.dumps({"id": str(n), "method": "orders.open"}))
        for _ in range(50):  # Until it stops answering (bounded: 5 s).
            count = len(held)
            await asyncio.sleep(0.1)
            if held and len(held) == count:
                break
        started = time.perf_counter()
        assert (await bob.request("account.balances", timeout_s=2.0))["account"] == "bob"
        assert time.perf_counter() - started < 1.0
        await bob.close()
        # The cap, and the one answer that went past it (with a frame header).
        assert max(held) <= WRITE_BACKLOG_MAX + answer_bytes + 1_024, max(held)
        ids = [json.loads(await alice.recv())["id"] for _ in range(requests)]
        assert ids == [str(n) for n in range(requests)]  # Nothing lost, in order.


async def _place_resting_orders(connection: ClientConnection, count: int) -> None:
    """Send count buys that rest (one unit at 95.00), all at once: each answered, open."""
    for n in range(count):  # Written at once: nothing here yields to the server.
        params = {"symbol": SYMBOL, "cl_ord_id": f"rest-{n}", "side": "buy", "quantity": 1,
                  "price": "95.00"}  # fmt: skip
        await connection.send(json.dumps({"id": str(n), "method": "order.place", "params": params}))
    answers = [json.loads(await connection.recv()) for _ in range(count)]
    assert sorted(int(answer["id"]) for answer in answers) == list(range(count))
    assert {answer["result"]["status"] for answer in answers} == {"open"}, answers[0]


async def test_a_connection_has_at_most_in_flight_max_commands_in_the_exchange(
    venue: Venue,
) -> None:
    # 500 orders sent at once on one connection: the server reads IN_FLIGHT_MAX of them,
    # then reads the next only as answers go out, so no sequencer batch holds more.
    requests = 500
    async with run_server(venue.data_dir, order_burst=requests) as server:
        venue.url = server.url
        await list_the_market(venue)
        batches: list[int] = []
        server.gateway.sequencer.subscribe(lambda outcomes, _: batches.append(len(outcomes)))
        unanswered: list[int] = []  # The connection's requests in flight as each one is read.
        answer = server.gateway._answer

        def counting_answer(session: Session, frame: str | bytes, started: float) -> None:
            unanswered.append(session.in_flight)
            answer(session, frame, started)

        server.gateway._answer = counting_answer  # type: ignore[method-assign]
        headers = {"Authorization": f"Bearer {venue.tokens['alice']}"}
        async with connect(venue.url, compression=None, additional_headers=headers) as alice:
            await _place_resting_orders(alice, requests)
    assert sum(batches) >= requests
    assert max(batches) <= IN_FLIGHT_MAX
    assert max(unanswered) == IN_FLIGHT_MAX


# Only asyncio's transport lets a test count its writes (uvloop's is a C type).
@pytest.mark.asyncio(loop_factories=[event_loop.ASYNCIO])
async def test_the_answers_a_batch_releases_leave_together_not_one_write_each(
    market: Venue, server: RunningServer
) -> None:
    headers = {"Authorization": f"Bearer {market.tokens['alice']}"}
    requests = IN_FLIGHT_MAX
    async with connect(market.url, compression=None, additional_headers=headers) as alice:
        (session,) = [s for s in server.gateway._sessions if s.account == "alice"]
        transport = session.connection.transport
        writes: list[int] = []
        real_write = transport.write

        def counting_write(data: bytes | bytearray | memoryview) -> None:
            writes.append(len(data))
            real_write(data)

        transport.write = counting_write  # type: ignore[method-assign]
        await _place_resting_orders(alice, requests)
    # One write per loop pass that released answers, each holding many: far fewer than 64.
    assert 1 <= len(writes) <= requests // 4, writes
