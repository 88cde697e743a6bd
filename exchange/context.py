"""The scratchpad of one command: the postings it made and the events it caused.

Invariants:
- Every posting is applied to the balances the moment it is made (so later checks in the same
  command see it) and is recorded in the order it was applied: replaying the record's postings
  in order reproduces the balances.
- A business rejection is decided before the first posting of the part it rejects, so a
  rejected command leaves no posting behind.
"""

from __future__ import annotations

from collections.abc import Sequence

from exchange.events import Event, OrderFilled
from ledger.balances import Balances
from ledger.records import Posting


class Context:
    __slots__ = (
        "balances",
        "events",
        "postings",
        "seq",
        "taker_fills",
        "timers_changed",
        "touched",
        "ts_ns",
    )

    def __init__(self, balances: Balances, seq: int, ts_ns: int) -> None:
        self.balances = balances
        self.seq = seq
        self.ts_ns = ts_ns
        self.postings: list[Posting] = []
        self.events: list[Event] = []
        # Made on first use (most commands have neither): one allocation less each.
        # The fills of this command's order as the taker (continuous trading), in order.
        self.taker_fills: list[OrderFilled] | None = None
        # Symbols whose book this command changed: their auction indicatives may have moved.
        self.touched: dict[str, None] | None = None
        # Set when this command may have set or fired a timer: the next due time is recomputed.
        self.timers_changed = False

    def touch(self, symbol: str) -> None:
        """Have the symbol's auction indicative recomputed (and published) after the command."""
        touched = self.touched
        if touched is None:
            self.touched = {symbol: None}
        else:
            touched[symbol] = None

    def post(self, postings: Sequence[Posting]) -> None:
        """Apply postings atomically and record them."""
        self.balances.apply(postings)
        self.postings.extend(postings)

    def hold(self, account: str, asset: str, amount: int) -> None:
        """Reserve amount of the account's available balance."""
        self.postings.append(self.balances.hold(account, asset, amount))

    def release(self, account: str, asset: str, amount: int) -> None:
        """Return amount of the account's held balance to available."""
        self.postings.append(self.balances.release(account, asset, amount))
