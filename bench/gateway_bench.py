"""End-to-end benchmark of the WebSocket gateway on loopback, with a bare echo server as ceiling.

    python bench/gateway_bench.py             # 10 s per phase, 4 connections x 16 in flight
    python bench/gateway_bench.py --quick     # 3 s per phase

The server runs in its own process (this script with --serve-gateway: gateway.server.run_server
on 127.0.0.1, port 0, on a temporary data dir on the real disk, so every batch is fsynced), so
the client and the server each get a core. The data dir is prepared as tests/gateway/conftest.py
does: an operator, an issuer and one investor account per connection are opened and given
tokens; the operator lists a patent, issues its shares (tick 0.10, reference 100.00, static band
10%), funds the investors, resumes trading; the issuer then sells each investor units in
continuous trading. The gateway's per-account order rate limit is raised out of the way (it
would cap each account at 500 orders/s): this measures the gateway, not its throttle.

Phases, in one run, each after --warmup seconds that are not counted:
1. closed loop: N connections (one investor account each), K requests in flight per connection
   (at most the server's IN_FLIGHT_MAX). Each in-flight slot places a non-crossing limit order
   (buys 95.00-99.90, sells 100.10-105.00, 1-10 units) and, once it is acknowledged, cancels it
   by order_id, then places the next: the book never holds more than N x K orders. Counted:
   200 answers to order.place per second (acknowledged orders/s), every answer per second, and
   each request's latency from just before its send to its answer (time.perf_counter_ns).
2. open loop at half the closed-loop order rate: places on a fixed schedule per connection;
   each place's latency counts from its scheduled send time, so a stall of the server (or the
   client) shows as latency instead of a pause in sending (no coordinated omission). Each
   acknowledged place is cancelled at once, timed from its actual send.
3. echo ceiling: the gateway is stopped and a bare websockets.asyncio.server echo server runs
   in its own process; the same client code sends it the same frames with the same pipelining
   (a cancel names a made-up order id) and counts echoed messages per second and latency.
   By default the echo server has websockets' default compression, which deflates every
   message; the gateway sends messages under gateway.compression.COMPRESS_MIN_BYTES plain.
   --echo-compression gateway gives the echo server the gateway's extension instead (like for
   like on the wire; a higher ceiling).

Event loops: the gateway and the echo server run on --event-loop, the load driver on
--client-event-loop; both default to what `ipx serve` uses (uvloop where it is installed).

Latency percentiles come from an HDR histogram (the hdrhistogram package, 3 significant
digits) filled after each phase from the raw samples, so the histogram costs nothing while
timing; without the package, from the sorted raw samples (the output says which).

The gateway process also reports, per phase, what ran on its event loop while no frame could
be read or answered: the journal appends (write + fdatasync; before git c01878e's successor
they included the sealing too; and the mean records per append, i.e. the group-commit batch),
the snapshots, and the full (generation 2) garbage collections; it wraps those calls to time
them (ServerStats), nothing else.

Ratios: "answers/s" counts every answer (place and cancel alike: one frame in, one frame out),
so gateway / echo compares like with like; acknowledged orders/s is half of it by design.
A target missed prints MISS and never fails the run (exit status 1 only if the gateway did not
shut down cleanly).

Set IPX_BENCH_PROFILE=PATH to run the gateway process under cProfile (written at its exit).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import gc
import json
import os
import platform
import secrets
import select
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from importlib.metadata import version

import msgspec
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bench.machine import cpu_model, git_revision, load_average, progress
from exchange.commands import Role
from gateway import event_loop, sessions, tls
from gateway.admin_cli import create_account
from gateway.client import IpxClient
from gateway.compression import COMPRESS_MIN_BYTES, client_extensions, server_extensions
from gateway.server import IN_FLIGHT_MAX

SYMBOL = "RS-US10123456B2"
PATENT = "US10123456B2"
UNITS_PER_INVESTOR = 10_000
CASH_PER_INVESTOR = "10000000.00"
PRICE_LEVELS = 50  # Buys 99.90 down to 95.00, sells 100.10 up to 105.00: never crossing.
QUANTITY_MAX = 10
STARTUP_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 10.0  # After a phase ends, for the answers still in flight.
OPEN_LOOP_BACKLOG_MAX = 10_000  # Places unanswered on one connection: the server is drowning.
SPIN_BELOW_NS = 1_500_000  # The loop's timer is ms-grained: closer than this, yield and poll.
TARGET_ORDERS_PER_S = 25_000
TARGET_P99_MS = 5.0
TARGET_ECHO_RATIO = 0.5
PLACE, CANCEL = 0, 1
STATS_FILE = "server-stats.jsonl"

PLACE_FRAME = (
    '{"id":"%d","method":"order.place","params":{"symbol":"' + SYMBOL + '",'
    '"cl_ord_id":"%s-%d","side":"%s","quantity":%d,"price":"%s"}}'
)
CANCEL_FRAME = '{"id":"%d","method":"order.cancel","params":{"order_id":%d}}'


def _price(ticks: int) -> str:
    return f"{ticks // 10}.{ticks % 10}0"


BUY_PRICES = [_price(999 - level) for level in range(PRICE_LEVELS)]
SELL_PRICES = [_price(1001 + level) for level in range(PRICE_LEVELS)]


class _Result(msgspec.Struct):
    order_id: int = 0


class _Error(msgspec.Struct):
    code: str = ""


class _Answer(msgspec.Struct):
    """An answer of the gateway, or an echoed request (then only its id is read)."""

    id: str
    status: int = 200
    result: _Result | None = None
    error: _Error | None = None


_decode_answer = msgspec.json.Decoder(_Answer).decode


# Servers (each run in a process of its own by this same script).


class ServerStats:
    """Where the gateway process spent its time, kept by wrapping a few of its calls.

    The durable append (seal, write, fsync) and the snapshots run on the event loop, as do the
    garbage collector's pauses: while they run, no frame is read or answered. On SIGUSR1 the
    totals so far are appended to DATA_DIR/server-stats.jsonl, so a phase can be diffed.
    """

    def __init__(self, gateway: Any, path: str) -> None:
        sequencer = gateway.sequencer
        self.path = path
        self.totals: dict[str, float] = dict.fromkeys(
            ("appends", "append_s", "records", "snapshots", "snapshot_s", "snapshot_max_s",
             "gc_pauses", "gc_s", "gc_max_s"), 0)  # fmt: skip
        self.sequencer = sequencer
        self._gc_start = 0.0
        # Periodic snapshots start in a forked child: the loop is blocked for the fork only.
        append, snapshot = sequencer.journal.append_sealed, sequencer._start_snapshot

        def timed_append(batch: Any) -> Any:
            start = time.perf_counter()
            try:
                return append(batch)
            finally:
                self._add("append", time.perf_counter() - start)
                self.totals["records"] += batch.last_seq - batch.first_seq + 1

        def timed_snapshot() -> None:
            start = time.perf_counter()
            try:
                snapshot()
            finally:
                self._add("snapshot", time.perf_counter() - start)

        sequencer.journal.append_sealed = timed_append
        sequencer._start_snapshot = timed_snapshot  # Private: instrumentation of this bench only.
        gc.callbacks.append(self._on_gc)
        # Every publish-lag sample the gateway takes (ms, per sink), kept raw for percentiles.
        self.lag_ms: dict[str, list[float]] = {}
        # Every journal append's time (ms), kept raw: its tail is the disk's, and acks wait on it.
        self.append_ms: list[float] = []
        metrics = gateway.metrics
        observe_lag = metrics.observe_publisher_lag

        def kept_lag(sink: str, seconds: float) -> None:
            self.lag_ms.setdefault(sink, []).append(seconds * 1e3)
            observe_lag(sink, seconds)

        metrics.observe_publisher_lag = kept_lag

    def _add(self, what: str, seconds: float) -> None:
        plural = {"append": "appends", "snapshot": "snapshots", "gc": "gc_pauses"}[what]
        self.totals[plural] += 1
        self.totals[f"{what}_s"] += seconds
        if what == "append":
            self.append_ms.append(seconds * 1e3)
        else:
            self.totals[f"{what}_max_s"] = max(self.totals[f"{what}_max_s"], seconds)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif info["generation"] == 2:  # Young collections are short; full ones grow with the heap.
            self._add("gc", time.perf_counter() - self._gc_start)

    def dump(self) -> None:
        with open(self.path, "a") as file:
            raw = {"lag_ms": self.lag_ms, "append_ms": self.append_ms}
            file.write(json.dumps(self.totals | raw) + "\n")


async def _serve_gateway(arguments: argparse.Namespace) -> None:
    from gateway.server import run_server

    data_dir = arguments.serve_gateway
    prefix = f"ipx-bench-{secrets.token_hex(4)}"  # Keeps the bench's keys and topics apart.
    stop = _stop_on_sigterm()
    async with run_server(
        data_dir,
        order_rate_per_s=10**9,
        order_burst=10**9,
        redis_url=arguments.redis_url or None,
        redis_prefix=prefix,
        mqtt_url=arguments.mqtt_url or None,
        mqtt_prefix=f"{prefix}/v1",
        ssl_context=_server_tls(arguments),
    ) as running:
        stats = ServerStats(running.gateway, os.path.join(data_dir, STATS_FILE))
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, stats.dump)
        print(f"port {running.port}", flush=True)
        await stop.wait()
    if arguments.redis_url:  # The streams and hashes were this run's only: remove them.
        import redis.asyncio as redis

        client = redis.Redis.from_url(arguments.redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _serve_echo(arguments: argparse.Namespace) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    from gateway.protocol import FRAME_BYTES_MAX

    extensions = server_extensions() if arguments.echo_compression == "gateway" else None

    async def echo(connection: ServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for message in connection:
                await connection.send(message)

    stop = _stop_on_sigterm()
    async with serve(
        echo,
        "127.0.0.1",
        0,
        max_size=FRAME_BYTES_MAX,
        extensions=extensions,
        ssl=_server_tls(arguments),
    ) as server:
        print(f"port {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()


def _server_tls(arguments: argparse.Namespace) -> ssl.SSLContext | None:
    # The certificate the load driver made (--tls), passed to the server process by path.
    if not arguments.serve_tls_cert:
        return None
    return tls.server_context(arguments.serve_tls_cert, arguments.serve_tls_key)


def _client_tls(arguments: argparse.Namespace) -> ssl.SSLContext | None:
    return tls.client_context(arguments.tls_files[0]) if arguments.tls_files else None


def _server_tls_options(arguments: argparse.Namespace) -> list[str]:
    if not arguments.tls_files:
        return []
    cert_file, key_file = arguments.tls_files
    return ["--serve-tls-cert", cert_file, "--serve-tls-key", key_file]


def _scheme(arguments: argparse.Namespace) -> str:
    return "wss" if arguments.tls_files else "ws"


def _stop_on_sigterm() -> asyncio.Event:
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    return stop


def serve_main(arguments: argparse.Namespace) -> int:
    coroutine = _serve_gateway(arguments) if arguments.serve_gateway else _serve_echo(arguments)
    profile_path = os.environ.get("IPX_BENCH_PROFILE")
    if not profile_path or not arguments.serve_gateway:
        event_loop.run(coroutine, arguments.event_loop)
        return 0
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        event_loop.run(coroutine, arguments.event_loop)
    finally:
        profiler.disable()
        profiler.dump_stats(profile_path)
    return 0


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    port: int
    log_path: str

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (from /proc)."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stats(self, path: str) -> dict[str, Any]:
        """Ask the gateway process for its ServerStats totals so far (SIGUSR1); {} if none."""
        count = len(Path(path).read_text().splitlines()) if os.path.exists(path) else 0
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            lines = Path(path).read_text().splitlines() if os.path.exists(path) else []
            if len(lines) > count:
                totals: dict[str, Any] = json.loads(lines[-1])  # Floats, lag_ms and append_ms.
                return totals
            time.sleep(0.01)
        return {}

    def stop(self) -> int:
        """SIGTERM, then wait (bounded); return the exit status."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STARTUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start_server(extra: list[str], log_path: str, loop_name: str) -> ServerProcess:
    """Start this script in a server mode on that event loop and read the port it prints."""
    command = [sys.executable, str(Path(__file__).resolve()), *extra, "--event-loop", loop_name]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_S)
    line = process.stdout.readline() if ready else ""
    if not line.startswith("port "):
        process.kill()
        process.wait()
        raise RuntimeError(f"{' '.join(extra)} did not start: {Path(log_path).read_text()[-2000:]}")
    return ServerProcess(process, int(line.split()[1]), log_path)


