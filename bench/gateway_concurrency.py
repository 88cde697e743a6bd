"""How the gateway's closed-loop rate follows the requests in flight: interleaved rounds.

    python bench/gateway_concurrency.py --rounds 3
    python bench/gateway_concurrency.py --rounds 2 --configs 4x16 8x64 --plot docs/x.png

A closed loop is bounded by latency as well as by the server: with R requests in flight, each
answered after L, it cannot pass R / L answers/s (Little's law). gateway_bench.py's default,
4 connections x 16 in flight, measures the gateway at 64 requests in flight; this script finds
where more requests in flight stop raising the rate, i.e. the server's own limit (larger group
commits amortize the fsync; the latency grows with the queue).

Each round runs every config once, in turn (timings move 20-40% within an hour here, so the
configs are compared within rounds): `bench/gateway_bench.py --quick --no-echo --open-rate 1
--connections C --in-flight F`. Prints, per config, the median closed-loop orders/s, place
p50 / p99, server CPU and records per journal append; draws orders/s and p50 against the
requests in flight with --plot.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run as a script from anywhere.

from bench.gateway_ab import quick_run
from bench.machine import ROOT, cpu_model, git_revision, load_average, progress

DEFAULT_CONFIGS = ("4x16", "4x32", "8x32", "8x64", "16x64")
FIGURES = ("orders/s", "place p50 ms", "place p99 ms", "server CPU %", "records/append")


def parse_config(text: str) -> tuple[int, int]:
    connections, _, in_flight = text.partition("x")
    try:
        parsed = int(connections), int(in_flight)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: want CONNECTIONSxIN_FLIGHT, e.g. 8x32"
        ) from None
    if not (parsed[0] > 0 and 0 < parsed[1] <= 64):  # The gateway allows 64 per connection.
        raise argparse.ArgumentTypeError(f"{text!r}: connections > 0, in flight 1 to 64")
    return parsed


def figures(connections: int, in_flight: int) -> dict[str, float]:
    """Run gateway_bench's closed loop once at this concurrency; return its figures."""
    options = ["--open-rate", "1", "--connections", str(connections), "--in-flight", str(in_flight)]
    closed = quick_run(ROOT, options)["closed"]
    return {
        "orders/s": closed["orders_per_s"],
        "place p50 ms": closed["place_ms"]["p50"],
        "place p99 ms": closed["place_ms"]["p99"],
        "server CPU %": 100 * closed["cpu"]["server"],
        "records/append": closed["server"]["records_per_append"],
    }


def plot(rows: list[tuple[int, dict[str, float]]], path: str, title: str) -> str:
    """Draw the median orders/s and place p50 against the requests in flight."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"plot: skipped, matplotlib is not installed for {path}"
    rows = sorted(rows)
    in_flight = [total for total, _ in rows]
    figure, rate = plt.subplots(figsize=(8, 4.5))
    rate.plot(in_flight, [row["orders/s"] for _, row in rows], "o-", color="tab:blue")
    rate.set_xscale("log", base=2)
    rate.set_xlabel("requests in flight (connections x in flight per connection)")
    rate.set_ylabel("acknowledged orders/s (median)", color="tab:blue")
    rate.set_ylim(bottom=0)
    latency = rate.twinx()
    latency.plot(in_flight, [row["place p50 ms"] for _, row in rows], "s--", color="tab:red")
    latency.set_ylabel("place ack p50 (ms)", color="tab:red")
    latency.set_ylim(bottom=0)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"plot: orders/s and p50 against requests in flight written to {path}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--configs",
        nargs="+",
        type=parse_config,
        default=[parse_config(c) for c in DEFAULT_CONFIGS],
    )
    parser.add_argument("--plot", metavar="FILE.png")
    arguments = parser.parse_args(argv)
    print(f"command: python bench/gateway_concurrency.py {' '.join(sys.argv[1:])}")
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; git {git_revision('gateway')}")
    print(f"load average at the start {load_average()}")
    runs: dict[tuple[int, int], list[dict[str, float]]] = {c: [] for c in arguments.configs}
    for round_ in range(arguments.rounds):
        for connections, in_flight in arguments.configs:
            progress(f"round {round_ + 1}/{arguments.rounds}: {connections}x{in_flight}")
            runs[connections, in_flight].append(figures(connections, in_flight))
    print("| connections x in flight | requests in flight | " + " | ".join(FIGURES) + " |")
    print("|---|---:|" + "---:|" * len(FIGURES))
    rows = []
    for (connections, in_flight), measured in runs.items():
        median = {key: statistics.median(run[key] for run in measured) for key in FIGURES}
        rates = " · ".join(f"{run['orders/s']:,.0f}" for run in measured)
        rows.append((connections * in_flight, median))
        print(
            f"| {connections} x {in_flight} | {connections * in_flight} | "
            f"{median['orders/s']:,.0f} ({rates}) | "
            + " | ".join(f"{median[key]:,.1f}" for key in FIGURES[1:])
            + " |"
        )
    print(f"medians of {arguments.rounds} rounds; load average at the end {load_average()}")
    if arguments.plot:
        title = f"gateway closed loop against requests in flight (git {git_revision('gateway')})"
        print(plot(rows, arguments.plot, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
