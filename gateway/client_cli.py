"""`ipx client`: a small command-line client of a running gateway.

    ipx client --url ws://127.0.0.1:8700/ --token TOKEN place SYMBOL buy 10 99.50 [--tif ioc]
    ipx client ... cancel ORDER_ID
    ipx client ... book SYMBOL [--depth 10]
    ipx client ... watch SYMBOL [--seconds N]     until Ctrl-C, or for N seconds

The token may come from the IPX_TOKEN environment variable instead of --token (it then stays
out of the process list). A wss:// url (`ipx serve --tls-cert --tls-key`) is verified against
the system's CAs, or with --ca-file against the given certificates (a self-signed server's
own). `--json` prints the raw result of place, cancel and book.
`watch` follows book.l2 with the client's follow_book (a LocalBook the client resyncs by
itself, with a fresh snapshot, when it falls out of sync: a gap or a checksum that differs):
after every book.l2 message it prints the best levels, the seq and the CRC32 checksum it
computed, and a `resync:` line with the reason whenever the client resubscribes.

Exit codes: 0 done; 1 the exchange refused (its status, code and message are printed on
stderr); 2 no connection (none made, or the server closed it, e.g. when the token already has
its limit of connections), or no answer in time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from typing import Any

from websockets.exceptions import WebSocketException

from gateway import market_data, tls
from gateway.client import ClientError, FollowedBook, IpxClient, RequestFailed
from gateway.local_book import LocalBook

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 2
DEFAULT_URL = "ws://127.0.0.1:8700/"
WATCH_LEVELS = 5


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `client` with its place, cancel, book and watch commands to `ipx`."""
    client = subparsers.add_parser("client", help="place, cancel, look at and watch the book")
    client.add_argument("--url", default=DEFAULT_URL, help=f"the gateway (default {DEFAULT_URL})")
    client.add_argument("--token", default=None, help="API token (default: $IPX_TOKEN)")
    client.add_argument("--json", action="store_true", help="print raw JSON results")
    client.add_argument(
        "--ca-file",
        default=None,
        help="for a wss:// url: trust these CA certificates (PEM), e.g. the server's own "
        "self-signed certificate (default: the system's CAs)",
    )
    commands = client.add_subparsers(dest="client_command", required=True)
    place = commands.add_parser("place", help="place a limit order")
    place.add_argument("symbol")
    place.add_argument("side", choices=["buy", "sell"])
    place.add_argument("quantity", type=int)
    place.add_argument("price", help="decimal price, e.g. 99.50")
    place.add_argument("--tif", default="gtc", choices=["gtc", "ioc", "fok", "day"])
    place.add_argument("--cl-ord-id", default=None, help="default: generated")
    cancel = commands.add_parser("cancel", help="cancel an order by its id")
    cancel.add_argument("order_id", type=int)
    book = commands.add_parser("book", help="print the L2 book")
    book.add_argument("symbol")
    book.add_argument("--depth", type=int, default=10)
    watch = commands.add_parser("watch", help="follow the L2 book")
    watch.add_argument("symbol")
    watch.add_argument("--seconds", type=float, default=None, help="stop after N seconds")
    client.set_defaults(handler=run_client)


def run_client(arguments: argparse.Namespace) -> int:
    token = arguments.token or os.environ.get("IPX_TOKEN")
    if not token:
        print("ipx client: no token (--token or IPX_TOKEN)", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        return asyncio.run(_run(arguments, token))
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C ends `watch`.


async def _run(arguments: argparse.Namespace, token: str) -> int:
    try:
        ssl_context = tls.client_context(arguments.ca_file) if arguments.ca_file else None
        client = await IpxClient.connect(arguments.url, token, ssl_context=ssl_context)
    except (OSError, TimeoutError, WebSocketException, ValueError) as error:
        print(f"ipx client: cannot connect to {arguments.url}: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        command = arguments.client_command
        if command == "watch":
            await _watch(client, arguments.symbol, arguments.seconds)
            return EXIT_OK
        result = await _request(client, arguments)
        print(json.dumps(result) if arguments.json else _describe(command, result))
        return EXIT_OK
    except RequestFailed as error:
        print(f"refused: {error.status} {error.code}: {error.message}", file=sys.stderr)
        return EXIT_REFUSED
    except ClientError as error:
        print(f"ipx client: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        await client.close()


async def _request(client: IpxClient, arguments: argparse.Namespace) -> Any:
    command = arguments.client_command
    if command == "place":
        return await client.place(
            arguments.symbol,
            arguments.side,
            arguments.quantity,
            arguments.price,
            cl_ord_id=arguments.cl_ord_id,
            time_in_force=arguments.tif,
        )
    if command == "cancel":
        return await client.cancel(order_id=arguments.order_id)
    return await client.request(
        "book.snapshot", {"symbol": arguments.symbol, "depth": arguments.depth}
    )


def _describe(command: str, result: dict[str, Any]) -> str:
    if command == "book":
        return _book_text(result["symbol"], result["phase"], result["seq"], result)
    line = (
        f"order {result['order_id']} ({result['cl_ord_id']}) {result['status']}: "
        f"{result['side']} {result['quantity']} {result['symbol']} @ {result['price']}, "
        f"filled {result['filled']}, leaves {result['leaves']}"
    )
    for fill in result.get("fills", ()):
        line += f"\n  fill {fill['quantity']} @ {fill['price']} ({fill['liquidity']})"
    return line


def _book_text(symbol: str, phase: str, seq: int, book: dict[str, Any]) -> str:
    # Asks above (best, lowest, last), bids below (best, highest, first).
    lines = [f"{symbol}  {phase}  seq {seq}"]
    lines += [f"  ask {price:>12} x {units}" for price, units in reversed(book["asks"])]
    lines.append("  " + "-" * 24)
    lines += [f"  bid {price:>12} x {units}" for price, units in book["bids"]]
    return "\n".join(lines)


async def _watch(client: IpxClient, symbol: str, seconds: float | None) -> None:
    # The client keeps the book and resyncs it; here each book.l2 message and resync is shown.
    resyncs = 0

    def show(book: FollowedBook, message: market_data.BookL2 | market_data.Heartbeat) -> None:
        nonlocal resyncs
        if isinstance(message, market_data.BookL2):
            _print_watch_line(book, message.type)
        if book.resyncs > resyncs:
            resyncs = book.resyncs
            print(f"resync: {book.problem}", flush=True)

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):  # None: until Ctrl-C or the connection ends.
            book = await client.follow_book(symbol, listener=show)
            while True:
                await book.next_change()


def _print_watch_line(book: LocalBook, kind: str) -> None:
    bids = " ".join(f"{price}x{units}" for price, units in book.bids()[:WATCH_LEVELS])
    asks = " ".join(f"{price}x{units}" for price, units in book.asks()[:WATCH_LEVELS])
    state = "ok" if book.in_sync else "OUT OF SYNC"
    print(
        f"{kind} seq {book.seq} checksum {book.checksum()} {state} | bids {bids or '-'} "
        f"| asks {asks or '-'}",
        flush=True,
    )
