"""The client-side books: snapshot, updates in seq order, and every way a copy goes stale.

Rules:
- A snapshot replaces the book; an update applies only when its prev_seq is the last seq
  applied; an update at or below that seq is already in the snapshot and is skipped.
- A gap (prev_seq differs), a heartbeat ahead of the book, or a checksum that differs marks
  the book out of sync; it then ignores updates until the next snapshot.
- L3 adds go to the back of their level; a delete or update of an unknown order, or an add of
  a known one, marks the book out of sync.
"""

from __future__ import annotations

from gateway.local_book import LocalBook, LocalOrderBook
from gateway.market_data import (
    CHANNELS,
    L2,
    L3,
    BookL2,
    BookL3,
    Heartbeat,
    L3Action,
    L3Order,
    Level,
    checksum,
)
from matching.orders import Side

SYMBOL = "RS-TEST"
BIDS: list[Level] = [("10.10", 5), ("10.00", 7)]
ASKS: list[Level] = [("10.20", 3), ("10.30", 1)]


def l2_snapshot(seq: int, bids: list[Level] = BIDS, asks: list[Level] = ASKS) -> BookL2:
    return BookL2("snapshot", SYMBOL, seq, seq, 0, bids, asks, checksum(bids, asks))


def l2_update(
    seq: int, bids: list[Level], asks: list[Level], after: tuple[list[Level], list[Level]]
) -> BookL2:
    """An update whose checksum is that of the book `after` it."""
    return BookL2("update", SYMBOL, seq, seq, 0, bids, asks, checksum(*after), prev_seq=seq - 1)


def heartbeat(l2_seq: int, l3_seq: int = 0) -> Heartbeat:
    channels = dict.fromkeys(CHANNELS, 0) | {L2: l2_seq, L3: l3_seq}
    return Heartbeat("update", SYMBOL, 99, 99, 0, channels)


def synced_book() -> LocalBook:
    book = LocalBook(SYMBOL)
    assert not book.in_sync and book.problem == "no snapshot yet"
    assert book.apply(l2_snapshot(4))
    return book


def test_a_snapshot_then_updates_rebuild_the_book() -> None:
    book = synced_book()
    assert (book.bids(), book.asks(), book.seq) == (BIDS, ASKS, 4)
    after = ([("10.15", 2), ("10.10", 5)], [("10.30", 4)])
    assert book.apply(
        l2_update(5, [("10.15", 2), ("10.00", 0)], [("10.20", 0), ("10.30", 4)], after)
    )
    assert (book.bids(), book.asks(), book.seq) == (*after, 5)
    assert book.checksum() == checksum(*after)


def test_prices_are_ordered_as_numbers_not_as_text() -> None:
    bids: list[Level] = [("100.00", 1), ("99.50", 2), ("9.90", 3)]
    book = LocalBook(SYMBOL)
    assert not book.apply(l2_snapshot(1, list(reversed(bids)), []))  # Checksum: other order.
    assert not book.in_sync and "checksum" in book.problem
    assert book.apply(l2_snapshot(1, bids, []))
    assert book.bids() == bids


def test_an_update_already_in_the_snapshot_is_skipped() -> None:
    book = synced_book()
    stale = l2_update(4, [("9.00", 1)], [], ([("9.00", 1)], []))
    assert book.apply(stale)
    assert (book.bids(), book.seq) == (BIDS, 4)


def test_a_gap_asks_for_a_resync_and_a_snapshot_heals_it() -> None:
    book = synced_book()
    after = ([("10.10", 5)], ASKS)
    assert not book.apply(l2_update(6, [("10.00", 0)], [], after))  # 5 was lost.
    assert book.problem.startswith("gap") and book.seq == 4
    assert not book.apply(l2_update(7, [], [], after)), "updates are ignored until a snapshot"
    assert book.apply(l2_snapshot(7, *after))
    assert (book.bids(), book.seq) == (after[0], 7)


def test_an_update_before_any_snapshot_is_not_applied() -> None:
    book = LocalBook(SYMBOL)
    assert not book.apply(l2_update(1, BIDS, [], (BIDS, [])))
    assert book.seq is None and book.bids() == []


def test_a_checksum_mismatch_asks_for_a_resync() -> None:
    book = synced_book()
    wrong = ([("10.10", 6), ("10.00", 7)], ASKS)
    assert not book.apply(l2_update(5, [("10.10", 4)], [], wrong))
    assert "checksum" in book.problem


def test_a_heartbeat_ahead_of_the_book_reveals_a_lost_last_update() -> None:
    book = synced_book()
    assert book.check_heartbeat(heartbeat(4))
    assert not book.check_heartbeat(heartbeat(5))
    assert "heartbeat" in book.problem


def test_the_l3_book_keeps_each_level_in_arrival_order() -> None:
    book = LocalOrderBook(SYMBOL)
    add, update, delete = L3Action.ADD, L3Action.UPDATE, L3Action.DELETE
    buy, sell = Side.BUY, Side.SELL
    snapshot = [L3Order(add, 1, buy, "10.00", 5), L3Order(add, 2, buy, "10.00", 3)]
    assert book.apply(BookL3("snapshot", SYMBOL, 3, 3, 0, snapshot))
    changes = [
        L3Order(add, 3, buy, "10.10", 1),
        L3Order(add, 4, sell, "10.50", 2),
        L3Order(update, 2, buy, "10.00", 1),
        L3Order(delete, 1, buy, "10.00", 0),
        L3Order(add, 1, buy, "10.00", 9),  # Re-queued: now behind order 2.
    ]
    assert book.apply(BookL3("update", SYMBOL, 4, 4, 0, changes, prev_seq=3))
    assert book.orders(buy) == [(3, "10.10", 1), (2, "10.00", 1), (1, "10.00", 9)]
    assert book.orders(sell) == [(4, "10.50", 2)]
    unknown = [L3Order(delete, 42, sell, "10.50", 0)]
    assert not book.apply(BookL3("update", SYMBOL, 5, 5, 0, unknown, prev_seq=4))
    assert "not known" in book.problem
    assert not book.check_heartbeat(heartbeat(0, 5))


def test_the_l3_book_detects_a_gap_and_a_double_add() -> None:
    book = LocalOrderBook(SYMBOL)
    assert book.apply(BookL3("snapshot", SYMBOL, 1, 1, 0, []))
    add = [L3Order(L3Action.ADD, 7, Side.SELL, "10.50", 2)]
    assert not book.apply(BookL3("update", SYMBOL, 3, 3, 0, add, prev_seq=2))
    assert book.problem.startswith("gap")
    assert book.apply(BookL3("snapshot", SYMBOL, 3, 3, 0, add))
    assert not book.apply(BookL3("update", SYMBOL, 4, 4, 0, add, prev_seq=3))
    assert "is known" in book.problem
