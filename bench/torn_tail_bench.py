"""How long recovery takes to judge a torn tail made of one large record (ledger/frames.py).

    python bench/torn_tail_bench.py                    # 16, 32 and 64 MiB, this checkout
    python bench/torn_tail_bench.py --base 1935192     # the same, then in a worktree of REV

A record longer than a frame (a delisting of a large book, a royalty to every holder) spans
frames. Cut by power loss with its first sector lost (a zeroed header), the reader must decide
that the rest is torn, not damage: no valid append may start after it. It looks for one at
every byte that could open a record; this measures that search over the torn record's bytes
(random, so a candidate every ~256 bytes). Printed: seconds per size, median of --rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import base_worktree, cpu_model, git_revision, load_average

SIZES_MIB = (16, 32, 64)


def measure(size_mib: int, rounds: int) -> float:
    """Median seconds to read a segment whose last append is one torn record of size_mib."""
    from ledger.frames import FRAME_HEADER_BYTES, SegmentReader, seal_frames
    from ledger.records import GENESIS_HASH, RecordBody

    rng = random.Random(size_mib)
    small = RecordBody(1, 0, "deposit", b"x" * 100, ())
    big = RecordBody(2, 0, "deposit", rng.randbytes(size_mib << 20), ())
    _, data = seal_frames(GENESIS_HASH, [small, big])
    torn = bytearray(data)
    start = len(seal_frames(GENESIS_HASH, [small])[1])
    torn[start : start + FRAME_HEADER_BYTES] = bytes(FRAME_HEADER_BYTES)  # Its sector lost.
    seconds = []
    for _ in range(rounds):
        began = time.perf_counter()
        reader = SegmentReader(torn, next_seq=1, prev_hash=GENESIS_HASH, last=True)
        list(reader)
        seconds.append(time.perf_counter() - began)
        assert reader.damage is not None and reader.damage.torn, reader.damage
    return statistics.median(seconds)


def run_here(root: Path, rounds: int) -> list[float]:
    # In a process of its own, with `root` first on its path: root's ledger is measured.
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(root), "--rounds", str(rounds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [float(value) for value in done.stdout.split()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", help="also measure this revision (a temporary worktree)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", metavar="ROOT", help=argparse.SUPPRESS)
    arguments = parser.parse_args(argv)
    if arguments.measure:
        sys.path.insert(0, arguments.measure)
        print(" ".join(str(measure(size, arguments.rounds)) for size in SIZES_MIB))
        return 0
    print(f"command: python bench/torn_tail_bench.py {' '.join(argv or sys.argv[1:])}")
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"git {git_revision('ledger', 'bench')}, load average {load_average()}"
    )
    root = Path(__file__).resolve().parents[1]
    rows = [("this checkout", run_here(root, arguments.rounds))]
    if arguments.base:
        with base_worktree(arguments.base) as base:
            rows.append((arguments.base, run_here(base, arguments.rounds)))
    print("torn record  " + "  ".join(f"{size:>6} MiB" for size in SIZES_MIB))
    for name, seconds in rows:
        print(f"{name:<13}" + "  ".join(f"{value:>8.2f} s" for value in seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
