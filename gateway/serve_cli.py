"""`ipx serve`: run the exchange behind its WebSocket gateway until SIGTERM or SIGINT.

    ipx serve --data-dir DIR [--host 127.0.0.1] [--port 8700] [--log-format json|text]
              [--redis-url URL [--redis-prefix ipx]] [--mqtt-url URL]
              [--event-loop uvloop|asyncio] [--tls-cert CERT.pem --tls-key KEY.pem]

Logs go to stderr, by default as one JSON object per line (gateway/logs.py); --log-format
text gives the plain lines instead.

On a data dir that holds no journal yet, it first opens an operator account (OPERATOR_ACCOUNT)
and prints a token for it, once: the operator then opens accounts, lists patents and issues
shares over the WebSocket API (op.* methods), so a new user needs nothing else to start.

Recovers the exchange from DIR (latest snapshot + journal tail), serves ws://HOST:PORT/,
/livez and /readyz (with --tls-cert and --tls-key, all of it over TLS: wss:// and https://,
gateway/tls.py), and on SIGTERM/SIGINT stops accepting, drains and fsyncs the queue,
closes connections with 1001, writes a snapshot and releases the journal.

Exit codes: 0 after a clean shutdown; 1 the sequencer crashed (restart recovers from the
journal); 2 the data dir is unusable (locked by another server, damaged, not writable, or
its journal does not replay under this version's rules), the address cannot be listened on
(taken, or not this host's), or the TLS certificate and key are unusable (one without the
other, unreadable, or not a pair); 3 stopped with every command in the journal, but the
shutdown snapshot could not be written (said on stderr, with why): nothing is lost, the next
start replays the journal from the last snapshot that was written, which takes longer, and an
upgrade should wait until a clean stop has written one (see Upgrading).

Upgrading: stop the exchange cleanly (SIGTERM: it writes a snapshot), then start the new
version, which recovers from that snapshot. The rules are not versioned in the journal, so a
new version may replay an older record to other postings; it then refuses to start (exit 2)
rather than rebuild a state the journal does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
import sys
from pathlib import Path

from exchange.commands import Role
from exchange.core import ReplayMismatch
from gateway import event_loop, logs, sessions, tls
from gateway.admin_cli import create_account
from gateway.redis_publisher import DEFAULT_PREFIX
from gateway.server import run_server
from ledger.errors import JournalError
from ledger.frames import FRAME_HEADER_BYTES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
OPERATOR_ACCOUNT = "operator"
EXIT_SNAPSHOT_FAILED = 3  # Stopped, journal complete, shutdown snapshot not written.


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `serve` to `ipx`."""
    parser = subparsers.add_parser("serve", help="run the exchange and its WebSocket gateway")
    parser.add_argument("--data-dir", required=True, help="journal, snapshots and tokens.json")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument(
        "--redis-url",
        default=None,
        help="also publish to Redis Streams, e.g. redis://127.0.0.1:6379/0",
    )
    parser.add_argument(
        "--redis-prefix",
        default=DEFAULT_PREFIX,
        help="the Redis keys' prefix (default %(default)s): one per exchange, since Redis "
        "refuses a new journal's entries on keys another journal wrote",
    )
    parser.add_argument(
        "--mqtt-url",
        default=None,
        help="also publish market data over MQTT v5, e.g. mqtt://127.0.0.1:1883 or, with a "
        "login, mqtt://user:password@127.0.0.1:1883 (percent-encoded; never printed)",
    )
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="json",
        help="stderr log lines: one JSON object each (default) or plain text",
    )
    event_loop.add_argument(
        parser,
        "--event-loop",
        "uvloop where installed (the default: faster), or asyncio's own loop",
    )
    parser.add_argument(
        "--tls-cert", default=None, help="serve wss:// and https://: the certificate chain (PEM)"
    )
    parser.add_argument("--tls-key", default=None, help="the certificate's private key (PEM)")
    parser.set_defaults(handler=run_serve)