# The venue.


def prepare_data_dir(data_dir: str, investors: list[str]) -> dict[str, str]:
    """Open the accounts (as the host's administrator) and issue their tokens."""
    tokens = {}
    roles = {"op": Role.OPERATOR, "issuer": Role.ISSUER} | dict.fromkeys(investors, Role.INVESTOR)
    for account, role in roles.items():
        create_account(data_dir, account, role)
        tokens[account], _ = sessions.issue_token(data_dir, account)
    return tokens


async def list_the_market(
    url: str, tokens: dict[str, str], investors: list[str], ssl_context: ssl.SSLContext | None
) -> None:
    """List and issue the instrument, fund the investors, open trading, sell them units."""
    op = await IpxClient.connect(url, tokens["op"], ssl_context=ssl_context)
    try:
        await op.request("op.list_asset", {
            "patent_id": PATENT, "title": "Method for verifying royalty streams",
            "jurisdiction": "US", "owner_account": "issuer", "filing_date": "2015-03-01",
            "expiry_date": "2035-03-01", "cpc_class": "H04L 9/32", "licensees": ["Acme Corp"],
            "royalty_terms": "3% of net sales", "currency": "USD",
            "trailing_royalties": "1200.00"})  # fmt: skip
        await op.request("op.issue_shares", {
            "patent_id": PATENT, "symbol": SYMBOL, "issuer_account": "issuer",
            "total_units": UNITS_PER_INVESTOR * (len(investors) + 1), "currency": "USD",
            "tick_size": "0.10", "reference_price": "100.00", "static_band_bps": 1_000,
            "opening_auction_ns": 1_000_000})  # fmt: skip
        for investor in investors:
            await op.request(
                "op.deposit",
                {"account_id": investor, "currency": "USD", "amount": CASH_PER_INVESTOR},
            )
        await op.request("op.resume", {"symbol": SYMBOL})
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while (await op.request("instruments.list"))["instruments"][0]["phase"] != "continuous":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{SYMBOL} did not reach continuous trading")
            await asyncio.sleep(0.02)
    finally:
        await op.close()
    issuer = await IpxClient.connect(url, tokens["issuer"], ssl_context=ssl_context)
    try:
        for investor in investors:
            await issuer.place(SYMBOL, "sell", UNITS_PER_INVESTOR, "100.00")
            buyer = await IpxClient.connect(url, tokens[investor], ssl_context=ssl_context)
            try:
                order = await buyer.place(SYMBOL, "buy", UNITS_PER_INVESTOR, "100.00")
                if order["filled"] != UNITS_PER_INVESTOR:
                    raise RuntimeError(f"{investor} bought {order['filled']} units, not all")
            finally:
                await buyer.close()
    finally:
        await issuer.close()


