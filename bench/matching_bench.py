"""Benchmark of the matching engine (matching.book.OrderBook) on the reference stream.

Run from the repository root:
    .venv/bin/python bench/matching_bench.py            # the full stream (a few minutes)
    .venv/bin/python bench/matching_bench.py --quick    # a short stream (seconds)
    .venv/bin/python bench/matching_bench.py --plot latency.png

What it measures, on the stream of bench/reference_stream.py (generated before any timing):
- throughput: the whole measured section timed as one block (no per-command timer), on a
  fresh book that first replays the same warm-up; the median of `--runs` runs;
- latency: one more run timing each command with time.perf_counter_ns; the timer's own cost
  (two back-to-back calls) is measured and subtracted; an amend counts as one command (cancel
  + new order);
- peak RSS growth: VmHWM after the first measured run minus VmRSS before it, with the peak
  reset (/proc/self/clear_refs) just before it;
- correctness of the figures: one more run counts the events (trades, volume, rejections,
  self-trade cancels) and the final depth, which must equal the generator's model book;
- the same stream through published Python order-book libraries (pyorderbook,
  akhil4n-orderbook) if installed, in the same process, and the ratio ours / theirs.
The stream and the books' command tuples are frozen out of the garbage collector's view
(gc.freeze) before timing, so a collection walks the book's objects, not the benchmark's.
The process exits 1 if the engine's counts differ from the model's; never on a timing.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # Run as a script, Python puts bench/ (not the repository root) on the path.
    sys.path.insert(0, str(ROOT))

from bench import reference_stream as rs  # noqa: E402
from bench.machine import cpu_model, git_revision, load_average, progress  # noqa: E402

TARGET_COMMANDS_PER_SECOND = 1_000_000
TARGET_P99_NS = 5_000
TARGET_RSS_GROWTH_BYTES = 15 * 1024 * 1024
TARGET_RATIO = 2.0
LIBRARY_TIME_BUDGET_S = 90.0  # Per library: fewer runs when one run is slow.


# ---------------------------------------------------------------- machine and memory


def _status_bytes(key: str) -> int:
    """A `Vm*` line of /proc/self/status, in bytes (0 where there is no /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    """Make VmHWM start again from the current RSS (Linux 4.0+), so a peak is the run's own."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def command_line() -> str:
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        shown = "python"
    return shlex.join([shown, *sys.argv])


# ---------------------------------------------------------------- books under test


@dataclass
class Counts:
    """What a book did with the whole stream (warm-up and measured)."""

    trades: int = 0
    volume_units: int = 0
    resting: int = 0
    levels: int = 0
    rejections: int = 0
    self_trade_cancels: int = 0


@dataclass
class Subject:
    """A book under test: how to build one, feed it prepared commands, and count its output.

    `prepare` turns stream commands into the book's own argument tuples (enums, objects) before
    timing; `run(state, prepared)` replays them on `state` made by `new`.
    """

    name: str
    version: str
    mapping: str
    prepare: Callable[[list[rs.Command]], list[tuple[Any, ...]]]
    new: Callable[[], Any]
    run: Callable[[Any, list[tuple[Any, ...]]], None]
    count: Callable[[list[tuple[Any, ...]], list[tuple[Any, ...]]], Counts]
    run_latency: Callable[[Any, list[tuple[Any, ...]], list[int]], None] | None = None


def engine_subject() -> Subject:
    """Our engine: amend is cancel + new order (as the stream says); a market order is IOC."""
    from matching.book import OrderBook
    from matching.events import OrderCanceled, OrderFilled, OrderRejected
    from matching.orders import CancelReason, OrderType, Side, TimeInForce

    sides = (Side.BUY, Side.SELL)
    market, ioc = OrderType.MARKET, TimeInForce.IOC

    def prepare(commands: list[rs.Command]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for command in commands:
            kind = command[0]
            if kind == rs.CANCEL:
                out.append(command)
            elif kind == rs.AMEND:
                _, old_id, new_id, owner, side, price, quantity = cast(rs.Amend, command)
                out.append((kind, old_id, new_id, owner, sides[side], price, quantity))
            else:  # A limit or a market order: the same layout.
                _, order_id, owner, side, price, quantity = cast(rs.Limit, command)
                out.append((kind, order_id, owner, sides[side], price, quantity))
        return out

    def run(book: OrderBook, commands: list[tuple[Any, ...]]) -> None:
        place, cancel = book.place, book.cancel
        for c in commands:
            kind = c[0]
            if kind == 0:
                place(c[1], c[2], c[3], c[4], c[5])
            elif kind == 2:
                cancel(c[1])
            elif kind == 1:
                place(c[1], c[2], c[3], c[4], c[5], market, ioc)
            else:
                cancel(c[1])
                place(c[2], c[3], c[4], c[5], c[6])

    def run_latency(book: OrderBook, commands: list[tuple[Any, ...]], out: list[int]) -> None:
        place, cancel, clock, record = book.place, book.cancel, time.perf_counter_ns, out.append
        for c in commands:
            kind = c[0]
            if kind == 0:
                start = clock()
                place(c[1], c[2], c[3], c[4], c[5])
                end = clock()
            elif kind == 2:
                start = clock()
                cancel(c[1])
                end = clock()
            elif kind == 1:
                start = clock()
                place(c[1], c[2], c[3], c[4], c[5], market, ioc)
                end = clock()
            else:
                start = clock()
                cancel(c[1])
                place(c[2], c[3], c[4], c[5], c[6])
                end = clock()
            record(end - start)

    def count(warmup: list[tuple[Any, ...]], measured: list[tuple[Any, ...]]) -> Counts:
        book, counts = OrderBook(), Counts()
        for c in [*warmup, *measured]:
            kind = c[0]
            if kind == 0:
                events = book.place(c[1], c[2], c[3], c[4], c[5])
            elif kind == 2:
                events = book.cancel(c[1])
            elif kind == 1:
                events = book.place(c[1], c[2], c[3], c[4], c[5], market, ioc)
            else:
                events = book.cancel(c[1]) + book.place(c[2], c[3], c[4], c[5], c[6])
            for event in events:
                if isinstance(event, OrderFilled):
                    counts.trades += 1
                    counts.volume_units += event.quantity_units
                elif isinstance(event, OrderRejected):
                    counts.rejections += 1
                elif isinstance(event, OrderCanceled) and event.reason is CancelReason.SELF_TRADE:
                    counts.self_trade_cancels += 1
        counts.resting = len(book)
        bids, asks = book.l2(1 << 30)
        counts.levels = len(bids) + len(asks)
        return counts

    return Subject(
        name="ipx matching.book.OrderBook",
        version=git_revision("matching", "bench"),
        mapping="limit GTC; market as MARKET IOC at its protection price; amend as cancel + new",
        prepare=prepare,
        new=OrderBook,
        run=run,
        count=count,
        run_latency=run_latency,
    )


class _NullBook:
    """Takes every command and does nothing: what the replay loop itself costs."""

    def place(
        self,
        order_id: int,
        owner: str,
        side: object,
        price_ticks: int,
        quantity_units: int,
        order_type: object = None,
        time_in_force: object = None,
    ) -> list[object]:
        return []

    def cancel(self, order_id: int) -> list[object]:
        return []


def harness_overhead_ns(prepared: list[tuple[Any, ...]], engine: Subject) -> float:
    """Nanoseconds per command of the replay loop with an empty method per call."""
    book = _NullBook()
    start = time.perf_counter_ns()
    engine.run(book, prepared)
    return (time.perf_counter_ns() - start) / max(len(prepared), 1)


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"


def _library_prepare(sides: tuple[Any, Any]) -> Callable[[list[rs.Command]], list[tuple[Any, ...]]]:
    """Stream commands as (kind, ids..., library side, price, quantity): no owner, no STP."""

    def prepare(commands: list[rs.Command]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for command in commands:
            kind = command[0]
            if kind == rs.CANCEL:
                out.append(command)
            elif kind == rs.AMEND:
                _, old_id, new_id, _, side, price, quantity = cast(rs.Amend, command)
                out.append((kind, old_id, new_id, sides[side], price, quantity))
            else:  # A limit or a market order: the same layout.
                _, order_id, _, side, price, quantity = cast(rs.Limit, command)
                out.append((kind, order_id, sides[side], price, quantity))
        return out

    return prepare


def pyorderbook_subject() -> Subject:
    """pyorderbook"""
    import pyorderbook

    symbol = "RS-BENCH"
    sides = (pyorderbook.Side.BID, pyorderbook.Side.ASK)
    order_class = pyorderbook.Order

    def new() -> tuple[Any, dict[int, Any]]:
        # Its cancel takes the Order object: keep our id -> its Order for resting orders.
        return pyorderbook.Book(), {}

    def run(state: tuple[Any, dict[int, Any]], commands: list[tuple[Any, ...]]) -> None:
        book, live = state
        match, cancel = book.match, book.cancel
        for c in commands:
            kind = c[0]
            if kind == 0:
                order = order_class(c[2], symbol, c[3], c[4])
                match(order)
                if order.quantity:
                    live[c[1]] = order
            elif kind == 2:
                cancel(live.pop(c[1]))
            elif kind == 1:
                order = order_class(c[2], symbol, c[3], c[4])
                match(order)
                if order.quantity:  # IOC: the remainder rested; take it off.
                    cancel(order)
            else:
                cancel(live.pop(c[1]))
                order = order_class(c[3], symbol, c[4], c[5])
                match(order)
                if order.quantity:
                    live[c[2]] = order

    def count(warmup: list[tuple[Any, ...]], measured: list[tuple[Any, ...]]) -> Counts:
        state, counts = new(), Counts()
        book = state[0]
        original_match = book.match

        def counting_match(order: Any) -> Any:
            blotter = original_match(order)
            counts.trades += len(blotter.trades)
            counts.volume_units += sum(trade.fill_quantity for trade in blotter.trades)
            return blotter

        book.match = counting_match
        run(state, [*warmup, *measured])
        counts.resting = len(book.order_map)
        counts.levels = sum(
            1 for by_side in book.level_map.values() for levels in by_side.values()
            for level in levels.values() if level.orders
        )  # fmt: skip
        return counts

    return Subject(
        name="pyorderbook",
        version=_distribution_version("pyorderbook"),
        mapping=(
            "no market orders or IOC: a market order is a limit at its protection price whose "
            "remainder is canceled; amend as cancel + new; prices as ints (it converts them "
            "to Decimal)"
        ),
        prepare=_library_prepare(sides),
        new=new,
        run=run,
        count=count,
    )


def akhil4n_subject() -> Subject:
    """akhil4n-orderbook (module `orderbook`)"""
    version = _distribution_version("akhil4n-orderbook")
    if version == "unknown version":
        raise ImportError("No module named 'orderbook' from akhil4n-orderbook")
    import orderbook

    sides = (orderbook.OrderSide.BID, orderbook.OrderSide.ASK)
    order_class = orderbook.Order

    def new() -> tuple[Any, dict[int, str]]:
        # It numbers orders itself: keep our id -> its id for resting orders.
        return orderbook.OrderBook(), {}

    def run(state: tuple[Any, dict[int, str]], commands: list[tuple[Any, ...]]) -> None:
        book, live = state
        add, cancel = book.add_limit_order, book.cancel_order
        for c in commands:
            kind = c[0]
            if kind == 0:
                order = order_class(c[2], c[3], c[4])
                add(order)
                if order.remaining_quantity:
                    live[c[1]] = order.order_id
            elif kind == 2:
                cancel(live.pop(c[1]))
            elif kind == 1:
                order = order_class(c[2], c[3], c[4])
                add(order)
                if order.remaining_quantity:  # IOC: the remainder rested; take it off.
                    cancel(order.order_id)
            else:
                cancel(live.pop(c[1]))
                order = order_class(c[3], c[4], c[5])
                add(order)
                if order.remaining_quantity:
                    live[c[2]] = order.order_id

    def count(warmup: list[tuple[Any, ...]], measured: list[tuple[Any, ...]]) -> Counts:
        state = new()
        run(state, [*warmup, *measured])
        book = state[0]
        levels = [*book.bids.values(), *book.asks.values()]
        return Counts(
            trades=len(book.trade_log),
            volume_units=sum(trade.quantity_filled for trade in book.trade_log),
            resting=len(book.orders),
            levels=sum(1 for level in levels if level.queue),
        )

    return Subject(
        name="akhil4n-orderbook",
        version=version,
        mapping=(
            "its market order has no protection price and no IOC: a market order is a limit at "
            "its protection price whose remainder is canceled; amend as cancel + new; prices "
            "as ints (it takes Decimal or int)"
        ),
        prepare=_library_prepare(sides),
        new=new,
        run=run,
        count=count,
    )


LIBRARY_SUBJECTS = (pyorderbook_subject, akhil4n_subject)


def library_subjects() -> tuple[list[Subject], list[str]]:
    """The published libraries that are installed, and a line for each that is not."""
    subjects, missing = [], []
    for build in LIBRARY_SUBJECTS:
        try:
            subjects.append(build())
        except ImportError as error:
            name = (build.__doc__ or build.__name__).splitlines()[0]
            missing.append(f"{name}: not installed ({error}); pip install -e '.[bench]' adds it")
    return subjects, missing


# ---------------------------------------------------------------- measurements


@dataclass
class Throughput:
    runs_per_second: list[float] = field(default_factory=list)
    rss_growth_bytes: int | None = None  # Peak over the measured commands.
    rss_growth_with_warmup_bytes: int | None = None  # Peak from before the book was built.

    @property
    def median(self) -> float:
        return statistics.median(self.runs_per_second)


def _fresh_book(subject: Subject, warmup: list[tuple[Any, ...]]) -> Any:
    state = subject.new()
    subject.run(state, warmup)
    gc.collect()
    return state


def measure_throughput(
    subject: Subject,
    warmup: list[tuple[Any, ...]],
    measured: list[tuple[Any, ...]],
    runs: int,
    measure_rss: bool = False,
    budget_s: float | None = None,
) -> Throughput:
    """Time `runs` replays of `measured`, each on a fresh book after `warmup`.

    With `measure_rss`, the first run also records the peak RSS growth, twice: from just
    before the measured commands, and from before the fresh book was built (warm-up included).
    """
    result = Throughput()
    for index in range(runs):
        rss_at_start = _status_bytes("VmRSS") if measure_rss and index == 0 else 0
        peak_reset = _reset_peak_rss() if rss_at_start else False
        state = _fresh_book(subject, warmup)
        if peak_reset:
            result.rss_growth_with_warmup_bytes = _status_bytes("VmHWM") - rss_at_start
            rss_before = _status_bytes("VmRSS")
            _reset_peak_rss()
        start = time.perf_counter_ns()
        subject.run(state, measured)
        elapsed_ns = time.perf_counter_ns() - start
        if peak_reset:
            result.rss_growth_bytes = _status_bytes("VmHWM") - rss_before
            result.rss_growth_with_warmup_bytes = max(
                result.rss_growth_with_warmup_bytes or 0,
                _status_bytes("VmHWM") - rss_at_start,
            )
        result.runs_per_second.append(len(measured) * 1e9 / elapsed_ns)
        progress(f"  {subject.name}: run {index + 1}/{runs}: {result.runs_per_second[-1]:,.0f}/s")
        del state
        if budget_s is not None and elapsed_ns * (index + 2) / 1e9 > budget_s:
            break  # Slow library: one more run would blow its time budget.
    return result


def timer_overhead_ns(samples: int = 200_000) -> list[int]:
    clock = time.perf_counter_ns
    deltas = []
    for _ in range(samples):
        start = clock()
        deltas.append(clock() - start)
    return sorted(deltas)


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return 0
    rank = max(1, -(-len(sorted_values) * fraction // 1))
    return sorted_values[min(int(rank), len(sorted_values)) - 1]


@dataclass
class Latency:
    overhead_ns: int  # Median of two back-to-back timer calls, subtracted below.
    # Floats: the overhead subtracted is the unrounded median of an even number of samples.
    overall: list[float]  # Sorted, overhead subtracted.
    by_kind: dict[str, list[float]]  # Sorted, overhead subtracted.


def measure_latency(
    subject: Subject, warmup: list[tuple[Any, ...]], measured: list[tuple[Any, ...]]
) -> Latency:
    assert subject.run_latency is not None
    overhead = statistics.median(timer_overhead_ns())
    state = _fresh_book(subject, warmup)
    raw: list[int] = []
    subject.run_latency(state, measured, raw)
    net = [max(value - overhead, 0) for value in raw]
    by_kind: dict[str, list[float]] = {name: [] for name in rs.KIND_NAMES}
    for command, value in zip(measured, net, strict=True):
        by_kind[rs.KIND_NAMES[command[0]]].append(value)
    for values in by_kind.values():
        values.sort()
    net.sort()
    return Latency(int(overhead), net, by_kind)


# ---------------------------------------------------------------- report


def _us(ns: float) -> str:
    return f"{ns / 1000:.2f} µs"


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class Results:
    spec: rs.StreamSpec
    stream: rs.ReferenceStream
    engine: Subject | None = None
    engine_error: str = ""
    engine_throughput: Throughput | None = None
    latency: Latency | None = None
    engine_counts: Counts | None = None
    harness_ns: float = 0.0
    libraries: list[tuple[Subject, Throughput, Counts]] = field(default_factory=list)
    missing_libraries: list[str] = field(default_factory=list)


def model_counts(stream: rs.ReferenceStream) -> Counts:
    measured = stream.measured_stats
    return Counts(
        trades=stream.warmup_stats.trades + measured.trades,
        volume_units=stream.warmup_stats.volume_units + measured.volume_units,
        resting=measured.resting_end,
        levels=measured.levels_end,
    )


def _counts_line(counts: Counts, model: Counts) -> str:
    agrees = (counts.trades, counts.volume_units, counts.resting, counts.levels) == (
        model.trades,
        model.volume_units,
        model.resting,
        model.levels,
    )
    verdict = "equal to the model book" if agrees else "DIFFERENT FROM THE MODEL BOOK"
    return (
        f"whole stream: {counts.trades:,} trades, {counts.volume_units:,} units, "
        f"{counts.resting:,} resting over {counts.levels:,} levels at the end: {verdict}"
    )


def header_lines(
    spec: rs.StreamSpec, title: str = "IPX matching engine benchmark (bench/matching_bench.py)"
) -> list[str]:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        title,
        f"command: {command_line()}",
        f"machine: {cpus} CPUs ({cpu_model()}), {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.machine()}",
        f"revision: {git_revision('matching', 'bench')}",
        f"load average at the start: {load_average()}",
        f"stream: seed {spec.seed}, {spec.warmup_commands:,} warm-up commands (the first "
        f"{spec.initial_resting_orders:,} resting limits), "
        f"then {spec.measured_commands:,} measured",
    ]


def engine_lines(results: Results) -> list[str]:
    if results.engine is None:
        return [f"engine: NOT MEASURED: matching.book could not be used ({results.engine_error})"]
    throughput, latency, counts = (
        results.engine_throughput,
        results.latency,
        results.engine_counts,
    )
    assert throughput is not None and latency is not None and counts is not None
    runs = ", ".join(f"{value:,.0f}" for value in throughput.runs_per_second)
    lines = [
        f"engine: {results.engine.name} at {results.engine.version}",
        f"  mapping: {results.engine.mapping}",
        f"  throughput: {throughput.median:,.0f} commands/s "
        f"(median of {len(throughput.runs_per_second)}: {runs})",
        f"  latency per command, n={len(latency.overall):,}, timer overhead "
        f"{latency.overhead_ns} ns subtracted: p50 {_us(percentile(latency.overall, 0.5))}, "
        f"p99 {_us(percentile(latency.overall, 0.99))}, "
        f"p99.9 {_us(percentile(latency.overall, 0.999))}, max {_us(latency.overall[-1])}",
    ]
    for name, values in latency.by_kind.items():
        if values:
            lines.append(
                f"    {name:<6} n={len(values):>9,}: p50 {_us(percentile(values, 0.5))}, "
                f"p99 {_us(percentile(values, 0.99))}, p99.9 {_us(percentile(values, 0.999))}"
            )
    growth, with_warmup = throughput.rss_growth_bytes, throughput.rss_growth_with_warmup_bytes
    if growth is None or with_warmup is None:
        lines.append("  peak RSS growth: not measured (no /proc/self/clear_refs)")
    else:
        lines.append(
            f"  peak RSS growth over the measured commands: {growth / 2**20:.2f} MB "
            f"(from an empty book, warm-up included: {with_warmup / 2**20:.2f} MB)"
        )
    lines.append(f"  {_counts_line(counts, model_counts(results.stream))}")
    lines.append(
        f"  rejections {counts.rejections}, self-trade cancels {counts.self_trade_cancels} "
        "(the stream is built to need neither)"
    )
    lines.append(
        f"  replay loop alone (an empty method per call): {results.harness_ns:.0f} ns/command, "
        "included in every book's figures"
    )
    return lines


def library_lines(results: Results) -> list[str]:
    lines = ["published Python libraries, same stream, same process:"]
    lines.extend(f"  skipped: {line}" for line in results.missing_libraries)
    engine = results.engine_throughput
    model = model_counts(results.stream)
    for subject, throughput, counts in results.libraries:
        runs = ", ".join(f"{value:,.0f}" for value in throughput.runs_per_second)
        ratio = f"; ours / theirs = {engine.median / throughput.median:.2f}x" if engine else ""
        lines.append(
            f"  {subject.name} {subject.version}: {throughput.median:,.0f} commands/s "
            f"(median of {len(throughput.runs_per_second)}: {runs}){ratio}"
        )
        lines.append(f"    mapping: {subject.mapping}")
        lines.append(f"    {_counts_line(counts, model)}")
    return lines


def target_lines(results: Results) -> list[str]:
    throughput, latency = results.engine_throughput, results.latency
    if throughput is None or latency is None:
        return ["targets: not checked (the engine was not measured)"]
    p99 = percentile(latency.overall, 0.99)
    lines = [
        "targets (the issue's; a miss never fails the run):",
        f"  {_mark(throughput.median >= TARGET_COMMANDS_PER_SECOND)} throughput >= "
        f"{TARGET_COMMANDS_PER_SECOND:,}/s: {throughput.median:,.0f}/s",
        f"  {_mark(p99 <= TARGET_P99_NS)} p99 <= {_us(TARGET_P99_NS)}: {_us(p99)}",
    ]
    growth = throughput.rss_growth_bytes
    if growth is not None:
        lines.append(
            f"  {_mark(growth <= TARGET_RSS_GROWTH_BYTES)} RSS growth <= "
            f"{TARGET_RSS_GROWTH_BYTES / 2**20:.0f} MB: {growth / 2**20:.1f} MB"
        )
    if results.libraries:
        fastest = max(results.libraries, key=lambda item: item[1].median)
        ratio = throughput.median / fastest[1].median
        lines.append(
            f"  {_mark(ratio >= TARGET_RATIO)} >= {TARGET_RATIO:.0f}x the fastest library "
            f"({fastest[0].name}): {ratio:.2f}x"
        )
    else:
        lines.append("  ---- >= 2x the fastest library: no library installed")
    return lines


def stream_lines(stream: rs.ReferenceStream) -> list[str]:
    warm, stats = stream.warmup_stats, stream.measured_stats
    kinds = ", ".join(
        f"{name} {100 * count / stats.commands:.2f}%"
        for name, count in zip(rs.KIND_NAMES, stats.kinds, strict=True)
    )
    limits = stats.kinds[rs.LIMIT]
    crossing = 100 * stats.crossing_limits / limits if limits else 0.0
    rest, levels = stats.resting_samples, stats.level_samples
    spread = statistics.mean(stats.spread_samples) if stats.spread_samples else 0.0
    lines = [
        "stream, as the generator's model book saw it "
        f"(samples every {rs.STATS_EVERY:,} commands):",
        f"  after the warm-up: {warm.resting_end:,} resting orders over {warm.levels_end} levels",
        f"  measured mix: {kinds}; {crossing:.1f}% of limits priced to cross",
    ]
    if rest:
        lines += [
            f"  resting orders: min {min(rest):,}, mean {statistics.mean(rest):,.0f}, "
            f"max {max(rest):,}, at the end {stats.resting_end:,}",
            f"  price levels: min {min(levels)}, mean {statistics.mean(levels):.0f}, "
            f"max {max(levels)}, at the end {stats.levels_end} "
            f"({stats.bid_levels_end} bid + {stats.ask_levels_end} ask)",
            f"  best bid low {stats.best_bid_min:,}, best ask high {stats.best_ask_max:,}, "
            f"mean spread {spread:.1f} ticks",
        ]
    lines.append(
        f"  measured section: {stats.trades:,} trades, {stats.volume_units:,} units traded"
    )
    return lines


def plot_latency(latency: Latency, path: str, title: str) -> str:
    """Draw the latency histogram and CCDF to `path`; say what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"plot: skipped, matplotlib is not installed (pip install matplotlib) for {path}"
    figure, (histogram, ccdf) = plt.subplots(1, 2, figsize=(13, 5))
    values_us = [value / 1000 for value in latency.overall]
    low, high = max(values_us[0], 0.05), max(values_us[-1], 0.1)
    bins = [low * (high / low) ** (step / 120) for step in range(121)]
    histogram.hist(values_us, bins=bins, color="tab:blue")
    histogram.set_xscale("log")
    histogram.set_yscale("log")
    histogram.set_xlabel("latency per command (µs, timer overhead subtracted)")
    histogram.set_ylabel("commands")
    histogram.set_title("histogram")
    for name, values in [("all", latency.overall), *latency.by_kind.items()]:
        if not values:
            continue
        count = len(values)
        # About 100 points per decade of the tail fraction, down to the slowest command.
        decades = math.log10(count)
        indices = sorted(
            {count - max(1, int(count * 10 ** (-step / 100))) for step in range(int(100 * decades))}
            | {count - 1}
        )
        xs = [values[index] / 1000 for index in indices]
        ys = [(count - index) / count for index in indices]
        ccdf.step(xs, ys, where="post", label=f"{name} (n={count:,})")
    ccdf.axvline(TARGET_P99_NS / 1000, color="red", linestyle="--", label="5 µs")
    ccdf.axhline(0.01, color="grey", linestyle=":", label="p99")
    ccdf.set_xscale("log")
    ccdf.set_yscale("log")
    ccdf.set_xlabel("latency per command (µs)")
    ccdf.set_ylabel("fraction of commands slower (CCDF)")
    ccdf.set_title("CCDF")
    ccdf.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"plot: latency histogram and CCDF written to {path}"


# ---------------------------------------------------------------- main


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="short stream (20k warm-up + 200k), one run each"
    )
    parser.add_argument("--seed", type=int, default=rs.DEFAULT_SEED)
    parser.add_argument("--runs", type=int, help="engine throughput runs (default 5, quick 1)")
    parser.add_argument(
        "--library-runs", type=int, help="runs per library (default 3, quick 1; fewer if slow)"
    )
    parser.add_argument("--no-libraries", action="store_true", help="skip the comparison")
    parser.add_argument("--plot", metavar="FILE.png", help="draw the latency distribution")
    return parser.parse_args(argv)


