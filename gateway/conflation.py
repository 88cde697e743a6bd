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
from decimal import Decimal
from typing import TypeVar, cast

import msgspec

from gateway.market_data import BookL2, Level, Ticker

T = TypeVar("T")


def conflate(entries: Sequence[T]) -> list[T]:
    """Return the run with L2 updates merged and tickers reduced to the last per symbol."""
    out: list[T | None] = []
    open_l2: dict[str, int] = {}  # symbol -> index in out of its pending merged L2 update.
    last_ticker: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, BookL2):
            symbol = entry.symbol
            if entry.type == "snapshot":
                open_l2.pop(symbol, None)
            elif symbol in open_l2:
                index = open_l2[symbol]
                earlier = out[index]
                assert isinstance(earlier, BookL2)
                out[index] = None
                open_l2[symbol] = len(out)
                out.append(cast(T, merge_l2(earlier, entry)))
                continue
            else:
                open_l2[symbol] = len(out)
        elif isinstance(entry, Ticker) and entry.type == "update":
            index_or_none = last_ticker.get(entry.symbol)
            if index_or_none is not None:
                out[index_or_none] = None
            last_ticker[entry.symbol] = len(out)
        out.append(entry)
    return [entry for entry in out if entry is not None]


def merge_l2(first: BookL2, then: BookL2) -> BookL2:
    """One L2 update equal to applying `first`, then `then` (an update that follows it)."""
    return msgspec.structs.replace(
        then,
        bids=_merged(first.bids, then.bids, best_is_highest=True),
        asks=_merged(first.asks, then.asks, best_is_highest=False),
        prev_seq=first.prev_seq,
    )


def _merged(first: list[Level], then: list[Level], best_is_highest: bool) -> list[Level]:
    levels = dict(first)
    levels.update(then)
    # Prices are exact decimal strings: Decimal orders them exactly (no float involved).
    ordered = sorted(levels.items(), key=lambda level: Decimal(level[0]), reverse=best_is_highest)
    return [(price, quantity) for price, quantity in ordered]