# The load.


@dataclass
class Tally:
    """What one phase counted inside its measured window (answers received in it)."""

    window_start_ns: int
    window_end_ns: int
    orders_max: int = 0  # 0: no cap; else the window ends at this many acknowledged orders.
    places: int = 0  # 200 answers to order.place.
    answers: int = 0  # Every answer.
    place_ns: array.array[int] = field(default_factory=lambda: array.array("q"))
    cancel_ns: array.array[int] = field(default_factory=lambda: array.array("q"))
    late_ns: array.array[int] = field(default_factory=lambda: array.array("q"))  # Open loop.
    errors: Counter[str] = field(default_factory=Counter)
    overloaded: bool = False

    def record(self, kind: int, answer: _Answer, start_ns: int, now_ns: int) -> None:
        if not self.window_start_ns <= now_ns < self.window_end_ns:
            return
        self.answers += 1
        if answer.status != 200:
            code = answer.error.code if answer.error is not None else "?"
            self.errors[f"{('place', 'cancel')[kind]} {answer.status} {code}"] += 1
        elif kind == PLACE:
            self.places += 1
            self.place_ns.append(now_ns - start_ns)
            if self.places == self.orders_max:
                self.window_end_ns = now_ns + 1
        else:
            self.cancel_ns.append(now_ns - start_ns)

    @property
    def seconds(self) -> float:
        return (self.window_end_ns - self.window_start_ns) / 1e9


