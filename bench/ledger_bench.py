"""Benchmark of the durable journal (ledger.file_store.FileJournal): group commit, replay, verify.

Run from the repository root:
    .venv/bin/python bench/ledger_bench.py                  # about a minute
    .venv/bin/python bench/ledger_bench.py --quick          # a few seconds
    .venv/bin/python bench/ledger_bench.py --dir /some/disk # where the journals go

What it measures:
- durable appends: FileJournal.append_bodies() (seal, frame, one write, one fdatasync per batch,
  return) at batch sizes 1, 10, 100 and 1,000 records; each record has a 200-byte command and
  4 postings. Every journal batch is followed by the same bytes written raw to another file on
  the same disk the way the journal writes them (one os.pwrite over zeros written ahead, one
  os.fdatasync: RawFile), so drift in the disk's fsync latency (a shared machine) hits both
  alike; journal/raw is the ratio of the summed times. Wall time and CPU
  time are both kept: the CPU time per record is the code's own cost, whatever the disk.
- pipelined durable appends: the same batches, sealed (ledger.frames.seal_batch) in the main
  thread while a writer thread makes the previous batch durable (FileJournal.append_sealed:
  one write, one fdatasync, at most one batch in flight); the main thread waits for batch N to be
  durable before handing over batch N+1; the GIL switch interval is 0.5 ms meanwhile.
  Compared with the same bytes written raw.
- replay: FileJournal.open() (every frame validated: CRC, decode, seq, link, recomputed hash)
  and read_journal() (the same, yielding every Record) over the largest journal written above;
  the files are in the page cache, so this is the CPU cost of reading and validating.
- verify: ledger.verify.verify_records() over the records in memory, and over read_journal()
  end to end, if ledger/verify.py exists.
The records verify: deposits and share issues first, then trades whose postings reserve and
settle cash and shares between 64 accounts. Inputs are built (and gc.freeze()d) before timing.
Never fails on a timing: the exit code is 1 only if a journal does not read back whole.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # Run as a script, Python puts bench/ (not the repository root) on the path.
    sys.path.insert(0, str(ROOT))

from bench.machine import cpu_model, git_revision, progress  # noqa: E402
from ledger.file_store import ZERO_AHEAD_BYTES, FileJournal, read_journal  # noqa: E402
from ledger.frames import encode_frames, seal_batch  # noqa: E402
from ledger.records import (  # noqa: E402
    BANK_ACCOUNT,
    GENESIS_HASH,
    ISSUANCE_ACCOUNT,
    Bucket,
    Posting,
    RecordBody,
)

BATCH_SIZES = (1, 10, 100, 1000)
COMMAND_BYTES = 200
POSTINGS_PER_RECORD = 4
ACCOUNTS = 64
TARGET_BATCH = 100
TARGET_RECORDS_PER_SECOND = 150_000
TARGET_RAW_RATIO_PERCENT = 50
TARGET_REPLAY_RECORDS_PER_SECOND = 300_000
CASH = "USD"
SHARES = "RS-US10123456B2"
PIPELINE_STRETCH_SECONDS = 0.1  # Short, so drift in fsync latency hits both sides alike.
PIPELINE_SWITCH_INTERVAL_S = 0.0005


# ---------------------------------------------------------------- the machine


def _filesystem(path: Path) -> str:
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                _, point, fs_type = line.split()[:3]
                if str(path).startswith(point) and len(point) > len(best):
                    best, kind = point, fs_type
    except OSError:
        pass
    return f"{kind} mounted at {best or '?'}"


def header_lines(directory: Path) -> list[str]:
    command = shlex.join([os.path.relpath(sys.executable, ROOT), *sys.argv])
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"command: {command}",
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"git {git_revision('ledger', 'bench')}",
        f"journals in: {directory} ({_filesystem(directory)}); load average at start: {load}",
    ]


# ---------------------------------------------------------------- the records


def make_bodies(count: int) -> list[RecordBody]:
    """Return `count` record bodies that verify: funding first, then trades."""
    accounts = [f"acct-{index:03d}" for index in range(ACCOUNTS)]
    commands = [
        bytes((seq * 131 + offset * 7) % 251 for offset in range(COMMAND_BYTES))
        for seq in range(997)
    ]
    funding = [
        ("deposit", Posting(CASH, 10**12, BANK_ACCOUNT, Bucket.AVAILABLE, a, Bucket.AVAILABLE))
        for a in accounts
    ] + [
        (
            "issue_shares",
            Posting(SHARES, 10**9, ISSUANCE_ACCOUNT, Bucket.AVAILABLE, a, Bucket.AVAILABLE),
        )
        for a in accounts
    ]
    bodies = []
    for index in range(count):
        seq = index + 1
        if index * POSTINGS_PER_RECORD < len(funding):
            chunk = funding[index * POSTINGS_PER_RECORD : (index + 1) * POSTINGS_PER_RECORD]
            kind, postings = chunk[0][0], tuple(posting for _, posting in chunk)
        else:
            kind, postings = "place_order", _trade(accounts, seq)
        bodies.append(
            RecordBody(seq, 1_700_000_000_000_000_000 + seq, kind, commands[seq % 997], postings)
        )
    return bodies


def _trade(accounts: list[str], seq: int) -> tuple[Posting, ...]:
    # A buyer reserves cash and pays it; a seller reserves shares and delivers them. Amounts are
    # small against the funding, so no balance goes negative in millions of records.
    buyer = accounts[seq % ACCOUNTS]
    seller = accounts[(seq * 7 + 1) % ACCOUNTS]
    if seller == buyer:
        seller = accounts[(seq + 1) % ACCOUNTS]
    quantity = 1 + seq % 50
    cash = quantity * (9_000 + seq % 2_000)
    available, held = Bucket.AVAILABLE, Bucket.HELD
    return (
        Posting(CASH, cash, buyer, available, buyer, held),
        Posting(CASH, cash, buyer, held, seller, available),
        Posting(SHARES, quantity, seller, available, seller, held),
        Posting(SHARES, quantity, seller, held, buyer, available),
    )


# ---------------------------------------------------------------- durable appends


@dataclass
class AppendResult:
    batch: int
    records: int = 0
    batches: int = 0
    bytes_written: int = 0
    journal_seconds: float = 0
    raw_seconds: float = 0
    journal_cpu_seconds: float = 0
    raw_cpu_seconds: float = 0
    directory: Path = field(default_factory=Path)

    @property
    def journal_rate(self) -> float:
        return self.records / self.journal_seconds

    @property
    def raw_rate(self) -> float:
        return self.records / self.raw_seconds

    @property
    def ratio_percent(self) -> float:
        return 100 * self.raw_seconds / self.journal_seconds


class RawFile:
    """The journal's disk pattern without the journal: bytes over zeros written ahead, then one
    fdatasync per write (ledger/file_store.py says why: no size change to commit)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.size = self.zeroed_end = 0

    def write(self, data: bytes) -> None:
        end = self.size + len(data)
        os.pwrite(self.fd, data, self.size)
        if end > self.zeroed_end:
            os.pwrite(self.fd, bytes(ZERO_AHEAD_BYTES), end)
            self.zeroed_end = end + ZERO_AHEAD_BYTES
        os.fdatasync(self.fd)
        self.size = end

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink()