def run_serve(arguments: argparse.Namespace) -> int:
    logs.install(arguments.log_format, logging.INFO)
    try:
        ssl_context = _tls(arguments.tls_cert, arguments.tls_key)
        if is_new_data_dir(arguments.data_dir):
            _bootstrap_operator(arguments.data_dir)
        return event_loop.run(
            _serve(
                arguments.data_dir,
                arguments.host,
                arguments.port,
                arguments.redis_url,
                arguments.redis_prefix,
                arguments.mqtt_url,
                ssl_context,
            ),
            arguments.event_loop,
        )
    except STARTUP_ERRORS as error:
        return report_startup_error("ipx serve", error)


# What stops an exchange from starting on a data dir and address (exit 2), not a crash.
STARTUP_ERRORS = (JournalError, ValueError, OSError, ReplayMismatch)


def report_startup_error(prog: str, error: Exception) -> int:
    """Say on stderr why the exchange could not start (one of STARTUP_ERRORS); return 2."""
    message = str(error)
    if isinstance(error, ReplayMismatch):
        # The rules are not versioned in the journal: a record an older version wrote may
        # replay to other postings under this one (or the journal was altered).
        message += (
            ". The journal was written under other rules than this version's, or altered "
            "since (`ipx ledger verify` tells which). Start the version that wrote it and "
            "stop it cleanly: its shutdown snapshot lets this version start without "
            "replaying those records."
        )
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def _tls(cert_file: str | None, key_file: str | None) -> ssl.SSLContext | None:
    # Checked before anything else, so a bad pair changes nothing (not even a new data dir).
    if cert_file is None and key_file is None:
        return None
    if cert_file is None or key_file is None:
        raise ValueError("--tls-cert and --tls-key go together: give both, or neither")
    return tls.server_context(cert_file, key_file)


def is_new_data_dir(data_dir: str) -> bool:
    """Whether the data dir holds no journal record yet (a new exchange)."""
    journal = Path(data_dir) / "journal"
    # A segment may hold only zeros, the space the journal writes ahead of its frames.
    return not journal.is_dir() or not any(any(_head(segment)) for segment in journal.glob("*.seg"))


def _head(segment: Path) -> bytes:
    with segment.open("rb") as file:
        return file.read(FRAME_HEADER_BYTES)  # A frame's length is never 0.


def _bootstrap_operator(data_dir: str) -> None:
    create_account(data_dir, OPERATOR_ACCOUNT, Role.OPERATOR)
    token, entry = sessions.issue_token(data_dir, OPERATOR_ACCOUNT)
    print(
        f"new exchange in {data_dir}: operator account {OPERATOR_ACCOUNT!r} opened; its token "
        f"(id {entry.token_id}, shown once, store it now):\n{token}",
        flush=True,
    )


async def _serve(
    data_dir: str,
    host: str,
    port: int,
    redis_url: str | None,
    redis_prefix: str,
    mqtt_url: str | None,
    ssl_context: ssl.SSLContext | None,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with run_server(
        data_dir,
        host,
        port,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        mqtt_url=mqtt_url,
        ssl_context=ssl_context,
    ) as running:
        sequencer = running.gateway.sequencer
        print(
            f"ipx serving {data_dir} at {running.url} (seq "
            f"{sequencer.exchange.seq}, event loop {event_loop.running_event_loop()}); "
            f"health at {running.http_url}livez\n"
            f"connect with: Authorization: Bearer <token> on the upgrade, or send "
            f'{{"id": "1", "method": "session.logon", "params": {{"token": "<token>"}}}}\n'
            f"tokens: ipx tokens issue --data-dir {data_dir} ACCOUNT_ID",
            flush=True,
        )
        stopped = asyncio.create_task(stop.wait())
        crashed = running.sequencer_task
        await asyncio.wait({stopped, crashed}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if crashed.done() and not crashed.cancelled() and crashed.exception() is not None:
            print(f"ipx serve: the sequencer crashed: {crashed.exception()!r}", file=sys.stderr)
            return 1
    error = sequencer.shutdown_snapshot_error
    if error is not None:
        print(
            f"ipx serve: stopped, but the shutdown snapshot was not written ({error}); the "
            f"journal holds every command up to seq {sequencer.exchange.seq}: the next start "
            "replays it from the last snapshot written",
            file=sys.stderr,
        )
        return EXIT_SNAPSHOT_FAILED
    print("ipx serve: stopped cleanly", flush=True)
    return 0
