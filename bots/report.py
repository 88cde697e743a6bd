"""What a run saw, told in the terminal and, with --plot DIR, drawn as PNG charts.

Charts (matplotlib, Agg backend, written to DIR):
- price_{SYMBOL}.png   best bid, best ask, last price and fair value over time; spread below
- depth_{SYMBOL}.png   units resting on each side (top levels of book.snapshot) over time
- latency.png          ack latency distribution (percentile curve from the HDR histogram)

Invariants:
- Samples are kept as integers (ticks, units, ms since start); floats appear only at the
  plotting edge, where ticks become prices for the axes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Sample:
    elapsed_ms: int
    bid_ticks: int
    ask_ticks: int
    last_ticks: int
    fair_ticks: int
    bid_depth_units: int
    ask_depth_units: int


@dataclass
class Recorder:
    """Per symbol, the market as sampled over time; the tick size to draw prices with."""

    samples: dict[str, list[Sample]] = field(default_factory=dict)
    tick_size_minor: dict[str, int] = field(default_factory=dict)
    currency_digits: dict[str, int] = field(default_factory=dict)

    def add(self, symbol: str, sample: Sample) -> None:
        self.samples.setdefault(symbol, []).append(sample)


def percentiles_ms(histogram: Any) -> dict[str, float]:
    """p50/p90/p99/p99.9/max of an HDR histogram recorded in microseconds, in ms."""
    if histogram.get_total_count() == 0:
        return {}
    points = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}
    result = {name: histogram.get_value_at_percentile(p) / 1000 for name, p in points.items()}
    result["max"] = histogram.get_max_value() / 1000
    return result


def format_percentiles(histogram: Any) -> str:
    values = percentiles_ms(histogram)
    if not values:
        return "no acks"
    return "  ".join(f"{name} {value:.2f} ms" for name, value in values.items())


def table(rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns, two spaces apart."""
    texts = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in texts) for i in range(len(texts[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in texts
    )


def _price(ticks: int, tick_minor: int, digits: int) -> float | None:
    # The plotting edge: a price for an axis; None leaves a gap where there was no quote.
    return ticks * tick_minor / 10**digits if ticks else None


def plot_market(recorder: Recorder, directory: str) -> list[str]:
    """Write price/spread and depth charts per symbol; return the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    paths = []
    for symbol, samples in sorted(recorder.samples.items()):
        if not samples:
            continue
        tick, digits = recorder.tick_size_minor[symbol], recorder.currency_digits[symbol]
        seconds = [s.elapsed_ms / 1000 for s in samples]
        figure, (prices, spread) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
        for label, values in (
            ("best bid", [s.bid_ticks for s in samples]),
            ("best ask", [s.ask_ticks for s in samples]),
            ("last", [s.last_ticks for s in samples]),
            ("fair value", [s.fair_ticks for s in samples]),
        ):
            prices.plot(seconds, [_price(v, tick, digits) for v in values], label=label)
        prices.set_title(f"{symbol}: price")
        prices.legend(loc="best")
        spreads = [
            # Only a two-sided, uncrossed quote has a spread (an auction's book may cross).
            _price(s.ask_ticks - s.bid_ticks, tick, digits)
            if 0 < s.bid_ticks < s.ask_ticks
            else None
            for s in samples
        ]
        spread.plot(seconds, spreads, color="tab:red")
        spread.set_title("quoted spread")
        spread.set_xlabel("seconds")
        paths.append(_save(figure, os.path.join(directory, f"price_{symbol}.png")))
        figure, depth = plt.subplots(figsize=(9, 4))
        depth.plot(seconds, [s.bid_depth_units for s in samples], label="bid units")
        depth.plot(seconds, [s.ask_depth_units for s in samples], label="ask units")
        depth.set_title(f"{symbol}: depth (top levels)")
        depth.set_xlabel("seconds")
        depth.legend(loc="best")
        paths.append(_save(figure, os.path.join(directory, f"depth_{symbol}.png")))
    return paths


def plot_latency(histogram: Any, directory: str, title: str) -> str | None:
    """Draw the ack latency percentile curve; return the path, or None without samples."""
    if histogram.get_total_count() == 0:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    # Percentiles on a log axis of 1 / (1 - p): the tail gets room (HdrHistogram's plot).
    points = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99]
    values_ms = [histogram.get_value_at_percentile(p) / 1000 for p in points]
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.plot([1 / (1 - p / 100) for p in points], values_ms, marker="o")
    axis.set_xscale("log")
    axis.set_xticks([1 / (1 - p / 100) for p in points], [f"{p:g}%" for p in points])
    axis.set_ylabel("ack latency (ms)")
    axis.set_title(title)
    return _save(figure, os.path.join(directory, "latency.png"))


def _save(figure: Any, path: str) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def counts_line(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "none"