def measure_appends(
    bodies: list[RecordBody], batch: int, directory: Path, seconds: float
) -> AppendResult:
    """Time journal batches, each followed by the same bytes written raw (RawFile)."""
    result = AppendResult(batch, directory=directory / f"batch-{batch}")
    raw_path = directory / f"raw-{batch}.bin"
    journal = FileJournal.open(result.directory)
    raw = RawFile(raw_path)
    clock, cpu = time.perf_counter, time.process_time
    deadline = clock() + seconds
    next_report = clock() + 1.0
    try:
        for first in range(0, len(bodies) - batch + 1, batch):
            wall, used = clock(), cpu()
            records = journal.append_bodies(bodies[first : first + batch])
            result.journal_seconds += clock() - wall
            result.journal_cpu_seconds += cpu() - used
            chunk = encode_frames(records)  # The very bytes the journal just wrote.
            wall, used = clock(), cpu()
            raw.write(chunk)
            result.raw_seconds += clock() - wall
            result.raw_cpu_seconds += cpu() - used
            result.batches += 1
            result.records += batch
            result.bytes_written += len(chunk)
            now = clock()
            if now >= next_report:
                next_report = now + 1.0
                progress(
                    f"batch {batch:>4}: {result.records:,} records ({result.journal_rate:,.0f}/s"
                    f" journal, {result.raw_rate:,.0f}/s raw)"
                )
            if now >= deadline:
                break
    finally:
        journal.close()
        raw.close()
    progress(
        f"batch {batch:>4}: done, {result.records:,} records ({result.journal_rate:,.0f}/s "
        f"journal, {result.raw_rate:,.0f}/s raw, {result.ratio_percent:.0f}%)"
    )
    return result


@dataclass
class PipelinedResult:
    batch: int
    records: int = 0
    batches: int = 0
    journal_seconds: float = 0
    raw_seconds: float = 0

    @property
    def journal_rate(self) -> float:
        return self.records / self.journal_seconds

    @property
    def raw_rate(self) -> float:
        return self.records / self.raw_seconds

    @property
    def ratio_percent(self) -> float:
        return 100 * self.raw_seconds / self.journal_seconds