class Pipeline:
    """One connection's requests: frames out, answers in, a start time per request id."""

    def __init__(self, connection: ClientConnection, index: int, prefix: str) -> None:
        self.connection = connection
        self.index = index
        self.prefix = f"{prefix}{index}"  # cl_ord_ids unique per account and per run.
        self.pending: dict[str, tuple[int, int]] = {}  # request id -> (kind, start ns)
        self.requests = 0
        self.orders = 0
        self.refill = True  # Closed loop: every answer but a place's sends the next place.
        self.done_sending = True

    async def send_place(self, start_ns: int) -> None:
        self.requests += 1
        self.orders += 1
        n = self.orders
        level = (n >> 1) % PRICE_LEVELS
        side, price = ("buy", BUY_PRICES[level]) if n & 1 else ("sell", SELL_PRICES[level])
        frame = PLACE_FRAME % (self.requests, self.prefix, n, side, 1 + n % QUANTITY_MAX, price)
        self.pending[str(self.requests)] = (PLACE, start_ns)
        await self.connection.send(frame)

    async def send_cancel(self, order_id: int) -> None:
        self.requests += 1
        self.pending[str(self.requests)] = (CANCEL, time.perf_counter_ns())
        await self.connection.send(CANCEL_FRAME % (self.requests, order_id))

    async def read(self, tally: Tally) -> None:
        """Take answers until nothing is pending and nothing more will be sent."""
        recv, clock = self.connection.recv, time.perf_counter_ns
        while not (self.done_sending and not self.pending):
            frame = await recv()
            now = clock()
            answer = _decode_answer(frame)
            kind, start_ns = self.pending.pop(answer.id)
            tally.record(kind, answer, start_ns, now)
            if kind == PLACE and answer.status == 200:
                # Always cancel what was placed, also after the window: the book stays small.
                # An echoed place has no result: its cancel names a made-up order id.
                result = answer.result
                await self.send_cancel(result.order_id if result else self.orders)
            elif self.refill and now < tally.window_end_ns:
                await self.send_place(now)


