"""The pushes waiting for one session's writer, and the rule that judges the session too slow.

Pushes (execution reports, balances, market data) are queued by the gateway in passes: the
release of one durable batch, one heartbeat tick, one subscription. Nothing is written while a
pass runs (it does not yield), so a session can only be judged on the pushes of earlier
passes: those it had the chance to read.

Invariants:
- A pass's pushes are always accepted whole, however many: one cancel_all of 20,000 orders
  makes 20,000 reports in one batch, and a client reading promptly must get them all.
- At the first push of a new pass the session is too slow (put returns False, and the gateway
  disconnects it) when the pushes of earlier passes still unwritten number more than
  `max_pushes`, not counting what is left of its burst: the latest pass that took that count
  past `max_pushes`. So a burst gets the time to be written before it counts; a second burst
  before the first is written counts the first in full.
- Memory is therefore bounded: at most max_pushes, plus what is left of one burst, plus the
  pass being queued (a pass is bounded by one batch's events: by the open orders of an
  account, BATCH_MAX commands, the subscribed channels).
- The writer takes pushes in order: at most `count_max` at a time, and none more once
  `bytes_max` bytes are taken (one push always, however large).
"""

from __future__ import annotations

import asyncio
from collections import deque


class Passes:
    """The gateway's count of passes of pushes; `start()` begins the next one."""

    __slots__ = ("number",)

    def __init__(self) -> None:
        self.number = 0

    def start(self) -> None:
        self.number += 1


class Outbox:
    """One session's pushes, written in order by its writer (take, wait)."""

    __slots__ = (
        "_burst_end",
        "_burst_pass",
        "_burst_start",
        "_pass",
        "_pass_start",
        "_passes",
        "_pushes",
        "_taken",
        "_waiter",
        "max_pushes",
    )

    def __init__(self, max_pushes: int, passes: Passes) -> None:
        self.max_pushes = max_pushes
        self._passes = passes
        self._pushes: deque[bytes] = deque()
        # Positions count every push ever queued: [0, taken) were taken by the writer.
        self._taken = 0
        self._pass = -1  # The pass of the last push queued.
        self._pass_start = 0
        self._burst_pass = -1
        self._burst_start = self._burst_end = 0  # [start, end): the latest burst.
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._pushes)

    def put(self, text: bytes) -> bool:
        """Queue one push; False (nothing queued) when the session is too slow for it."""
        queued = self._taken + len(self._pushes)
        if self._passes.number != self._pass:
            if self._unread(queued) > self.max_pushes:
                return False
            self._pass = self._passes.number
            self._pass_start = queued
        self._pushes.append(text)
        queued += 1
        if self._burst_pass == self._pass:  # The rest of the burst's pass is the burst too.
            self._burst_end = queued
        elif len(self._pushes) > self.max_pushes and self._unread(queued) > self.max_pushes:
            # This pass took it past the limit: it is the burst (any earlier one counts now).
            self._burst_pass = self._pass
            self._burst_start, self._burst_end = self._pass_start, queued
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return True

    def _unread(self, queued: int) -> int:
        # Pushes queued and not taken, less what is left of the burst.
        taken = self._taken
        burst_left = self._burst_end - max(taken, self._burst_start)
        return queued - taken - max(0, burst_left)

    def take(self, count_max: int, bytes_max: int) -> list[bytes]:
        """Take the next pushes, in order: at least one if any wait, within both limits."""
        pushes = self._pushes
        texts: list[bytes] = []
        size = 0
        while pushes and len(texts) < count_max and (not texts or size < bytes_max):
            text = pushes.popleft()
            texts.append(text)
            size += len(text)
        self._taken += len(texts)
        return texts

    async def wait(self) -> None:
        """Return once a push waits."""
        while not self._pushes:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
