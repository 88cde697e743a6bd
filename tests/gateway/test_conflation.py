"""Conflation: a run of queued market data, merged, says exactly what the run said.

Rules:
- Consecutive L2 updates of a symbol become one; a subscriber that applies the merged update
  holds the same book, at the same seq, with a matching checksum, as one that applied each.
- Of a symbol's ticker updates in a run only the last is kept; trades, status messages and
  snapshots all pass, in order.
- Nothing merges across an L2 snapshot of the same symbol.
"""

from __future__ import annotations

import random

from gateway.conflation import conflate, merge_l2
from gateway.local_book import LocalBook
from gateway.market_data import L2, BookL2, Message, Status, Ticker, Trades, checksum
from tests.gateway.test_local_book import l2_snapshot, l2_update
from tests.gateway.test_market_data import SYMBOLS, random_command, two_instruments


def test_two_updates_merge_into_the_levels_they_changed_with_the_last_quantity() -> None:
    first = l2_update(5, [("10.15", 2), ("10.00", 0)], [("10.20", 0)], ([("10.15", 2)], []))
    after = ([("10.15", 4), ("10.10", 5)], [("10.30", 1)])
    then = l2_update(6, [("10.15", 4), ("9.90", 0)], [("10.25", 0)], after)
    merged = merge_l2(first, then)
    assert merged.bids == [("10.15", 4), ("10.00", 0), ("9.90", 0)]  # Best (highest) first.
    assert merged.asks == [("10.20", 0), ("10.25", 0)]
    assert (merged.seq, merged.prev_seq, merged.checksum) == (6, 4, checksum(*after))


def test_a_snapshot_between_updates_stops_the_merge() -> None:
    run = [
        l2_update(5, [("10.15", 2)], [], ([], [])),
        l2_snapshot(6),
        l2_update(7, [("10.05", 1)], [], ([], [])),
        l2_update(8, [("10.05", 2)], [], ([], [])),
    ]
    out = conflate(run)
    assert [(m.type, m.seq, m.prev_seq) for m in out] == [
        ("update", 5, 4),
        ("snapshot", 6, None),
        ("update", 8, 6),
    ]


def test_a_random_session_conflated_in_random_runs_rebuilds_the_same_books() -> None:
    seed = random.SystemRandom().randrange(1 << 32)
    print(f"conflation session seed={seed}")
    rng = random.Random(seed)
    market = two_instruments(seed)
    one_by_one = {symbol: LocalBook(symbol) for symbol in SYMBOLS}
    conflated = {symbol: LocalBook(symbol) for symbol in SYMBOLS}
    for symbol in SYMBOLS:
        snapshot = market.data.snapshot(L2, symbol)
        assert isinstance(snapshot, BookL2)
        assert one_by_one[symbol].apply(snapshot) and conflated[symbol].apply(snapshot)
    pending: list[Message] = []
    sent = kept = 0
    seen = len(market.messages)  # FedMarket keeps every message MarketData made.
    for _ in range(3_000):
        command = random_command(market, rng)
        if command is None:
            market.tick(rng.choice((1, 30, 600)) * 1_000_000_000)
        else:
            market.do(command, rng.randint(1, 5_000_000_000))
        new, seen = market.messages[seen:], len(market.messages)
        for message in new:
            if isinstance(message, BookL2):
                one_by_one[message.symbol].apply(message)
            pending.append(message)
        if rng.random() < 0.1:  # The sink catches up: the run so far goes out, conflated.
            out = conflate(pending)
            sent, kept = sent + len(pending), kept + len(out)
            _check_run(pending, out)
            for message in out:
                if isinstance(message, BookL2):
                    assert conflated[message.symbol].apply(message), "merged update broke sync"
            pending = []
            for symbol in SYMBOLS:
                expected, book = one_by_one[symbol], conflated[symbol]
                assert expected.in_sync and book.in_sync
                assert (book.seq, book.bids(), book.asks()) == (
                    expected.seq,
                    expected.bids(),
                    expected.asks(),
                )
    print(f"conflation: {sent:,} messages sent as {kept:,}")
    assert kept < sent


def _check_run(run: list[Message], out: list[Message]) -> None:
    # Trades and status pass untouched and in order; the last ticker of each symbol is kept.
    def passing(messages: list[Message]) -> list[Message]:
        return [m for m in messages if isinstance(m, Trades | Status)]

    assert passing(out) == passing(run)
    for symbol in SYMBOLS:
        tickers = [m for m in run if isinstance(m, Ticker) and m.symbol == symbol]
        kept = [m for m in out if isinstance(m, Ticker) and m.symbol == symbol]
        assert kept == tickers[-1:]
