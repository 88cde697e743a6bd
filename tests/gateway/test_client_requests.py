"""The client's requests against a real server when answers are late, lost or impossible.

Rules:
- An amend resent because its answer did not come, that finds the order no longer open (the
  first attempt crossed and filled it), answers with the order's status: the caller learns
  the fill, not a 404 for an amend that was done.
- A request's timeout covers sending it: to a server that reads nothing (its buffers full),
  a request fails with RequestTimedOut in its timeout, not when the server reads again.
- On a connection the server closed, every request raises ClientError (the client's root,
  naming the close), never one of websockets' exceptions, and leaves no future unseen.
- Closing a session to a server that has gone silent takes about CLOSE_TIMEOUT_S, not
  websockets' 10 s: a bot with many sessions stops in seconds.
- A place, cancel or amend whose first attempt got no answer, and whose resends were refused
  at the door (503 OVERLOADED, 429), is never reported as "nothing was done": the client
  returns the order's status when it shows the request done, else raises OutcomeUnknown.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import hashlib
import os
import socket
import time
from typing import Any

import msgspec
import pytest
from websockets.asyncio.server import ServerConnection, serve

from gateway.client import (
    CLOSE_TIMEOUT_S,
    TIMEOUT_S,
    ClientError,
    IpxClient,
    OutcomeUnknown,
    RequestTimedOut,
)
from gateway.server import run_server
from tests.gateway.conftest import SYMBOL, Venue
from tests.gateway.server_thread import server_thread

pytestmark = pytest.mark.asyncio

STALL_S = 2.0
REQUEST_TIMEOUT_S = 0.3
REQUESTS = 100
SOCKET_BUFFER_BYTES = 4096
WAIT_S = 5.0


async def test_an_amend_resent_after_its_answer_was_lost_reports_the_fill(
    market: Venue, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, issuer = await market.client("alice"), await market.client("issuer")
    try:
        await issuer.place(SYMBOL, "sell", 5, "101.00")
        bid = await alice.place(SYMBOL, "buy", 5, "99.00")
        request, lost = alice.request, list[dict[str, Any]]()

        async def first_amend_answer_lost(
            method: str, params: dict[str, Any] | None = None, *, timeout_s: float = TIMEOUT_S
        ) -> Any:
            result = await request(method, params, timeout_s=timeout_s)
            if method == "order.amend" and not lost:
                lost.append(result)  # Done by the server; its answer never reached alice.
                raise RequestTimedOut("order.amend got no answer in time")
            return result

        monkeypatch.setattr(alice, "request", first_amend_answer_lost)
        amended = await alice.amend("101.00", 5, order_id=bid["order_id"])
        assert lost[0]["status"] == "filled"  # The first attempt crossed the offer.
        assert (amended["order_id"], amended["status"]) == (bid["order_id"], "filled")
        assert (amended["price"], amended["filled"], amended["leaves"]) == ("101.00", 5, 0)
    finally:
        await alice.close()
        await issuer.close()


def _small_socket_buffers(client: IpxClient, server_connections: Any) -> None:
    # Loopback buffers hold megabytes: shrunk, a few hundred kilobytes fill them.
    sockets = [client.connection.transport.get_extra_info("socket")]
    sockets += [c.transport.get_extra_info("socket") for c in server_connections]
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)


async def test_a_request_times_out_while_the_server_reads_nothing(venue: Venue) -> None:
    async with server_thread(venue.data_dir) as server:
        venue.url = server.url
        alice = await venue.client("alice")
        try:
            assert server.running is not None
            _small_socket_buffers(alice, server.running.server.connections)
            await server.stall(STALL_S)
            # Incompressible requests of ~1.5 kB each, far more than the buffers hold.
            requests = [
                alice.request(
                    "book.snapshot",
                    {"symbol": os.urandom(1500).hex()},
                    timeout_s=REQUEST_TIMEOUT_S,
                )
                for _ in range(REQUESTS)
            ]
            started = time.monotonic()
            outcomes = await asyncio.gather(*requests, return_exceptions=True)
            waited_s = time.monotonic() - started
            assert {type(outcome) for outcome in outcomes} == {RequestTimedOut}
            # Before, the sends waited for the stall to end; the margin is for a loaded machine.
            assert waited_s < STALL_S
        finally:
            alice.connection.transport.abort()  # Its buffered requests are of no interest.
            await alice.close()


async def test_requests_on_a_connection_the_server_closed_raise_client_error(
    venue: Venue,
) -> None:
    unseen: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: unseen.append(context))
    try:
        async with run_server(
            venue.data_dir, logon_timeout_s=1.0, connections_per_token_max=1
        ) as running:
            venue.url = running.url
            first = await venue.client("alice")
            # One connection too many: accepted, then closed with 1008 LIMIT_EXCEEDED. The
            # first request goes while the close is on its way, the others after it.
            second = await venue.client("alice")
            try:
                with pytest.raises(ClientError, match="LIMIT_EXCEEDED"):
                    await second.request("instruments.list")
                await asyncio.wait_for(second.connection.wait_closed(), WAIT_S)
                with pytest.raises(ClientError, match="LIMIT_EXCEEDED"):
                    await second.place(SYMBOL, "buy", 1, "99.00")
                with pytest.raises(ClientError, match="LIMIT_EXCEEDED"):
                    await second.follow_book(SYMBOL)
                assert await first.request("instruments.list")  # The first one is served.
            finally:
                await second.close()
                await first.close()
        gc.collect()  # A future whose exception nobody saw says so when collected.
        assert unseen == []
    finally:
        loop.set_exception_handler(None)


async def test_closing_a_session_to_a_silent_server_takes_the_close_timeout() -> None:
    # A server that completes the upgrade, then reads nothing and answers nothing (wedged).
    upgraded, finished = asyncio.Event(), asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(
            hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        upgraded.set()
        await finished.wait()  # Never reads the close frame, never answers it.
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        client = await IpxClient.connect(f"ws://127.0.0.1:{port}/", "any-token")
        await asyncio.wait_for(upgraded.wait(), WAIT_S)
        started = time.monotonic()
        await client.close()
        # websockets' default waited 10 s; the margin is for a loaded machine.
        assert time.monotonic() - started < CLOSE_TIMEOUT_S + 3.0
    finally:
        finished.set()
        server.close()
        await server.wait_closed()


class OverloadedAfterTheFirst:
    """A scripted gateway: the first order request reaches the exchange (done, or not, as
    told) but its answer is lost; every resend finds the queue full (503 OVERLOADED); and
    order.status answers with the order as the exchange then holds it."""

    def __init__(self, done: bool, status_after: str) -> None:
        self.done, self.status_after = done, status_after
        self.seen: list[str] = []

    async def handle(self, connection: ServerConnection) -> None:
        async for frame in connection:
            request = msgspec.json.decode(frame)
            method = request["method"]
            self.seen.append(method)
            if method == "order.status":
                answer: dict[str, Any] = (
                    {"status": 200, "result": {"order_id": 7, "status": self.status_after}}
                    if self.done or self.status_after == "open"
                    else {"status": 404, "error": {"code": "UNKNOWN_ORDER", "message": "none"}}
                )
            elif self.seen.count(method) == 1:
                continue  # Its answer is lost: the client times out.
            else:
                message = "4 commands queued: nothing was done, retry after a short wait"
                answer = {"status": 503, "error": {"code": "OVERLOADED", "message": message}}
            await connection.send(msgspec.json.encode({"id": request["id"], **answer}).decode())


@pytest.mark.parametrize(
    ("method", "done", "status_after", "outcome"),
    [
        ("place", True, "open", "the order"),  # Placed by the first attempt.
        ("place", False, "", "unknown"),  # Not (yet) on the book: maybe still queued.
        ("cancel", True, "canceled", "the order"),
        ("cancel", False, "open", "unknown"),
        ("amend", False, "open", "unknown"),
    ],
)
async def test_a_request_whose_first_attempt_went_unanswered_is_never_nothing_done(
    method: str, done: bool, status_after: str, outcome: str
) -> None:
    gateway = OverloadedAfterTheFirst(done, status_after)
    async with serve(gateway.handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = await IpxClient.connect(f"ws://127.0.0.1:{port}/", "any-token")
        try:
            requests = {
                "place": lambda: client.place(SYMBOL, "buy", 1, "99.00", timeout_s=0.2),
                "cancel": lambda: client.cancel(cl_ord_id="c-1", timeout_s=0.2),
                "amend": lambda: client.amend("99.00", 2, cl_ord_id="c-1", timeout_s=0.2),
            }
            if outcome == "the order":
                result = await requests[method]()
                assert result == {"order_id": 7, "status": status_after}
            else:
                with pytest.raises(OutcomeUnknown, match="may have been done"):
                    await requests[method]()
            assert gateway.seen[-1] == "order.status"
        finally:
            await client.close()
