"""Benchmark of the whole exchange core on the matching benchmark's reference stream.

    python bench/exchange_bench.py            # the full stream (100k warm-up + 1M measured)
    python bench/exchange_bench.py --quick    # 20k + 200k, a few seconds

Four subjects on the same stream, measured in one run so their ratios mean something:
1. the bare matching engine (matching.book.OrderBook), as in bench/matching_bench.py;
2. the exchange core in memory (exchange.core.Exchange.handle: risk reservations, DVP
   settlement with fees, postings, events, one journal record per command);
3. the same core plus the durable journal (ledger.file_store.FileJournal) with group commit:
   records are appended in batches of --batch commands, one fsync per batch, as the
   sequencer does;
4. the same, pipelined: a writer thread writes and fsyncs batch N while the core handles and
   seals batch N+1 (still one fsync per batch; acks would wait for their batch's fsync).

How the stream becomes exchange commands: every stream owner is an investor account funded
with cash, and gets units in an offering at the start (so sells pass risk); a limit order is
a GTC PlaceOrder whose cl_ord_id is the stream's order id; a cancel is a CancelOrder by that
cl_ord_id; a market order is a MARKET IOC PlaceOrder (the exchange sets its protection price at
the static band's edge); an amend is a cancel plus a new order, as the stream says. Bands are
set wide enough that the stream never leaves them, so no volatility auction interrupts it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import reference_stream as rs
from bench.ledger_bench import PIPELINE_SWITCH_INTERVAL_S
from bench.machine import progress
from bench.matching_bench import engine_subject, header_lines
from exchange.commands import (
    CancelOrder,
    Command,
    Deposit,
    IssueShares,
    ListAsset,
    OpenAccount,
    OpenOffering,
    PlaceOrder,
    Role,
    Tick,
    TradingMode,
)
from exchange.core import ADMIN_ACTOR, Exchange
from ledger.file_store import FileJournal
from ledger.frames import seal_batch
from ledger.records import RecordBody
from matching.orders import OrderType, Side, TimeInForce

SYMBOL = "RS-US10123456B2"
PATENT = "US10123456B2"
ISSUER = "issuer"
CASH_PER_OWNER_MINOR = 10**13
UNITS_PER_OWNER = 1_000_000
NS_PER_COMMAND = 1_000  # The stream's clock: 1 us per command, well inside one trading day.
START_TS_NS = 1_800_000_000 * 10**9
SIDES = (Side.BUY, Side.SELL)
OFFERING_END_TS_NS = START_TS_NS + 10**12


def setup_commands(owners: list[str], reference_price: int) -> list[Command]:
    """Accounts, cash, the listing, the issuance and an offering that gives every owner units."""
    commands: list[Command] = [OpenAccount(ADMIN_ACTOR, ISSUER, Role.ISSUER)]
    for owner in owners:
        commands.append(OpenAccount(ADMIN_ACTOR, owner, Role.INVESTOR))
        commands.append(Deposit(ADMIN_ACTOR, owner, "USD", CASH_PER_OWNER_MINOR))
    total_units = UNITS_PER_OWNER * len(owners)
    commands += [
        ListAsset(ADMIN_ACTOR, PATENT, "Adaptive beamforming for dense radio networks", "US",
                  ISSUER, "2016-05-04", "2036-05-04", "H04B 7/06", ("Acme Networks",),
                  "2.5% of net sales", "USD", 1_200_000_00),
        IssueShares(ADMIN_ACTOR, PATENT, SYMBOL, ISSUER, total_units, "USD", 1, 1, 1, 2,
                    reference_price, 5_000, 10_000, 60 * 10**9, 10**9,
                    TradingMode.CONTINUOUS, 0),
        OpenOffering(ADMIN_ACTOR, SYMBOL, total_units, reference_price, OFFERING_END_TS_NS, False),
    ]  # fmt: skip
    for index, owner in enumerate(owners):
        commands.append(
            PlaceOrder(owner, SYMBOL, f"ipo-{index}", Side.BUY, OrderType.LIMIT,
                       TimeInForce.GTC, reference_price, UNITS_PER_OWNER)
        )  # fmt: skip
    return commands


def to_commands(stream: Sequence[rs.Command]) -> list[Command]:
    """Turn stream tuples into exchange commands (before any timing)."""
    out: list[Command] = []
    limit, market, gtc, ioc = OrderType.LIMIT, OrderType.MARKET, TimeInForce.GTC, TimeInForce.IOC
    owners: dict[int, str] = {}
    for command in stream:
        kind = command[0]
        if kind == rs.LIMIT:
            _, order_id, owner, side, price, quantity = cast(rs.Limit, command)
            owners[order_id] = owner
            out.append(PlaceOrder(owner, SYMBOL, str(order_id), SIDES[side], limit, gtc,
                                  price, quantity))  # fmt: skip
        elif kind == rs.MARKET:
            _, order_id, owner, side, _protection, quantity = cast(rs.Market, command)
            out.append(PlaceOrder(owner, SYMBOL, str(order_id), SIDES[side], market, ioc,
                                  0, quantity))  # fmt: skip
        elif kind == rs.CANCEL:
            order_id = command[1]
            out.append(CancelOrder(owners[order_id], cl_ord_id=str(order_id)))
        else:
            _, old_id, new_id, owner, side, price, quantity = cast(rs.Amend, command)
            owners[new_id] = owner
            out.append(CancelOrder(owners[old_id], cl_ord_id=str(old_id)))
            out.append(PlaceOrder(owner, SYMBOL, str(new_id), SIDES[side], limit, gtc,
                                  price, quantity))  # fmt: skip
    return out


def prepared_exchange(
    setup: list[Command], warmup: list[Command]
) -> tuple[Exchange, int, list[RecordBody]]:
    """Run the setup (offering, opening auction) and the warm-up; return it, the clock and
    the records so far (the durable run journals them, untimed, before it starts timing)."""
    exchange = Exchange()
    records = []
    ts_ns = START_TS_NS
    for command in setup:
        ts_ns += NS_PER_COMMAND
        records.append(exchange.handle(command, ts_ns).record)
    # The offering ends, then the opening auction (1 s) uncrosses into continuous trading.
    for ts_ns in (OFFERING_END_TS_NS, OFFERING_END_TS_NS + 2 * 10**9):
        records.append(exchange.handle(Tick("@sequencer"), ts_ns).record)
    for command in warmup:
        ts_ns += NS_PER_COMMAND
        records.append(exchange.handle(command, ts_ns).record)
    return exchange, ts_ns, records


def run_core(exchange: Exchange, commands: list[Command], ts_ns: int) -> float:
    handle = exchange.handle
    start = time.perf_counter()
    for command in commands:
        ts_ns += NS_PER_COMMAND
        handle(command, ts_ns)
    return time.perf_counter() - start


def run_durable(
    exchange: Exchange,
    commands: list[Command],
    ts_ns: int,
    earlier: list[RecordBody],
    directory: str,
    batch: int,
) -> float:
    """Handle and journal commands, one fsync per batch, as the sequencer's group commit
    (sealed with seal_batch and written with append_sealed, as gateway/sequencer.py does)."""
    handle = exchange.handle
    journal = FileJournal.open(directory)
    for first in range(0, len(earlier), batch):
        journal.append_bodies(earlier[first : first + batch])
    bodies: list[RecordBody] = []
    append = journal.append_sealed
    start = time.perf_counter()
    for command in commands:
        ts_ns += NS_PER_COMMAND
        bodies.append(handle(command, ts_ns).record)
        if len(bodies) == batch:
            append(seal_batch(journal.last_hash, bodies))
            bodies = []
    if bodies:
        append(seal_batch(journal.last_hash, bodies))
    elapsed = time.perf_counter() - start
    journal.close()
    return elapsed


def run_pipelined(
    exchange: Exchange,
    commands: list[Command],
    ts_ns: int,
    earlier: list[RecordBody],
    directory: str,
    batch: int,
) -> float:
    """As run_durable, but batch N is written and fsynced by a writer thread while this thread
    handles and seals batch N+1 (ledger.frames.seal_batch + FileJournal.append_sealed): still
    one fsync per batch, and a batch's acks could go out only once its fsync returned. The GIL
    switch interval is lowered meanwhile, as in bench/ledger_bench.py: back from fsync, the
    writer would otherwise wait up to 5 ms for this thread's time slice."""
    handle = exchange.handle
    journal = FileJournal.open(directory)
    for first in range(0, len(earlier), batch):
        journal.append_bodies(earlier[first : first + batch])
    prev_hash = journal.last_hash
    bodies: list[RecordBody] = []
    pending: Future[None] | None = None
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(PIPELINE_SWITCH_INTERVAL_S)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="journal-writer") as writer:
            start = time.perf_counter()
            for command in commands:
                ts_ns += NS_PER_COMMAND
                bodies.append(handle(command, ts_ns).record)
                if len(bodies) == batch or command is commands[-1]:
                    sealed = seal_batch(prev_hash, bodies)
                    prev_hash, bodies = sealed.last_hash, []
                    if pending is not None:
                        pending.result()  # The previous batch is durable: its acks go out.
                    pending = writer.submit(journal.append_sealed, sealed)
            if pending is not None:
                pending.result()
            elapsed = time.perf_counter() - start
    finally:
        sys.setswitchinterval(switch_interval)
        journal.close()
    return elapsed


