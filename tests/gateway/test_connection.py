"""One connection's messages: whole, once, in order, as they are parsed; bad ones fail it.

The frame-cutting tests replay with IPX_SEED=<seed> (printed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.streams import StreamReader

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
async def served(handler: Handler) -> AsyncIterator[int]:
    """A server of GatewayConnections running handler; its port."""
    async with serve(handler, "127.0.0.1", 0, create_connection=GatewayConnection) as running:
        yield running.sockets[0].getsockname()[1]


@asynccontextmanager
async def connected(handler: Handler, **client_options: Any) -> AsyncIterator[ClientConnection]:
    """A server of GatewayConnections running handler, and a client connected to it."""
    async with (
        served(handler) as port,
        connect(f"ws://127.0.0.1:{port}/", **client_options) as client,
    ):
        yield client


async def raw_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection past the WebSocket handshake, for writing frames byte by byte."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(request.encode())
    response = await reader.readuntil(b"\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 101 "), response
    return reader, writer


def client_frame(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    """A frame as a client sends it: masked (websockets' own serialization)."""
    return Frame(opcode, data, fin=fin).serialize(mask=True, extensions=[])


def server_frames(stream: bytes) -> list[Frame]:
    """The frames a server wrote, parsed by websockets."""
    reader = StreamReader()
    reader.feed_data(stream)
    reader.feed_eof()
    frames: list[Frame] = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as parsed:
            frames.append(parsed.value)
        else:
            raise AssertionError("a partial frame at the end of the stream")
    return frames


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


async def test_messages_held_when_the_connection_is_lost_are_never_handed_over() -> None:
    # They ran after the session's end (its cancel-on-disconnect) and left orders open.
    taker = Taker(3)
    async with served(delivering(taker)) as port:
        _, writer = await raw_client(port)
        writer.write(b"".join(client_frame(Opcode.TEXT, str(i).encode()) for i in range(50)))
        await writer.drain()
        await _until(lambda: len(taker.taken) == 3)
        await asyncio.sleep(0.05)  # The rest of that read is held.
        connection = taker.connection
        assert connection is not None
        writer.transport.abort()  # A reset: no close frame.
        # Reading is paused: the server learns of the reset when it writes (an answer).
        for _ in range(500):
            if connection.connection_lost_waiter.done():
                break
            with contextlib.suppress(ConnectionClosed):
                await connection.send("an answer")
            await asyncio.sleep(0.01)
        await asyncio.wait_for(connection.wait_closed(), 5.0)
        taker.more(1_000)  # As the gateway does when the last batch's answers are written.
        await asyncio.sleep(0.05)
    assert taker.taken == ["0", "1", "2"]


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


# Frames cut by GatewayConnection itself: any stream of frames, in any pieces, gives the
# messages and answers websockets' own parser gives.

SEED = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))
SIZES = (0, 1, 2, 125, 126, 127, 1_023, 1_024, 5_000, 65_535, 65_536, 70_000)


