"""A session's outbox: when its client is judged too slow, and what the writer takes at once.

Rules (gateway/outbox.py):
- A pass's pushes are accepted whole, however many (one batch's reports to a prompt reader).
- At a new pass, the session is too slow when more than max_pushes of the pushes of earlier
  passes are unwritten, not counting what is left of its burst (the latest pass that took
  that count past max_pushes); pushes the writer took no longer count.
- A second burst before the first is written counts the first in full.
- The writer takes pushes in order, at most count_max, and stops once bytes_max is reached
  (one push always, however large).
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.outbox import Outbox, Passes

MAX = 3


def _pass(outbox: Outbox, passes: Passes, pushes: int) -> list[bool]:
    passes.start()
    return [outbox.put(b"x") for _ in range(pushes)]


def test_one_pass_is_accepted_whole_however_many_pushes() -> None:
    passes = Passes()
    outbox = Outbox(MAX, passes)
    assert _pass(outbox, passes, 100 * MAX) == [True] * 100 * MAX
    assert len(outbox) == 100 * MAX


def test_more_than_the_max_unread_from_earlier_passes_is_too_slow_at_the_next_pass() -> None:
    passes = Passes()
    outbox = Outbox(MAX, passes)
    assert all(_pass(outbox, passes, MAX))  # At the max: still fine.
    assert _pass(outbox, passes, 1) == [True]  # The one past it: this pass is its burst.
    assert _pass(outbox, passes, 1) == [True]  # The burst is not counted: MAX unread.
    assert _pass(outbox, passes, 1) == [False]  # MAX + 1 unread besides the burst.
    assert len(outbox) == MAX + 2  # Nothing queued once refused.


def test_a_burst_gets_the_time_to_be_written_and_taken_pushes_stop_counting() -> None:
    passes = Passes()
    outbox = Outbox(MAX, passes)
    assert all(_pass(outbox, passes, 10 * MAX))  # One cancel_all's reports, say.
    for _ in range(MAX):  # Small passes meanwhile: MAX of them unread besides the burst.
        assert _pass(outbox, passes, 1) == [True]
    assert len(outbox.take(10 * MAX, 1 << 20)) == 10 * MAX  # The burst is written.
    assert _pass(outbox, passes, 1) == [True]  # Past MAX: this pass is the burst now.
    assert _pass(outbox, passes, 1) == [True]
    assert _pass(outbox, passes, 1) == [False]  # MAX + 1 unread besides the burst.
    assert len(outbox.take(100, 1 << 20)) == MAX + 2
    assert _pass(outbox, passes, 1) == [True]  # All written: it is reading again.


def test_a_second_burst_before_the_first_is_written_counts_the_first() -> None:
    passes = Passes()
    outbox = Outbox(MAX, passes)
    assert all(_pass(outbox, passes, 10 * MAX))
    assert all(_pass(outbox, passes, 10 * MAX))  # Accepted whole: it becomes the burst.
    assert _pass(outbox, passes, 1) == [False]  # The first one's 10 x MAX count now.


def test_the_writer_takes_in_order_within_count_and_bytes() -> None:
    passes = Passes()
    outbox = Outbox(MAX, passes)
    passes.start()
    for text in (b"a" * 10, b"b" * 10, b"c" * 10, b"d", b"e"):
        outbox.put(text)
    assert outbox.take(10, 15) == [b"a" * 10, b"b" * 10]  # Stops once 15 bytes are reached.
    assert outbox.take(2, 1000) == [b"c" * 10, b"d"]
    assert outbox.take(10, 1) == [b"e"]  # One push at least, however large.
    assert outbox.take(10, 1) == []


@pytest.mark.asyncio
async def test_the_writer_waits_for_a_push() -> None:
    passes = Passes()
    outbox = Outbox(MAX, passes)
    waiting = asyncio.create_task(outbox.wait())
    await asyncio.sleep(0)
    assert not waiting.done()
    passes.start()
    outbox.put(b"x")
    await asyncio.wait_for(waiting, 1.0)
