"""One connection's messages: whole, once, in order, as they are parsed; bad ones fail it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from gateway.compression import COMPRESS_MIN_BYTES
from gateway.connection import (
    _TEXT_HEADERS,
    FRAGMENTS_MAX,
    HELD_MAX,
    GatewayConnection,
    Message,
)

pytestmark = pytest.mark.asyncio


class Taker:
    """A callback that takes `room` messages, then says no until it is given more room."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken: list[Message] = []
        self.connection: GatewayConnection | None = None

    def __call__(self, message: Message) -> bool:
        self.taken.append(message)
        self.room -= 1
        return self.room > 0

    def more(self, room: int) -> None:
        self.room += room
        assert self.connection is not None
        self.connection.resume()


Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def connected(handler: Handler, **client_options: Any) -> AsyncIterator[ClientConnection]:
    """A server of GatewayConnections running handler, and a client connected to it."""
    async with serve(handler, "127.0.0.1", 0, create_connection=GatewayConnection) as running:
        port = running.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", **client_options) as client:
            yield client


def delivering(taker: Taker, *, logon: bool = False) -> Handler:
    """A handler that takes one message with receive() (if logon), then delivers to taker."""

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, GatewayConnection)
        if logon:
            await connection.receive()
            await connection.send("logged on")
        taker.connection = connection
        connection.deliver_to(taker)
        await connection.wait_closed()

    return handler


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached in 5 s")


async def test_messages_arrive_whole_once_and_in_order_text_as_str_binary_as_bytes() -> None:
    taker = Taker(10_000)
    async with connected(delivering(taker), compression=None) as client:
        await client.send("one")
        await client.send(b"\x00two")
        await client.send(["fr", "ag", "mented"])  # One message in three frames.
        await client.send([b"bin", b"ary"])
        await client.send("é")
        await _until(lambda: len(taker.taken) == 5)
    assert taker.taken == ["one", b"\x00two", "fragmented", b"binary", "é"]


async def test_before_delivery_messages_wait_for_receive_and_none_is_lost() -> None:
    # The client sends its logon and, without waiting, three requests: the server takes the
    # first with receive(), the rest go to the callback, in order.
    taker = Taker(10_000)
    async with connected(delivering(taker, logon=True), compression=None) as client:
        for text in ("logon", "a", "b", "c"):
            await client.send(text)
        assert await client.recv() == "logged on"
        await _until(lambda: len(taker.taken) == 3)
    assert taker.taken == ["a", "b", "c"]


async def test_before_delivery_reading_pauses_while_messages_wait_for_receive() -> None:
    # A client that floods before its session is open costs bounded memory: past HELD_MAX
    # waiting messages the socket is not read, and nothing is lost once they are taken.
    reading: list[bool] = []
    taker = Taker(10_000)

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, GatewayConnection)
        await asyncio.sleep(0.3)  # Busy elsewhere (a logon check, say) while messages come.
        reading.append(connection.transport.is_reading())
        connection.deliver_to(taker)
        await connection.wait_closed()

    async with connected(handler, compression=None) as client:
        for index in range(10 * HELD_MAX):
            await client.send(str(index))
        await _until(lambda: len(taker.taken) == 10 * HELD_MAX)
    assert reading == [False]
    assert taker.taken == [str(index) for index in range(10 * HELD_MAX)]


async def test_a_full_callback_pauses_reading_and_resume_hands_over_what_is_held() -> None:
    taker = Taker(3)
    async with connected(delivering(taker), compression=None) as client:
        for index in range(50):
            await client.send(str(index))
        await _until(lambda: len(taker.taken) == 3)
        await asyncio.sleep(0.05)
        assert len(taker.taken) == 3  # Nothing more is handed over while it says no.
        assert taker.connection is not None and not taker.connection.transport.is_reading()
        taker.more(10)
        assert 3 < len(taker.taken) <= 13  # At once, from what one read already parsed ...
        taker.more(1_000)
        await _until(lambda: len(taker.taken) == 50)  # ... and the rest once reading resumes.
    assert taker.taken == [str(index) for index in range(50)]


async def test_text_that_is_not_utf8_fails_the_connection_with_1007() -> None:
    taker = Taker(10_000)
    async with connected(delivering(taker), compression=None) as client:
        await client.send("fine")
        await client.send(b'{"id": "\xff\xfe"}', text=True)  # A text frame, not UTF-8.
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    assert taker.taken == ["fine"]


async def test_too_many_fragments_fail_the_connection_with_1009() -> None:
    taker = Taker(10_000)
    async with connected(delivering(taker), compression=None) as client:
        await client.send(["x"] * (FRAGMENTS_MAX + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert taker.taken == []


async def test_a_callback_that_raises_fails_the_connection_with_1011() -> None:
    def broken(message: Message) -> bool:
        raise RuntimeError("a bug")

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, GatewayConnection)
        connection.deliver_to(broken)
        await connection.wait_closed()

    async with connected(handler) as client:
        await client.send("boom")
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_receive_raises_once_the_connection_is_closed() -> None:
    outcome: list[BaseException] = []

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, GatewayConnection)
        try:
            await connection.receive()
        except ConnectionClosed as error:
            outcome.append(error)

    async with connected(handler) as client:
        await client.close()
        await _until(lambda: bool(outcome))
    assert isinstance(outcome[0], ConnectionClosed)


async def test_a_small_text_is_framed_as_websockets_frames_it() -> None:
    for size in (0, 1, 125, 126, 127, 1_000, COMPRESS_MIN_BYTES - 1):
        text = b"x" * size
        theirs = Frame(Opcode.TEXT, text).serialize(mask=False, extensions=[])
        assert _TEXT_HEADERS[size] + text == theirs, size


async def test_written_texts_arrive_whole_and_in_order_small_plain_and_large_deflated() -> None:
    sizes = [5, 125, 126, 4 * COMPRESS_MIN_BYTES, 70_000, 20, COMPRESS_MIN_BYTES - 1]
    texts = [(f"{index}:" + "x" * size).encode()[:size] for index, size in enumerate(sizes)]
    written: list[bool] = []

    async def handler(connection: ServerConnection) -> None:
        assert isinstance(connection, GatewayConnection)
        written.append(connection.write_texts(texts[:3]))
        written.append(connection.write_texts(texts[3:]))
        await connection.wait_closed()
        written.append(connection.write_texts([b"too late"]))

    async with connected(handler, max_size=None) as client:  # deflate
        received = [await client.recv() for _ in texts]
        await client.close()
        await _until(lambda: len(written) == 3)
    assert received == [text.decode() for text in texts]
    assert written == [True, True, False]  # Nothing is written to a closed connection.