async def open_connections(
    url: str, tokens: list[str], compression: str, ssl_context: ssl.SSLContext | None
) -> list[Pipeline]:
    from gateway.protocol import FRAME_BYTES_MAX

    tls_options: dict[str, Any] = {} if ssl_context is None else {"ssl": ssl_context}

    prefix = secrets.token_hex(3)
    pipes = []
    for index, token in enumerate(tokens):
        connection = await connect(
            url,
            additional_headers={"Authorization": f"Bearer {token}"},
            # As IpxClient does (gateway/compression.py): small requests plain, or none at all.
            compression=None if compression == "none" else compression,
            extensions=None if compression == "none" else client_extensions(),
            max_size=FRAME_BYTES_MAX,
            open_timeout=STARTUP_TIMEOUT_S,
            **tls_options,
        )
        pipes.append(Pipeline(connection, index, prefix))
    return pipes


async def closed_loop(pipes: list[Pipeline], in_flight: int, tally: Tally) -> None:
    """Keep in_flight requests outstanding on every connection until the window ends."""
    readers = [asyncio.create_task(pipe.read(tally)) for pipe in pipes]
    for pipe in pipes:
        for _ in range(in_flight):
            await pipe.send_place(time.perf_counter_ns())
    await _finish(readers, tally)


async def open_loop(pipes: list[Pipeline], orders_per_s: float, tally: Tally) -> None:
    """Send places on a fixed schedule, round robin over the connections, until the window ends.

    Each place's start time is its scheduled time, however late the send: the latency then
    includes any stall, of the server or of this client, that delayed it.
    """
    for pipe in pipes:
        pipe.refill, pipe.done_sending = False, False
    readers = [asyncio.create_task(pipe.read(tally)) for pipe in pipes]
    interval_ns = 1e9 / orders_per_s
    first_ns, n, clock = time.perf_counter_ns(), 0, time.perf_counter_ns
    while True:
        due = first_ns + int(n * interval_ns)
        if due >= tally.window_end_ns or any(task.done() for task in readers):
            break
        now = clock()
        if due > now:
            wait = due - now
            await asyncio.sleep((wait - 1_000_000) / 1e9 if wait > SPIN_BELOW_NS else 0)
            continue
        if due >= tally.window_start_ns:
            tally.late_ns.append(now - due)
        pipe = pipes[n % len(pipes)]
        await pipe.send_place(due)
        n += 1
        if len(pipe.pending) > OPEN_LOOP_BACKLOG_MAX:
            tally.overloaded = True
            break
    for pipe, reader in zip(pipes, readers, strict=True):
        pipe.done_sending = True
        if not pipe.pending:
            reader.cancel()
    await _finish(readers, tally)


async def _finish(readers: list[asyncio.Task[None]], tally: Tally) -> None:
    timeout_s = max(0.0, (tally.window_end_ns - time.perf_counter_ns()) / 1e9) + DRAIN_TIMEOUT_S
    done, stuck = await asyncio.wait(readers, timeout=timeout_s)
    for task in stuck:
        task.cancel()
        tally.errors["no answer within the drain timeout"] += 1
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


# Figures.

try:
    from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - the bench extra installs it.
    HdrHistogram = None


def histogram_name() -> str:
    if HdrHistogram is None:
        return "sorted raw samples (hdrhistogram is not installed)"
    return f"HDR histogram (hdrhistogram {version('hdrhistogram')}, 3 significant digits)"


def percentiles(samples_ns: array.array[int]) -> dict[str, float]:
    """n, p50, p99, p99.9 and max of latency samples, in milliseconds."""
    if not samples_ns:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "p99.9": 0.0, "max": 0.0}
    if HdrHistogram is not None:
        histogram = HdrHistogram(1, 3_600 * 10**9, 3)
        for value in samples_ns:
            histogram.record_value(max(1, value))
        at = histogram.get_value_at_percentile
        figures = {"p50": at(50), "p99": at(99), "p99.9": at(99.9), "max": max(samples_ns)}
    else:
        ordered = sorted(samples_ns)
        rank = len(ordered) - 1

        def at(percentile: float) -> int:
            return ordered[min(rank, round(percentile / 100 * rank))]

        figures = {"p50": at(50), "p99": at(99), "p99.9": at(99.9), "max": ordered[-1]}
    return {"n": len(samples_ns)} | {key: value / 1e6 for key, value in figures.items()}


def summary(tally: Tally, cpu: dict[str, float]) -> dict[str, Any]:
    return {
        "seconds": round(tally.seconds, 3),
        "orders_per_s": tally.places / tally.seconds,
        "answers_per_s": tally.answers / tally.seconds,
        "place_ms": percentiles(tally.place_ns),
        "cancel_ms": percentiles(tally.cancel_ns),
        "send_late_ms": percentiles(tally.late_ns),
        "errors": dict(tally.errors),
        "overloaded": tally.overloaded,
        "cpu": cpu,
    }