def measure_engine(results: Results, runs: int) -> None:
    try:
        engine = engine_subject()
    except ImportError as error:
        results.engine_error = str(error)
        progress(f"engine: cannot import matching.book ({error})")
        return
    results.engine = engine
    progress("engine: preparing its command tuples")
    warmup, measured = (
        engine.prepare(results.stream.warmup),
        engine.prepare(results.stream.measured),
    )
    gc.collect()
    gc.freeze()  # The stream stays out of every collection's walk.
    progress(f"engine: {runs} throughput run(s), each on a fresh book after the warm-up")
    results.engine_throughput = measure_throughput(engine, warmup, measured, runs, measure_rss=True)
    progress("engine: latency run (a timer around each command)")
    results.latency = measure_latency(engine, warmup, measured)
    progress("engine: counting run (events checked against the model book)")
    results.engine_counts = engine.count(warmup, measured)
    results.harness_ns = harness_overhead_ns(measured, engine)


def measure_libraries(results: Results, runs: int) -> None:
    subjects, results.missing_libraries = library_subjects()
    for line in results.missing_libraries:
        progress(f"libraries: skipped: {line}")
    for subject in subjects:
        progress(f"{subject.name}: preparing its command tuples")
        warmup = subject.prepare(results.stream.warmup)
        measured = subject.prepare(results.stream.measured)
        gc.collect()
        gc.freeze()
        progress(f"{subject.name}: up to {runs} throughput run(s)")
        throughput = measure_throughput(
            subject, warmup, measured, runs, budget_s=LIBRARY_TIME_BUDGET_S
        )
        progress(f"{subject.name}: counting run")
        results.libraries.append((subject, throughput, subject.count(warmup, measured)))
        del warmup, measured
        gc.unfreeze()  # Lets the collector free the prepared tuples of this library.
        gc.collect()


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    base = rs.QUICK_SPEC if arguments.quick else rs.StreamSpec()
    spec = rs.StreamSpec(
        seed=arguments.seed,
        warmup_commands=base.warmup_commands,
        measured_commands=base.measured_commands,
    )
    runs = arguments.runs or (1 if arguments.quick else 5)
    library_runs = arguments.library_runs or (1 if arguments.quick else 3)
    header = header_lines(spec)
    for line in header:
        progress(line)
    progress("generating the stream (the model book runs alongside)")
    results = Results(spec, rs.generate(spec))
    measure_engine(results, runs)
    if arguments.no_libraries:
        results.missing_libraries = ["the comparison (--no-libraries)"]
    else:
        measure_libraries(results, library_runs)
    lines = [*header, "", *engine_lines(results), "", *library_lines(results), ""]
    lines += [*target_lines(results), "", *stream_lines(results.stream)]
    lines += ["", f"load average at the end: {load_average()}"]
    if arguments.plot and results.latency is not None:
        lines += ["", plot_latency(results.latency, arguments.plot, header[1])]
    print("\n".join(lines), flush=True)
    counts = results.engine_counts
    if counts is None:
        return 1
    model = model_counts(results.stream)
    agrees = (counts.trades, counts.volume_units, counts.resting, counts.levels) == (
        model.trades,
        model.volume_units,
        model.resting,
        model.levels,
    )
    return 0 if agrees and not counts.rejections and not counts.self_trade_cancels else 1


if __name__ == "__main__":
    sys.exit(main())