def measure_engine(stream: rs.ReferenceStream, runs: int) -> list[float]:
    subject = engine_subject()
    warmup, measured = subject.prepare(stream.warmup), subject.prepare(stream.measured)
    rates = []
    for run in range(runs):
        book = subject.new()
        subject.run(book, warmup)
        start = time.perf_counter()
        subject.run(book, measured)
        rates.append(len(measured) / (time.perf_counter() - start))
        progress(f"engine run {run + 1}/{runs}: {rates[-1]:,.0f} commands/s")
    return rates


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20k warm-up + 200k measured")
    parser.add_argument("--runs", type=int, default=0, help="runs per subject (default 3, 1 quick)")
    parser.add_argument("--batch", type=int, default=1_000, help="records per fsync")
    parser.add_argument("--dir", default="", help="journal directory (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    spec = rs.QUICK_SPEC if arguments.quick else rs.StreamSpec()
    runs = arguments.runs or (1 if arguments.quick else 3)
    for line in header_lines(spec, "IPX exchange core benchmark (bench/exchange_bench.py)"):
        print(line)
    progress(f"generating the reference stream (seed {spec.seed})")
    stream = rs.generate(spec)
    # Limit and market orders (kinds 0 and 1) share a layout: the owner is the third field.
    owners = sorted(
        {cast(rs.Limit, c)[2] for c in (*stream.warmup, *stream.measured) if c[0] in (0, 1)}
    )
    setup = setup_commands(owners, spec.start_price_ticks)
    warmup = to_commands(stream.warmup)
    measured = to_commands([*stream.warmup, *stream.measured])[len(warmup) :]
    progress(f"{len(setup):,} setup, {len(warmup):,} warm-up, {len(measured):,} measured commands")
    engine = measure_engine(stream, runs)
    core: list[float] = []
    durable: list[float] = []
    pipelined: list[float] = []
    for run in range(runs):
        exchange, ts_ns, _ = prepared_exchange(setup, warmup)
        core.append(len(measured) / run_core(exchange, measured, ts_ns))
        progress(f"core run {run + 1}/{runs}: {core[-1]:,.0f} commands/s")
        for runner, rates, name in (
            (run_durable, durable, "durable"),
            (run_pipelined, pipelined, "durable pipelined"),
        ):
            exchange, ts_ns, earlier = prepared_exchange(setup, warmup)
            with tempfile.TemporaryDirectory(dir=arguments.dir or None) as directory:
                elapsed = runner(exchange, measured, ts_ns, earlier, directory, arguments.batch)
            rates.append(len(measured) / elapsed)
            progress(f"{name} run {run + 1}/{runs}: {rates[-1]:,.0f} commands/s")
    engine_rate = statistics.median(engine)
    core_rate = statistics.median(core)
    durable_rate = statistics.median(durable)
    pipelined_rate = statistics.median(pipelined)
    stream_rate = len(stream.measured) / len(measured)  # Amends are two exchange commands.
    print(f"stream: {len(stream.measured):,} measured stream commands = {len(measured):,} "
          f"exchange commands (amend = cancel + new)")  # fmt: skip
    print(f"bare matching engine   {engine_rate:>12,.0f} stream commands/s   (median of {runs})")
    print(f"exchange core, memory  {core_rate:>12,.0f} commands/s   "
          f"= {core_rate * stream_rate / engine_rate:.2f} x the engine per stream command  "
          f"target >= 300,000: {'met' if core_rate >= 300_000 else 'NOT met'}")  # fmt: skip
    print(f"core + journal fsync   {durable_rate:>12,.0f} commands/s   "
          f"= {durable_rate / core_rate:.2f} x in-memory, batch {arguments.batch} per fsync  "
          f"target >= 150,000: {'met' if durable_rate >= 150_000 else 'NOT met'}")  # fmt: skip
    print(f"core + journal pipelined {pipelined_rate:>10,.0f} commands/s   "
          f"= {pipelined_rate / core_rate:.2f} x in-memory, batch {arguments.batch} per fsync, "
          f"fsync in a writer thread  "
          f"target >= 150,000: {'met' if pipelined_rate >= 150_000 else 'NOT met'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