async def run_phase(
    url: str,
    tokens: list[str],
    arguments: argparse.Namespace,
    server: ServerProcess,
    open_loop_rate: float = 0.0,
    stats_path: str = "",
) -> dict[str, Any]:
    """Connect, run one phase (closed loop, or open loop at open_loop_rate), disconnect."""
    pipes = await open_connections(url, tokens, arguments.compression, _client_tls(arguments))
    before = server.stats(stats_path) if stats_path else {}
    start_ns = time.perf_counter_ns() + int(arguments.warmup * 1e9)
    tally = Tally(start_ns, start_ns + int(arguments.duration * 1e9), arguments.orders)
    cpu_server, cpu_client = server.cpu_seconds(), time.process_time()
    try:
        if open_loop_rate:
            await open_loop(pipes, open_loop_rate, tally)
        else:
            await closed_loop(pipes, arguments.in_flight, tally)
    finally:
        for pipe in pipes:
            await pipe.connection.close()
    wall = (time.perf_counter_ns() - start_ns) / 1e9 + arguments.warmup
    cpu = {
        "server": (server.cpu_seconds() - cpu_server) / wall,
        "client": (time.process_time() - cpu_client) / wall,
    }
    figures = summary(tally, cpu)
    if before:
        figures["server"] = _server_figures(before, server.stats(stats_path), wall)
    return figures