def measure_pipelined(
    bodies: list[RecordBody], batch: int, directory: Path, seconds: float
) -> PipelinedResult:
    """Seal batch N+1 here while a writer thread appends batch N (append_sealed: 1 sync).

    Runs in stretches of PIPELINE_STRETCH_SECONDS, each followed by the same bytes written
    raw, batch by batch (RawFile: one pwrite, one fdatasync each). The GIL switch interval is
    lowered to PIPELINE_SWITCH_INTERVAL_S meanwhile: with the default 5 ms, the writer thread,
    back from its sync, may wait for the sealing thread's time slice to end before it can report.
    """
    result = PipelinedResult(batch)
    raw_path = directory / f"raw-pipelined-{batch}.bin"
    journal = FileJournal.open(directory / f"pipelined-{batch}")
    raw = RawFile(raw_path)
    clock = time.perf_counter
    deadline = clock() + seconds
    prev_hash, first = GENESIS_HASH, 0
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(PIPELINE_SWITCH_INTERVAL_S)
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="journal-writer") as writer:
            while clock() < deadline and first + batch <= len(bodies):
                chunks: list[bytes] = []
                started = clock()
                stretch_end = started + PIPELINE_STRETCH_SECONDS
                pending: Future[None] | None = None
                while first + batch <= len(bodies):
                    sealed = seal_batch(prev_hash, bodies[first : first + batch])
                    prev_hash, first = sealed.last_hash, first + batch
                    if pending is not None:
                        pending.result()  # The previous batch is durable: acks would go out.
                    pending = writer.submit(journal.append_sealed, sealed)
                    chunks.append(sealed.data)
                    if clock() >= stretch_end:
                        break
                if pending is not None:
                    pending.result()
                result.journal_seconds += clock() - started
                started = clock()
                for chunk in chunks:
                    raw.write(chunk)
                result.raw_seconds += clock() - started
                result.records += len(chunks) * batch
                result.batches += len(chunks)
    finally:
        sys.setswitchinterval(switch_interval)
        journal.close()
        raw.close()
    progress(
        f"pipelined batch {batch:>4}: {result.records:,} records ({result.journal_rate:,.0f}/s "
        f"journal, {result.raw_rate:,.0f}/s raw, {result.ratio_percent:.0f}%)"
    )
    return result


# ---------------------------------------------------------------- replay and verify


@dataclass
class Timing:
    name: str
    records: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds

    @property
    def cpu_rate(self) -> float:
        return self.records / self.cpu_seconds


def best_of(runs: int, name: str, action: Callable[[], int]) -> Timing:
    timings = []
    for _ in range(runs):
        started, used = time.perf_counter(), time.process_time()
        records = action()
        wall, cpu = time.perf_counter() - started, time.process_time() - used
        timings.append(Timing(name, records, wall, cpu))
    best = min(timings, key=lambda timing: timing.seconds)
    progress(
        f"{name}: {best.rate:,.0f} records/s ({best.cpu_rate:,.0f}/s of CPU time, "
        f"{best.records:,} records)"
    )
    return best


def measure_replay(directory: Path, runs: int) -> list[Timing]:
    def open_journal() -> int:
        with FileJournal.open(directory) as journal:
            return journal.recovery.records

    def walk() -> int:
        count = 0
        for _ in read_journal(directory):
            count += 1
        return count

    return [
        best_of(runs, "open (recover: read + validate every frame)", open_journal),
        best_of(runs, "read_journal (read + validate + yield Records)", walk),
    ]


def measure_verify(directory: Path, runs: int) -> tuple[list[Timing], str]:
    try:
        from ledger.verify import verify_records
    except ImportError:
        return [], "ledger/verify.py does not exist yet: verify not measured"
    records = list(read_journal(directory))

    def in_memory() -> int:
        return verify_records(records).records

    def end_to_end() -> int:
        return verify_records(read_journal(directory)).records

    timings = [
        best_of(runs, "verify_records over records in memory", in_memory),
        best_of(runs, "verify_records(read_journal(...)) end to end", end_to_end),
    ]
    return timings, ""


# ---------------------------------------------------------------- report


