"""Conflation of queued market data: fewer messages that say the same, for a slow sink.

A sink that falls behind (the MQTT broker's connection, under load) holds a run of messages
that it has not sent yet. Sending each one costs the exchange's event loop; a subscriber that
rebuilds the book or shows the BBO only needs the end result. So, within one run:

- consecutive L2 updates of a symbol (no L2 snapshot of it between them) become one update:
  the levels that changed, each with its last absolute quantity, the last update's seq,
  journal_seq, ts_ns and checksum, and the first one's prev_seq. Applying it equals applying
  the run one by one, and a subscriber's gap check (prev_seq = its last seq) still holds;
- of a symbol's ticker updates only the last is kept (it is a last-value message);
- trades, status messages, snapshots and anything else pass untouched, in order.

Invariants:
- The output keeps the relative order of what it keeps; a merged L2 update or a kept ticker
  takes the place of the last message it stands for.
- Nothing is merged across an L2 snapshot of the same symbol.
- Pure: the same input gives the same output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, cast

import msgspec

from gateway.local_book import price_key
from gateway.market_data import BookL2, Ticker

T = TypeVar("T")


def conflate(entries: Sequence[T]) -> list[T]:
    """Return the run with L2 updates merged and tickers reduced to the last per symbol."""
    out: list[T | None] = []
    # Every run of consecutive L2 updates of a symbol: (its slot in out, its updates). The slot
    # moves to each new update's place; the merged update is built once, at the end.
    runs: list[tuple[int, list[BookL2]]] = []
    open_runs: dict[str, int] = {}  # symbol -> index in runs of its open run.
    last_ticker: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, BookL2):
            if entry.type == "snapshot":
                open_runs.pop(entry.symbol, None)
            else:
                run_index = open_runs.get(entry.symbol)
                if run_index is None:
                    open_runs[entry.symbol] = len(runs)
                    runs.append((len(out), [entry]))
                else:
                    slot, updates = runs[run_index]
                    out[slot] = None
                    updates.append(entry)
                    runs[run_index] = (len(out), updates)
        elif isinstance(entry, Ticker) and entry.type == "update":
            index = last_ticker.get(entry.symbol)
            if index is not None:
                out[index] = None
            last_ticker[entry.symbol] = len(out)
        out.append(entry)
    for slot, updates in runs:
        if len(updates) > 1:
            out[slot] = cast(T, merge_l2(*updates))
    return [entry for entry in out if entry is not None]


def merge_l2(*updates: BookL2) -> BookL2:
    """One L2 update equal to applying `updates` in order (each follows the one before)."""
    bids: dict[str, int] = {}
    asks: dict[str, int] = {}
    for update in updates:
        bids.update(update.bids)
        asks.update(update.asks)
    return msgspec.structs.replace(
        updates[-1],
        bids=sorted(bids.items(), key=price_key, reverse=True),  # Best (highest) first.
        asks=sorted(asks.items(), key=price_key),
        prev_seq=updates[0].prev_seq,
    )