def _quantiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    if not ordered:
        return {"n": 0}

    def at(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return {"n": len(ordered), "p50": at(0.5), "p99": at(0.99), "max": ordered[-1]}


def _server_figures(before: dict[str, Any], after: dict[str, Any], wall: float) -> Any:
    if not after:
        return {}
    delta = {
        key: after[key] - before[key]
        for key in after
        if not key.endswith("_max_s") and key not in ("lag_ms", "append_ms")
    }
    appends = delta["appends"] or 1
    lag_ms = {
        sink: samples[len(before.get("lag_ms", {}).get(sink, [])) :]
        for sink, samples in after.get("lag_ms", {}).items()
    }
    return {
        "publish_lag_ms": {sink: _quantiles(samples) for sink, samples in lag_ms.items()},
        "appends": delta["appends"],
        "records_per_append": delta["records"] / appends,
        "append_ms_mean": 1e3 * delta["append_s"] / appends,
        "append_ms": _quantiles(after["append_ms"][len(before.get("append_ms", [])) :]),
        "append_share": delta["append_s"] / wall,
        "snapshots": delta["snapshots"],
        "snapshot_ms_total": 1e3 * delta["snapshot_s"],
        "gc_full_pauses": delta["gc_pauses"],
        "gc_full_ms_total": 1e3 * delta["gc_s"],
        "gc_full_ms_max_so_far": 1e3 * after["gc_max_s"],
    }


async def run_gateway(arguments: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    investors = [f"investor{index}" for index in range(arguments.connections)]
    progress(f"preparing {data_dir}: accounts and tokens for {len(investors)} investors")
    tokens = prepare_data_dir(data_dir, investors)
    integrations = [
        *(["--redis-url", arguments.redis_url] if arguments.redis_url else []),
        *(["--mqtt-url", arguments.mqtt_url] if arguments.mqtt_url else []),
    ]
    server = start_server(
        ["--serve-gateway", data_dir, *integrations, *_server_tls_options(arguments)],
        os.path.join(data_dir, "server.log"),
        arguments.event_loop,
    )
    url = f"{_scheme(arguments)}://127.0.0.1:{server.port}/"
    results: dict[str, Any] = {}
    try:
        progress(f"gateway (pid {server.process.pid}) at {url}: listing the market")
        await list_the_market(url, tokens, investors, _client_tls(arguments))
        investor_tokens = [tokens[investor] for investor in investors]
        progress(f"closed loop: {arguments.warmup:g} s warm-up + {arguments.duration:g} s")
        stats_path = os.path.join(data_dir, STATS_FILE)
        results["closed"] = await run_phase(
            url, investor_tokens, arguments, server, stats_path=stats_path
        )
        rate = arguments.open_rate or results["closed"]["orders_per_s"] / 2
        progress(
            f"closed loop: {results['closed']['orders_per_s']:,.0f} orders/s; "
            f"open loop at {rate:,.0f} orders/s"
        )
        if rate > 0:
            results["open"] = await run_phase(
                url, investor_tokens, arguments, server, rate, stats_path
            )
            results["open"]["target_orders_per_s"] = rate
            results["open"]["rate_rule"] = (
                "the rate given (--open-rate)" if arguments.open_rate else "half the max rate"
            )
    finally:
        status = server.stop()
        progress(f"gateway stopped (exit status {status})")
    results["server_exit_status"] = status
    return results


async def run_echo(arguments: argparse.Namespace, log_dir: str) -> dict[str, Any]:
    server = start_server(
        [
            *("--serve-echo", "--echo-compression", arguments.echo_compression),
            *_server_tls_options(arguments),
        ],
        os.path.join(log_dir, "echo.log"),
        arguments.event_loop,
    )
    try:
        progress(f"echo server (pid {server.process.pid}): closed loop")
        url = f"{_scheme(arguments)}://127.0.0.1:{server.port}/"
        tokens = [f"echo-{index}" for index in range(arguments.connections)]
        return await run_phase(url, tokens, arguments, server)
    finally:
        server.stop()


# The report.


def _latency(figures: dict[str, float]) -> str:
    return " / ".join(f"{figures[key]:.2f}" for key in ("p50", "p99", "p99.9", "max"))


def report_lines(results: dict[str, Any]) -> list[str]:
    """The figures table, the ratio to the echo ceiling and the targets (PASS/MISS)."""
    closed, open_, echo = results["closed"], results.get("open"), results.get("echo")
    lines = [
        "| phase | orders/s | answers/s | place ack ms p50 / p99 / p99.9 / max "
        "| cancel ms p50 / p99 | server CPU | client CPU | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    rows = [("gateway, closed loop", closed), ("gateway, open loop", open_)]
    for name, figures in [*rows, ("echo server, closed loop", echo)]:
        if figures is None:
            continue
        cancel = figures["cancel_ms"]
        lines.append(
            f"| {name} | {figures['orders_per_s']:,.0f} | {figures['answers_per_s']:,.0f} "
            f"| {_latency(figures['place_ms'])} | {cancel['p50']:.2f} / {cancel['p99']:.2f} "
            f"| {figures['cpu']['server']:.0%} | {figures['cpu']['client']:.0%} "
            f"| {sum(figures['errors'].values()) or 'none'} |"
        )
    lines.append("(for the echo server an 'order' is an echoed order.place frame)")
    for name, figures in [*rows, ("echo", echo)]:
        if figures and figures["errors"]:
            lines.append(f"errors, {name}: {figures['errors']}")
    if open_ is not None:
        late = open_["send_late_ms"]
        lines.append(
            f"open loop: scheduled {open_['target_orders_per_s']:,.0f} orders/s, sent "
            f"{late['n'] / open_['seconds']:,.0f}/s; send lateness behind the schedule "
            f"p50 {late['p50']:.2f} ms, p99 {late['p99']:.2f} ms (part of each place's latency)"
            + ("; ABANDONED: the server fell too far behind" if open_["overloaded"] else "")
        )
    for name, figures in rows:
        server = (figures or {}).get("server")
        if server:
            append = server["append_ms"]
            lines.append(
                f"gateway process, {name.split(', ')[1]}: {server['appends']:,.0f} journal "
                f"appends of {server['records_per_append']:.1f} records, "
                f"{server['append_ms_mean']:.2f} ms each, p99 {append.get('p99', 0):.2f}, "
                f"max {append.get('max', 0):.2f} (write + fdatasync, on the event loop: "
                f"{server['append_share']:.0%} of the phase); {server['snapshots']:.0f} "
                f"snapshots ({server['snapshot_ms_total']:.0f} ms); "
                f"{server['gc_full_pauses']:.0f} full GC pauses ({server['gc_full_ms_total']:.0f}"
                f" ms, the longest so far {server['gc_full_ms_max_so_far']:.0f} ms)"
            )
        for sink, lag in (server or {}).get("publish_lag_ms", {}).items():
            if lag["n"]:
                lines.append(
                    f"publish lag to {sink}, {name.split(', ')[1]} (durable batch -> the sink "
                    f"took it; {lag['n']:,} samples, one in flight at a time): p50 "
                    f"{lag['p50']:.2f} ms, p99 {lag['p99']:.2f} ms, max {lag['max']:.2f} ms"
                )
    lines += target_lines(closed, open_, echo)
    return lines


def target_lines(
    closed: dict[str, Any], open_: dict[str, Any] | None, echo: dict[str, Any] | None
) -> list[str]:
    def verdict(met: bool) -> str:
        return "PASS" if met else "MISS"

    orders = closed["orders_per_s"]
    lines = [
        f"target acknowledged orders/s >= {TARGET_ORDERS_PER_S:,}: {orders:,.0f} "
        f"{verdict(orders >= TARGET_ORDERS_PER_S)}"
    ]
    if open_ is not None:
        p99 = open_["place_ms"]["p99"]
        lines.append(
            f"target place ack p99 <= {TARGET_P99_MS:g} ms at {open_['rate_rule']} "
            f"({open_['target_orders_per_s']:,.0f} orders/s, open loop): {p99:.2f} ms "
            f"{verdict(p99 <= TARGET_P99_MS and not open_['overloaded'])}"
        )
    if echo is not None and echo["answers_per_s"]:
        ratio = closed["answers_per_s"] / echo["answers_per_s"]
        lines.append(
            f"gateway / echo: answers {ratio:.0%} (one request frame in, one answer out: "
            f"like for like), acknowledged orders {orders / echo['orders_per_s']:.0%} of echoed "
            f"order.place frames"
        )
        lines.append(
            f"target gateway >= {TARGET_ECHO_RATIO:.0%} of the echo ceiling (answers/s): "
            f"{ratio:.0%} {verdict(ratio >= TARGET_ECHO_RATIO)}"
        )
    return lines


def header_lines(arguments: argparse.Namespace, argv: Sequence[str]) -> list[str]:
    command = "python bench/gateway_bench.py" + " ".join(["", *argv]).rstrip()
    return [
        f"command: {command}",
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}, "
        f"websockets {version('websockets')}, {platform.system()}",
        f"event loops: servers (gateway and echo) {arguments.event_loop}, load driver "
        f"{arguments.client_event_loop}",
        f"compression: {_compression_line(arguments)}",
        "transport: "
        + (
            f"TLS ({ssl.OPENSSL_VERSION}; a self-signed P-256 certificate), both servers"
            if arguments.tls
            else "plain TCP"
        ),
        f"git {git_revision('gateway', 'bench')}, load average {load_average()}",
        f"load: {arguments.connections} connections (one investor account each), "
        f"{arguments.in_flight} requests in flight per connection, "
        f"{arguments.warmup:g} s warm-up + {arguments.duration:g} s per phase"
        + (f", at most {arguments.orders:,} orders" if arguments.orders else ""),
        "integrations: "
        + (
            ", ".join(
                f"{name} {url}"
                for name, url in (("redis", arguments.redis_url), ("mqtt", arguments.mqtt_url))
                if url
            )
            or "none (the embedded default)"
        ),
        f"latency: send to answer, from {histogram_name()}",
    ]


def _compression_line(arguments: argparse.Namespace) -> str:
    if arguments.compression == "none":
        return "none (the load driver offers no extension)"
    plain = f"messages under {COMPRESS_MIN_BYTES:,} bytes plain, larger ones deflated"
    echo = (
        "the same"
        if arguments.echo_compression == "gateway"
        else "websockets' default (deflates every message)"
    )
    return f"permessage-deflate; gateway and load driver (as IpxClient): {plain}; echo: {echo}"


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per phase, 0.5 s warm-up")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument(
        "--in-flight", type=int, default=16, help=f"per connection (at most {IN_FLIGHT_MAX})"
    )
    parser.add_argument("--duration", type=float, default=0.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=-1.0, help="seconds before measuring")
    parser.add_argument("--orders", type=int, default=0, help="end a phase at this many orders")
    parser.add_argument(
        "--open-rate", type=float, default=0.0, help="open-loop orders/s (default: half the max)"
    )
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--no-echo", action="store_true", help="skip the echo ceiling")
    parser.add_argument(
        "--echo-compression",
        choices=("websockets", "gateway"),
        default="websockets",
        help="the echo server's extension: websockets' default (deflates every message) or "
        "the gateway's (small messages plain)",
    )
    parser.add_argument("--dir", default="", help="parent of the data dir (default: temp dir)")
    parser.add_argument("--redis-url", default="", help="also publish to Redis; report the lag")
    parser.add_argument("--mqtt-url", default="", help="also publish to MQTT; report the lag")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    event_loop.add_argument(
        parser, "--event-loop", "the gateway's and the echo server's loop (default: as ipx serve)"
    )
    event_loop.add_argument(parser, "--client-event-loop", "the load driver's loop")
    parser.add_argument(
        "--tls",
        action="store_true",
        help="over TLS (wss://), the gateway and the echo server alike, with a self-signed "
        "certificate made for the run",
    )
    parser.add_argument("--serve-gateway", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-tls-cert", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-tls-key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--serve-echo", action="store_true", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    arguments.tls_files = ()  # (cert, key) once run() has made them, with --tls.
    if arguments.duration <= 0:
        arguments.duration = 3.0 if arguments.quick else 10.0
    if arguments.warmup < 0:
        arguments.warmup = 0.5 if arguments.quick else 1.0
    if not 1 <= arguments.in_flight <= IN_FLIGHT_MAX:
        parser.error(f"--in-flight must be 1 to {IN_FLIGHT_MAX} (the server's limit)")
    if not 1 <= arguments.connections <= 64:
        parser.error("--connections must be 1 to 64")
    return arguments


async def run(arguments: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ipx-gateway-bench-", dir=arguments.dir or None) as d:
        if arguments.tls:
            arguments.tls_files = tls.write_self_signed(d)
        results = await run_gateway(arguments, d)
        if not arguments.no_echo:
            results["echo"] = await run_echo(arguments, d)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    arguments = parse_arguments(argv)
    if arguments.serve_gateway or arguments.serve_echo:
        return serve_main(arguments)
    for line in header_lines(arguments, argv):
        print(line, flush=True)
    results = event_loop.run(run(arguments), arguments.client_event_loop)
    for line in report_lines(results):
        print(line)
    print(f"load average at the end {load_average()}")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["server_exit_status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
