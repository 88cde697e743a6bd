"""Client-side books rebuilt from the public channels: book.l2 and book.l3.

A client applies a snapshot, then the updates in seq order. It stops trusting its copy, and
asks for a resync (resubscribe: a fresh snapshot), when:
- an update's prev_seq is not the seq it applied last (a message was lost);
- a heartbeat reports a later seq than it applied (the lost message was the last one);
- after a book.l2 message, its own CRC32 of the top 10 levels differs from the message's.
Updates whose seq is not above the last applied one are already in the snapshot and skipped.
Until the next snapshot, updates are ignored. IpxClient.follow_book (gateway/client.py) keeps
a LocalBook this way from a live session and resubscribes by itself; this module does no I/O.

Invariants:
- `in_sync` is True only after a snapshot and an unbroken chain of updates (seq = prev + 1)
  whose checksums all matched; the book then equals the server's published book at `seq`.
- Prices stay the decimal strings of the wire; they are ordered with `decimal.Decimal`,
  which is exact (no float).
"""

from __future__ import annotations

from decimal import Decimal

from gateway.market_data import (
    L2,
    L3,
    BookL2,
    BookL3,
    Heartbeat,
    L3Action,
    Level,
    checksum,
)
from matching.orders import Side


class _Sequenced:
    """The seq bookkeeping shared by the local books: snapshot, updates in order, gaps."""

    channel = ""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.seq: int | None = None  # Of the last message applied; None before a snapshot.
        self.problem = "no snapshot yet"  # Why a resync is needed; "" when in sync.

    @property
    def in_sync(self) -> bool:
        return not self.problem

    def _accepts(self, kind: str, seq: int, prev_seq: int | None) -> bool:
        # Return whether an update is to be applied now (a snapshot always is).
        if kind == "snapshot":
            self.problem = ""
            return True
        if self.problem or self.seq is None or seq <= self.seq:
            return False
        if prev_seq != self.seq:
            self.problem = f"gap: update {seq} follows {prev_seq}, last applied {self.seq}"
            return False
        return True

    def check_heartbeat(self, heartbeat: Heartbeat) -> bool:
        """Compare a heartbeat's seq for this channel with the last applied; return in_sync."""
        latest = heartbeat.channels.get(self.channel, 0)
        if self.in_sync and self.seq is not None and latest > self.seq:
            self.problem = f"gap: heartbeat reports seq {latest}, last applied {self.seq}"
        return self.in_sync


def price_key(level: Level) -> Decimal:
    """Order levels by price exactly: prices are decimal strings, never floats."""
    return Decimal(level[0])


class LocalBook(_Sequenced):
    """An L2 book (top levels of each side) kept from book.l2 snapshots and updates."""

    channel = L2

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self._bids: dict[str, int] = {}
        self._asks: dict[str, int] = {}

    def apply(self, message: BookL2) -> bool:
        """Apply one book.l2 message; return in_sync afterwards."""
        if not self._accepts(message.type, message.seq, message.prev_seq):
            return self.in_sync
        if message.type == "snapshot":
            self._bids.clear()
            self._asks.clear()
        for levels, side in ((message.bids, self._bids), (message.asks, self._asks)):
            for price, quantity in levels:
                if quantity:
                    side[price] = quantity
                else:
                    side.pop(price, None)
        self.seq = message.seq
        mine = self.checksum()
        if mine != message.checksum:
            self.problem = f"checksum {mine} differs from {message.checksum} at seq {message.seq}"
        return self.in_sync

    def bids(self) -> list[Level]:
        """Bid levels, best (highest) first."""
        return sorted(self._bids.items(), key=price_key, reverse=True)

    def asks(self) -> list[Level]:
        """Ask levels, best (lowest) first."""
        return sorted(self._asks.items(), key=price_key)

    def checksum(self) -> int:
        """The CRC32 of the top 10 levels, as defined in gateway/market_data.py."""
        return checksum(self.bids(), self.asks())


class LocalOrderBook(_Sequenced):
    """An L3 book (every resting order, in priority order) kept from book.l3 messages."""

    channel = L3

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        # Per side: price -> order_id -> leaves; dicts keep arrival order (the queue).
        self._sides: dict[Side, dict[str, dict[int, int]]] = {Side.BUY: {}, Side.SELL: {}}
        self._where: dict[int, tuple[Side, str]] = {}

    def apply(self, message: BookL3) -> bool:
        """Apply one book.l3 message; return in_sync afterwards."""
        if not self._accepts(message.type, message.seq, message.prev_seq):
            return self.in_sync
        if message.type == "snapshot":
            self._sides = {Side.BUY: {}, Side.SELL: {}}
            self._where = {}
        for entry in message.orders:
            if not self._apply_entry(entry.action, entry.order_id, entry.side, entry.price,
                                     entry.quantity_units):  # fmt: skip
                break
        self.seq = message.seq
        return self.in_sync

    def _apply_entry(
        self, action: L3Action, order_id: int, side: Side, price: str, units: int
    ) -> bool:
        known = self._where.get(order_id)
        if (action is L3Action.ADD) == (known is not None):
            self.problem = (
                f"{action.value} of order {order_id}, which is {'' if known else 'not '}known"
            )
            return False
        if action is L3Action.DELETE:
            assert known is not None
            level = self._sides[known[0]][known[1]]
            del level[order_id]
            if not level:
                del self._sides[known[0]][known[1]]
            del self._where[order_id]
        elif action is L3Action.ADD:
            self._sides[side].setdefault(price, {})[order_id] = units
            self._where[order_id] = (side, price)
        else:
            assert known is not None
            self._sides[known[0]][known[1]][order_id] = units
        return True

    def orders(self, side: Side) -> list[tuple[int, str, int]]:
        """(order_id, price, leaves) of one side in priority order: best price, then arrival."""
        levels = self._sides[side]
        prices = sorted(levels, key=Decimal, reverse=side is Side.BUY)
        return [
            (order_id, price, units)
            for price in prices
            for order_id, units in levels[price].items()
        ]