def report_lines(
    appends: list[AppendResult],
    pipelined: list[PipelinedResult],
    replay: list[Timing],
    verify: list[Timing],
    note: str,
) -> list[str]:
    lines = [
        "Durable appends (append_bodies: seal + frame + 1 write + 1 fdatasync per batch), "
        f"{COMMAND_BYTES}-byte commands, {POSTINGS_PER_RECORD} postings per record; each "
        "journal batch is followed by the same bytes written raw the same way "
        "(1 pwrite + 1 fdatasync):",
        "| batch | records | fsyncs | bytes/record | journal records/s | raw records/s "
        "| journal/raw | raw write+sync ms per batch | CPU µs/record journal, raw |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for result in appends:
        per_record = 1e6 / result.records
        lines.append(
            f"| {result.batch:,} | {result.records:,} | {result.batches:,} "
            f"| {result.bytes_written / result.records:,.0f} | {result.journal_rate:,.0f} "
            f"| {result.raw_rate:,.0f} | {result.ratio_percent:.0f}% "
            f"| {1e3 * result.raw_seconds / result.batches:.2f} "
            f"| {result.journal_cpu_seconds * per_record:.2f}, "
            f"{result.raw_cpu_seconds * per_record:.2f} |"
        )
    lines += [
        "",
        "Pipelined group commit (seal_batch for batch N+1 in this thread while a writer thread "
        "runs append_sealed for batch N; still 1 write + 1 fdatasync per batch, acks after it; GIL "
        "switch interval 0.5 ms), each stretch followed by the same bytes written raw:",
        "| batch | records | pipelined records/s | raw records/s | pipelined/raw "
        "| raw write+sync ms per batch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for piped in pipelined:
        lines.append(
            f"| {piped.batch:,} | {piped.records:,} | {piped.journal_rate:,.0f} "
            f"| {piped.raw_rate:,.0f} | {piped.ratio_percent:.0f}% "
            f"| {1e3 * piped.raw_seconds / piped.batches:.2f} |"
        )
    lines += [
        "",
        "Replay and verify (files in the page cache; best of the runs):",
        "| what | records | records/s | records per CPU-second |",
        "|---|---:|---:|---:|",
    ]
    for timing in [*replay, *verify]:
        lines.append(
            f"| {timing.name} | {timing.records:,} | {timing.rate:,.0f} | {timing.cpu_rate:,.0f} |"
        )
    if note:
        lines.append(f"({note})")
    lines += ["", *target_lines([*appends, *pipelined], replay)]
    return lines


def target_lines(
    appends: Sequence[AppendResult | PipelinedResult], replay: list[Timing]
) -> list[str]:
    lines = ["Targets:"]
    for result in appends:
        if result.batch != TARGET_BATCH:
            continue
        how = "pipelined" if isinstance(result, PipelinedResult) else "append_bodies"
        lines.append(
            f"- batch {TARGET_BATCH}, {how}: {result.journal_rate:,.0f} records/s vs "
            f"{TARGET_RECORDS_PER_SECOND:,}: "
            f"{'met' if result.journal_rate >= TARGET_RECORDS_PER_SECOND else 'MISSED'}"
        )
        lines.append(
            f"- batch {TARGET_BATCH}, {how}: {result.ratio_percent:.0f}% of raw write+sync vs "
            f"{TARGET_RAW_RATIO_PERCENT}%: "
            f"{'met' if result.ratio_percent >= TARGET_RAW_RATIO_PERCENT else 'MISSED'}"
        )
    for timing in replay:
        verdict = "met" if timing.rate >= TARGET_REPLAY_RECORDS_PER_SECOND else "MISSED"
        lines.append(
            f"- replay, {timing.name}: {timing.rate:,.0f} records/s vs "
            f"{TARGET_REPLAY_RECORDS_PER_SECOND:,}: {verdict}"
        )
    return lines


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dir", type=Path, help="where to write the journals (a real disk)")
    parser.add_argument("--quick", action="store_true", help="1 s per batch size, one replay run")
    parser.add_argument("--seconds", type=float, help="time budget per batch size")
    parser.add_argument("--records-max", type=int, default=600_000)
    parser.add_argument("--keep", action="store_true", help="keep the journals afterwards")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    seconds = arguments.seconds or (1.0 if arguments.quick else 8.0)
    runs = 1 if arguments.quick else 3
    records_max = 60_000 if arguments.quick else arguments.records_max
    directory = Path(tempfile.mkdtemp(prefix="ledger-bench-", dir=arguments.dir)).resolve()
    header = header_lines(directory)
    for line in header:
        progress(line)
    progress(f"building {records_max:,} record bodies")
    bodies = make_bodies(records_max)
    gc.collect()
    gc.freeze()  # The inputs are not the journal's garbage: keep collections off them.
    try:
        appends = [measure_appends(bodies, batch, directory, seconds) for batch in BATCH_SIZES]
        pipelined = [
            measure_pipelined(bodies, batch, directory, seconds / 2) for batch in BATCH_SIZES
        ]
        largest = max(appends, key=lambda result: result.records)
        progress(f"replaying the batch-{largest.batch} journal ({largest.records:,} records)")
        replay = measure_replay(largest.directory, runs)
        verify, note = measure_verify(largest.directory, runs)
        whole = all(timing.records == largest.records for timing in [*replay, *verify])
    finally:
        if not arguments.keep:
            shutil.rmtree(directory)
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    lines = [
        *header,
        f"load average at end: {load}",
        "",
        *report_lines(appends, pipelined, replay, verify, note),
    ]
    print("\n".join(lines), flush=True)
    return 0 if whole else 1


if __name__ == "__main__":
    sys.exit(main())
