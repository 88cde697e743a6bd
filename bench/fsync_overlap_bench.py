"""Where should a durable batch's fsync run while an event loop keeps working? Three designs.

    python bench/fsync_overlap_bench.py            # 5 s per design, 3 rounds, ~50 s
    python bench/fsync_overlap_bench.py --quick    # 2 s per design, 1 round

A question for the gateway's sequencer (gateway/sequencer.py), asked without the gateway: an
asyncio loop does a fixed amount of Python work per batch (the CPU the sequencer and the
connections spend on a batch of requests: --batch-cpu-us, ~2,500 µs for the gateway's closed
loop of ~35 records, ~500 µs for its open loop of ~5), appends the batch's bytes (--batch-bytes)
to a file on the real disk, and makes them durable. Designs:

1. inline: write + fsync on the loop, as the sequencer does today; nothing runs meanwhile.
2. thread: write on the loop, fsync in a thread (loop.run_in_executor) while the loop works
   on the next batch; the loop waits for batch N's fsync before it starts batch N+2.
3. process: write on the loop, fdatasync by a forked helper process asked over a socketpair,
   the same overlap as (2). The helper has its own interpreter, so coming back from fsync it
   needs no GIL: (2)'s thread must take the GIL back from the busy loop first.

Printed per design: batches/s (median of the rounds, ratio to inline) and the latency from a
batch's start to its durability (p50/p99): what an ack in the batch would wait. The loop's
work is one block per batch here, so (2) and (3) learn of an fsync's end only after the next
batch's work: a server whose work comes in small callbacks would learn sooner. Every fsync is
real, so the figures move with the disk; compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import cpu_model, git_revision, load_average, progress
from bench.matching_bench import percentile

SEQ = struct.Struct(">q")


def busy_for(microseconds: int) -> None:
    """Spend about this much CPU in Python, as a batch's handling would."""
    deadline = time.perf_counter_ns() + microseconds * 1_000
    while time.perf_counter_ns() < deadline:
        sum(range(50))


class Run:
    """One design's batches: their count and start-to-durable latencies."""

    def __init__(self, seconds: float, batch_cpu_us: int, batch_bytes: int) -> None:
        self.seconds = seconds
        self.batch_cpu_us = batch_cpu_us
        self.payload = os.urandom(batch_bytes)
        self.batches = 0
        self.latency_ns: list[int] = []

    def batch(self, fd: int) -> int:
        """Work on one batch and write it (not yet durable); return its start time."""
        started = time.perf_counter_ns()
        busy_for(self.batch_cpu_us)
        os.write(fd, self.payload)
        self.batches += 1
        return started

    def durable(self, started: int) -> None:
        self.latency_ns.append(time.perf_counter_ns() - started)


async def inline(run: Run, path: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        end = time.perf_counter() + run.seconds
        while time.perf_counter() < end:
            started = run.batch(fd)
            os.fsync(fd)
            run.durable(started)
            await asyncio.sleep(0)  # The loop turns between batches, as the sequencer's does.
    finally:
        os.close(fd)


async def thread(run: Run, path: str) -> None:
    loop = asyncio.get_running_loop()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    try:
        in_flight: tuple[asyncio.Future[None], int] | None = None
        end = time.perf_counter() + run.seconds
        while time.perf_counter() < end:
            started = run.batch(fd)
            if in_flight is not None:
                await in_flight[0]
                run.durable(in_flight[1])
            in_flight = (loop.run_in_executor(None, os.fsync, fd), started)
        if in_flight is not None:
            await in_flight[0]
            run.durable(in_flight[1])
    finally:
        os.close(fd)


def _helper(channel: socket.socket, path: str) -> None:
    # The forked helper: for each request, fdatasync the file and echo the newest seq asked.
    fd = os.open(path, os.O_WRONLY)
    while True:
        asked = channel.recv(4096)
        if not asked:
            return
        os.fdatasync(fd)
        channel.sendall(asked[-SEQ.size :])


async def process(run: Run, path: str) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # The helper never returns into the event loop.
        try:
            ours.close()
            _helper(theirs, path)
        finally:
            os._exit(0)
    theirs.close()
    reader, writer = await asyncio.open_connection(sock=ours)
    try:
        waiting: dict[int, int] = {}  # seq -> start time of the batches not yet durable
        seq = 0
        end = time.perf_counter() + run.seconds
        while time.perf_counter() < end or waiting:
            if time.perf_counter() < end:
                seq += 1
                waiting[seq] = run.batch(fd)
                writer.write(SEQ.pack(seq))
            if len(waiting) >= 2 or time.perf_counter() >= end:
                synced = SEQ.unpack(await reader.readexactly(SEQ.size))[0]
                for done in [n for n in waiting if n <= synced]:
                    run.durable(waiting.pop(done))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        os.waitpid(pid, 0)
        os.close(fd)


DESIGNS: dict[str, Callable[[Run, str], Coroutine[None, None, None]]] = {
    "inline": inline,
    "thread": thread,
    "process": process,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s per design, 1 round")
    parser.add_argument("--seconds", type=float, default=0.0, help="per design and round")
    parser.add_argument("--rounds", type=int, default=0)
    parser.add_argument("--batch-cpu-us", type=int, default=2_500)
    parser.add_argument("--batch-bytes", type=int, default=10_000)
    parser.add_argument("--dir", default="", help="where the files go (default: a temp dir)")
    arguments = parser.parse_args()
    seconds = arguments.seconds or (2.0 if arguments.quick else 5.0)
    rounds = arguments.rounds or (1 if arguments.quick else 3)
    print(f"command: python bench/fsync_overlap_bench.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {sys.version.split()[0]}")
    print(f"git {git_revision('bench')}, load average {load_average()}")
    print(
        f"batch: {arguments.batch_cpu_us} µs of Python work + {arguments.batch_bytes:,} bytes "
        f"appended; {seconds:g} s per design, {rounds} round(s), designs interleaved"
    )
    results: dict[str, list[Run]] = {name: [] for name in DESIGNS}
    with tempfile.TemporaryDirectory(dir=arguments.dir or None) as directory:
        for round_ in range(rounds):
            for name, design in DESIGNS.items():
                progress(f"round {round_ + 1}/{rounds}: {name}")
                run = Run(seconds, arguments.batch_cpu_us, arguments.batch_bytes)
                path = os.path.join(directory, f"{name}-{round_}")
                asyncio.run(design(run, path))
                os.unlink(path)
                results[name].append(run)
    print("| design | batches/s (median) | ratio to inline | start to durable p50 / p99 (ms) |")
    print("|---|---:|---:|---:|")
    rates = {
        name: statistics.median(run.batches / run.seconds for run in runs)
        for name, runs in results.items()
    }
    for name, runs in results.items():
        latency = sorted(ns for run in runs for ns in run.latency_ns)
        p50, p99 = (percentile(latency, fraction) / 1e6 for fraction in (0.5, 0.99))
        print(
            f"| {name} | {rates[name]:,.0f} | {rates[name] / rates['inline']:.2f} | "
            f"{p50:.2f} / {p99:.2f} |"
        )
    print(f"load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
