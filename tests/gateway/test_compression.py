"""Compression on the wire: small messages go plain, large ones deflated, peers read both."""

from __future__ import annotations

import json
import random

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from gateway.compression import (
    COMPRESS_MIN_BYTES,
    WINDOW_BITS,
    SmallMessagesPlain,
    client_extensions,
    server_extensions,
)


def _pair() -> tuple[SmallMessagesPlain, PerMessageDeflate]:
    # The server's side as the gateway makes it, and a stock client's side of the same terms.
    server = SmallMessagesPlain(False, False, WINDOW_BITS, WINDOW_BITS, {"memLevel": 5})
    client = PerMessageDeflate(False, False, WINDOW_BITS, WINDOW_BITS)
    return server, client


def _message(rng: random.Random, size: int) -> bytes:
    words = [
        rng.choice(("order_id", "price", "99.50", "filled", "open", "leaves")) for _ in range(size)
    ]
    return json.dumps({"id": str(rng.randrange(10**6)), "words": words}).encode()


def test_a_small_message_goes_plain_and_a_large_one_deflated() -> None:
    server, _ = _pair()
    small = Frame(Opcode.TEXT, b'{"id":"1","status":200}')
    large = Frame(Opcode.TEXT, b'{"levels":[' + b'["99.50",10],' * 200 + b'["99.00",1]]}')
    assert len(large.data) >= COMPRESS_MIN_BYTES
    assert server.encode(small) is small and not small.rsv1
    deflated = server.encode(large)
    assert deflated.rsv1 and len(deflated.data) < len(large.data) // 4


def test_a_peer_reads_plain_and_deflated_messages_interleaved_with_one_context() -> None:
    # Skipping a message must not break the shared compression context (context takeover)
    # of the deflated ones around it: a stock decoder inflates them all, in order.
    rng = random.Random(7)
    server, client = _pair()
    for _ in range(300):
        data = _message(rng, rng.choice((3, 10, 150, 400)))
        frame = server.encode(Frame(rng.choice((Opcode.TEXT, Opcode.BINARY)), data))
        assert frame.rsv1 == (len(data) >= COMPRESS_MIN_BYTES)
        assert client.decode(frame).data == data


def test_fragments_and_control_frames_are_encoded_as_before() -> None:
    server, client = _pair()
    first = server.encode(Frame(Opcode.TEXT, b'{"a":', fin=False))
    last = server.encode(Frame(Opcode.CONT, b"1}"))
    assert first.rsv1  # A fragmented message is compressed whatever its size.
    assert bytes(client.decode(first).data) + client.decode(last).data == b'{"a":1}'
    ping = Frame(Opcode.PING, b"x")
    assert server.encode(ping) is ping


@pytest.mark.asyncio
async def test_both_sides_agree_the_same_terms_as_websockets_defaults_with_any_peer() -> None:
    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    agreed = []
    for server_side in (None, server_extensions()):
        async with serve(echo, "127.0.0.1", 0, extensions=server_side) as server:
            port = server.sockets[0].getsockname()[1]
            for client_side in (None, client_extensions()):
                async with connect(f"ws://127.0.0.1:{port}/", extensions=client_side) as client:
                    assert client.response is not None
                    agreed.append(client.response.headers["Sec-WebSocket-Extensions"])
                    big = "x" * (4 * COMPRESS_MIN_BYTES)
                    for text in ("small", big, "small again"):
                        await client.send(text)
                        assert await client.recv() == text
    assert len(set(agreed)) == 1
    assert agreed[0].startswith("permessage-deflate")
