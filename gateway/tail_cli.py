"""`ipx tail`: follow instruments' Redis event streams through a consumer group.

Each event is printed as one line, `SYMBOL JOURNAL_SEQ CHANNEL DATA` (DATA is the message's
JSON as on the WebSocket), then acknowledged (XACK), so consumers sharing a group split the
events and each event is handled once per group. The group is created when missing, reading
new events only (`$`) unless --from-start. --count and --seconds bound a run (for scripts and
tests); without them it runs until interrupted. A read is never cut short, so --count N stops
after at least N events: every event read is printed and acknowledged, none is left pending.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
from typing import Any

import redis.asyncio as redis

from gateway.redis_publisher import DEFAULT_PREFIX, stream_key

READ_BLOCK_MS = 200  # Longest wait inside one XREADGROUP, so --seconds is kept closely.
READ_COUNT = 100


def register(subparsers: Any) -> None:
    """Add the `tail` subcommand."""
    parser = subparsers.add_parser("tail", help="follow instruments' events in Redis streams")
    parser.add_argument("symbols", metavar="SYMBOL", nargs="+")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="key prefix of the publisher")
    parser.add_argument("--group", default="ipx-tail", help="consumer group name")
    parser.add_argument(
        "--consumer",
        default=f"{socket.gethostname()}-{os.getpid()}",
        help="consumer name within the group (default: host-pid)",
    )
    parser.add_argument(
        "--from-start", action="store_true", help="a new group reads the streams from the start"
    )
    parser.add_argument("--count", type=int, default=0, help="stop after N events (0: never)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after S s (0: never)")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    """Follow the streams; return 0, or 1 when Redis cannot be reached."""
    try:
        asyncio.run(_tail(arguments))
    except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
        print(f"ipx tail: cannot read from {arguments.redis_url}: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


async def _tail(arguments: argparse.Namespace) -> None:
    client = redis.Redis.from_url(arguments.redis_url, decode_responses=True)
    try:
        symbols = {stream_key(arguments.prefix, symbol): symbol for symbol in arguments.symbols}
        keys = dict.fromkeys(symbols, ">")
        start = "0" if arguments.from_start else "$"
        for key in keys:
            with contextlib.suppress(redis.ResponseError):  # BUSYGROUP: it exists already.
                await client.xgroup_create(key, arguments.group, id=start, mkstream=True)
        await _follow(client, arguments, keys, symbols)
    finally:
        await client.aclose()


async def _follow(
    client: redis.Redis,
    arguments: argparse.Namespace,
    keys: dict[str, str],
    symbols: dict[str, str],
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + arguments.seconds if arguments.seconds > 0 else None
    printed = 0
    while arguments.count <= 0 or printed < arguments.count:
        block_ms = READ_BLOCK_MS
        if deadline is not None:
            left_ms = int((deadline - loop.time()) * 1_000)
            if left_ms <= 0:
                return
            block_ms = max(1, min(block_ms, left_ms))
        wanted = READ_COUNT
        if arguments.count > 0:
            wanted = min(wanted, arguments.count - printed)
        # RESP2 replies: [[key, [(entry_id, {field: value}), ...]], ...] (typed loosely).
        streams: dict[Any, Any] = dict(keys)
        replies: Any = await client.xreadgroup(
            arguments.group, arguments.consumer, streams, count=wanted, block=block_ms
        )
        for key, entries in replies or []:
            for entry_id, fields in entries:
                print(
                    symbols[key],
                    fields.get("journal_seq", ""),
                    fields.get("channel", ""),
                    fields.get("data", ""),
                    flush=True,
                )
                await client.xack(key, arguments.group, entry_id)
                printed += 1
