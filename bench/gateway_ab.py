"""A change to the gateway against its parent: interleaved pairs of gateway_bench runs.

    python bench/gateway_ab.py --base fd4104b --pairs 6
    python bench/gateway_ab.py --base HEAD~1 --pairs 4 -- --open-rate 5000

Timings on these 2-core machines move 20-40% within an hour, so two checkouts are compared as
ratios of runs made side by side: pair k runs A (the base revision, checked out in a temporary
git worktree) and B (this checkout, uncommitted changes included), alternating which goes
first. Each run is `bench/gateway_bench.py --quick --no-echo --json` of its own checkout, with
the arguments after `--` added; this script times nothing itself, it reads the figures.

Per pair it prints closed-loop orders/s, the gateway's CPU microseconds per answer (closed and
open loop: CPU seconds of the server process over its answers), the open-loop place p99, the
open loop's send lateness p99 and records per journal append; at the end the median of the
B/A orders/s ratios (with min and max) and the medians of the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run as a script from anywhere.

from bench.machine import ROOT, base_worktree, load_average, progress

FIGURES = ("orders/s", "us/answer", "open us/answer", "open p99 ms", "late p99 ms", "open rpa")


def quick_run(tree: Path, extra: Sequence[str]) -> dict[str, Any]:
    """Run the tree's `gateway_bench.py --quick --no-echo` once; return its --json results."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [sys.executable, str(tree / "bench" / "gateway_bench.py"), "--quick", "--no-echo",
             "--json", out.name, *extra],
            cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)), check=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        results: dict[str, Any] = json.loads(Path(out.name).read_text())
    return results


def figures(tree: Path, extra: Sequence[str]) -> dict[str, float]:
    """Run the tree's gateway bench once; return the figures compared."""
    results = quick_run(tree, extra)
    closed, open_ = results["closed"], results["open"]
    return {
        "orders/s": closed["orders_per_s"],
        "us/answer": 1e6 * closed["cpu"]["server"] / closed["answers_per_s"],
        "open us/answer": 1e6 * open_["cpu"]["server"] / open_["answers_per_s"],
        "open p99 ms": open_["place_ms"]["p99"],
        "late p99 ms": open_["send_late_ms"]["p99"],
        "open rpa": open_["server"]["records_per_append"],
    }


def line(name: str, run: dict[str, float]) -> str:
    return f"{name} " + " ".join(f"{key} {run[key]:,.2f}" for key in FIGURES)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        argv, extra = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--pairs", type=int, default=4)
    arguments = parser.parse_args(argv)
    print(f"command: python bench/gateway_ab.py {' '.join(sys.argv[1:])}")
    print(f"A = {arguments.base} (a worktree), B = this checkout; load {load_average()}")
    with base_worktree(arguments.base) as base:
        pairs = []
        for index in range(arguments.pairs):
            order = [("A", base), ("B", ROOT)] if index % 2 == 0 else [("B", ROOT), ("A", base)]
            pair = {}
            for name, tree in order:
                progress(f"pair {index + 1}/{arguments.pairs}: {name}")
                pair[name] = figures(tree, extra)
            pairs.append(pair)
            ratio = pair["B"]["orders/s"] / pair["A"]["orders/s"]
            print(f"pair {index + 1}: B/A {ratio:.3f}")
            print("  " + line("A", pair["A"]))
            print("  " + line("B", pair["B"]), flush=True)
    ratios = [pair["B"]["orders/s"] / pair["A"]["orders/s"] for pair in pairs]
    print(
        f"median B/A orders/s {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} pairs)"
    )
    for key in FIGURES:
        a = statistics.median(pair["A"][key] for pair in pairs)
        b = statistics.median(pair["B"][key] for pair in pairs)
        print(f"median {key}: A {a:,.2f} -> B {b:,.2f}")
    print(f"load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