def random_session(rng: random.Random) -> tuple[bytes, list[Message], list[bytes]]:
    """Frames of random messages (some fragmented) with pings among them, then a close.

    Returns the bytes, the messages they carry and the pings' payloads.
    """
    stream: list[bytes] = []
    messages: list[Message] = []
    pings: list[bytes] = []

    def maybe_ping() -> None:
        if rng.random() < 0.15:
            payload = rng.randbytes(rng.choice((0, 4, 125)))
            pings.append(payload)
            stream.append(client_frame(Opcode.PING, payload))

    for _ in range(rng.randint(1, 40)):
        size = rng.choice(SIZES) if rng.random() < 0.3 else rng.randint(0, 300)
        message: Message
        if rng.random() < 0.7:
            message = "".join(rng.choice('aé€😀{}"') for _ in range(size // 2))
            opcode, data = Opcode.TEXT, message.encode()
        else:
            message = rng.randbytes(size)
            opcode, data = Opcode.BINARY, message
        messages.append(message)
        maybe_ping()
        if rng.random() < 0.2 and len(data) > 1:  # Fragments cut anywhere, inside a character too.
            cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
            parts = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            for index, part in enumerate(parts):
                first, last = index == 0, index == len(parts) - 1
                stream.append(client_frame(opcode if first else Opcode.CONT, part, fin=last))
                if not last:
                    maybe_ping()  # Control frames may come between fragments.
        else:
            stream.append(client_frame(opcode, data))
    stream.append(client_frame(Opcode.CLOSE, Close(CloseCode.NORMAL_CLOSURE, "").serialize()))
    return b"".join(stream), messages, pings


async def write_in_pieces(writer: asyncio.StreamWriter, data: bytes, rng: random.Random) -> None:
    """Write data in random pieces, sometimes letting the server read between them."""
    start = 0
    while start < len(data):
        end = start + rng.choice((1, 2, 3, 7, 50, 700, 4_000, 100_000))
        writer.write(data[start:end])
        await writer.drain()
        if rng.random() < 0.5:
            await asyncio.sleep(0.001)
        start = end


async def test_frames_are_cut_here_once_open_and_by_websockets_once_closing() -> None:
    # Cutting relies on websockets' internals (its parser waiting in StreamReader.at_eof): if
    # a release changed them, cutting would silently stop (safe, but slower). This notices.
    taker = Taker(10_000)
    async with connected(delivering(taker), compression=None) as client:
        await client.send("one")
        await _until(lambda: len(taker.taken) == 1)
        assert taker.connection is not None and taker.connection.cutting_frames
        await client.send("two")
        await _until(lambda: len(taker.taken) == 2)
        await client.close()
    assert taker.connection is not None and not taker.connection.cutting_frames
    assert taker.taken == ["one", "two"]


async def test_any_frames_in_any_pieces_give_the_messages_in_order_and_a_pong_per_ping() -> None:
    print(f"frame cutting: IPX_SEED={SEED}")
    rng = random.Random(SEED)
    for _ in range(25):
        stream, messages, pings = random_session(rng)
        taken, pongs, close = await answered_by(GatewayConnection, stream, rng.randrange(1 << 32))
        assert taken == messages
        assert pongs == pings
        assert close == CloseCode.NORMAL_CLOSURE


BAD_AFTER_GOOD = [
    # (what, the bad frame's bytes, the close code websockets' own parser gives it)
    ("an unmasked frame", Frame(Opcode.TEXT, b"x").serialize(mask=False), 1002),
    ("a frame over max_size", bytes((0x81, 0xFF)) + (2**21).to_bytes(8, "big") + b"mask", 1009),
    ("a text frame that is not UTF-8", client_frame(Opcode.TEXT, b"\xff\xfe"), 1007),
    ("a continuation with no start", client_frame(Opcode.CONT, b"x"), 1002),
    (
        "a new message inside a fragmented one",
        client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"),
        1002,
    ),
    ("an unknown opcode", bytes((0x83, 0x80)) + b"mask", 1002),
    ("a reserved bit without an extension", bytes((0xC1, 0x80)) + b"mask", 1002),
]


@pytest.mark.parametrize(
    ("what", "bad", "code"), BAD_AFTER_GOOD, ids=[b[0] for b in BAD_AFTER_GOOD]
)
async def test_a_bad_frame_after_good_ones_in_one_read_fails_as_websockets_fails_it(
    what: str, bad: bytes, code: int
) -> None:
    taker = Taker(10_000)
    good = client_frame(Opcode.TEXT, b"one") + client_frame(Opcode.BINARY, b"two")
    after = client_frame(Opcode.TEXT, b"never delivered")
    async with served(delivering(taker)) as port:
        reader, writer = await raw_client(port)
        writer.write(good + bad + after)
        answered = server_frames(await asyncio.wait_for(reader.read(), 5))
        writer.close()
    assert taker.taken == ["one", b"two"]
    assert [frame.opcode for frame in answered] == [Opcode.CLOSE]
    assert Close.parse(answered[0].data).code == code


# Damaged streams: whatever a client sends, GatewayConnection answers it as websockets' own
# ServerConnection does: the same messages, the same pongs, the same close code (or none).


def damaged(stream: bytes, rng: random.Random) -> bytes:
    """The stream with a few bits flipped, bytes inserted or dropped, or its end cut off."""
    data = bytearray(stream)
    for _ in range(rng.randint(1, 3)):
        where = rng.randrange(len(data) + 1)
        action = rng.random()
        if action < 0.5 and where < len(data):
            data[where] ^= 1 << rng.randrange(8)
        elif action < 0.7:
            data[where:where] = rng.randbytes(rng.randint(1, 9))
        elif action < 0.9:
            del data[where : where + rng.randint(1, 9)]
        else:
            del data[where:]
    return bytes(data)


async def answered_by(
    create_connection: type[ServerConnection] | None, stream: bytes, seed: int
) -> tuple[list[Message], list[bytes], int | None]:
    """Send stream (in seeded pieces, then the end of the stream) to a server made of
    create_connection (websockets' own when None); return the messages its handler got, the
    pongs and the close code it answered (None: no close frame)."""
    taken: list[Message] = []

    async def stock(connection: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in connection:
                taken.append(message)

    def take(message: Message) -> bool:
        taken.append(message)
        return True

    async def ours(connection: ServerConnection) -> None:
        assert isinstance(connection, GatewayConnection)
        connection.deliver_to(take)
        await connection.wait_closed()

    options: dict[str, Any] = {"close_timeout": 1}
    if create_connection is not None:
        options["create_connection"] = create_connection
    handler = stock if create_connection is None else ours
    async with serve(handler, "127.0.0.1", 0, **options) as running:
        reader, writer = await raw_client(running.sockets[0].getsockname()[1])
        with contextlib.suppress(ConnectionError):
            await write_in_pieces(writer, stream, random.Random(seed))
            writer.write_eof()
        answered = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await asyncio.sleep(0.01)  # The handler takes what the last read parsed.
    frames = server_frames(answered)
    closes = [Close.parse(frame.data).code for frame in frames if frame.opcode is Opcode.CLOSE]
    pongs = [bytes(frame.data) for frame in frames if frame.opcode is Opcode.PONG]
    return taken, pongs, closes[0] if closes else None


async def test_a_damaged_stream_is_answered_as_websockets_answers_it() -> None:
    print(f"damaged streams: IPX_SEED={SEED}")
    rng = random.Random(SEED)
    for _ in range(40):
        stream, _, _ = random_session(rng)
        stream = damaged(stream, rng)
        pieces = rng.randrange(1 << 32)
        their_messages, their_pongs, their_close = await answered_by(None, stream, pieces)
        messages, pongs, close = await answered_by(GatewayConnection, stream, pieces)
        assert messages == their_messages
        if close == CloseCode.INVALID_DATA:
            # The one difference: a text message that is not UTF-8 fails the connection as
            # soon as it is whole here, where websockets finds it only when its handler reads
            # the message, after its protocol parsed on (answering more pings, and closing on
            # a later error, the client's close or the end of the stream: any close code).
            assert pongs == their_pongs[: len(pongs)]
        else:
            assert (pongs, close) == (their_pongs, their_close)
