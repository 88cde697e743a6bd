"""The fast book must behave exactly like the naive reference book, command by command.

Each run feeds the same seeded random commands to matching.book.OrderBook and to
tests/matching/reference_book.ReferenceBook and compares, after EVERY command, the events
(rejection messages are free text, so only their id, owner and reason count) and
state_hash(); every few steps it also compares the read-only views (best bid/ask, l2, len,
order(id), indicative, the trade counter). Now and then the engine is replaced by
OrderBook.restore() of its own l3() snapshot, which must change nothing. A mismatch fails
with the seed, the step, the command, both event lists and a shrunk program that
reproduces it.

Replay: IPX_SEED=<seed> .venv/bin/pytest tests/matching/test_differential.py
(IPX_DIFF_STEPS=<n> sets the steps per profile; the default, 20,000 on each of the five
profiles, makes 100,000 steps in total).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest

from matching.book import OrderBook
from matching.events import BookEvent, OrderRejected
from tests.matching.random_commands import (
    PROFILES,
    Book,
    Command,
    CommandGenerator,
    Place,
    Profile,
    RestoreSnapshot,
    python_repr,
)
from tests.matching.reference_book import ReferenceBook

STEPS_PER_PROFILE = int(os.environ.get("IPX_DIFF_STEPS", "20000"))
VIEW_EVERY_STEPS = 7
SHRINK_SECONDS_MAX = 30.0


def _base_seed() -> int:
    configured = os.environ.get("IPX_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(1 << 32)


BASE_SEED = _base_seed()


def _comparable(event: BookEvent) -> object:
    # A rejection's message is prose for humans; the contract fixes only id, owner and reason.
    if isinstance(event, OrderRejected):
        return ("OrderRejected", event.order_id, event.owner, event.reason)
    return event


def _view_snapshot(book: Book, profile: Profile, order_ids: Sequence[int]) -> dict[str, object]:
    mid = profile.mid_price_ticks
    return {
        "len": len(book),
        "in_auction": book.in_auction,
        "next_trade_id": book.next_trade_id,
        "best_bid": book.best_bid(),
        "best_ask": book.best_ask(),
        "l2(10)": book.l2(10),
        "l2(1)": book.l2(1),
        # Neighbouring references make the "closest to the reference, then lower" ties happen.
        "indicative": [
            book.indicative(reference) for reference in (mid - 7, mid - 1, mid, mid + 1, mid + 7)
        ],
        "orders": [book.order(order_id) for order_id in order_ids],
    }


@dataclass
class Mismatch:
    step: int
    command: Command | None
    what: str
    engine: object
    reference: object


def _apply(book: Book, command: Command) -> list[BookEvent] | str:
    try:
        return command.apply(book)
    except Exception as error:  # A crash is a behaviour to compare, not a test error.
        return f"raised {type(error).__name__}: {error}"


def _restore(engine: Book, profile: Profile) -> Book:
    # Snapshot then restore, as recovery does: the rebuilt book must go on exactly as before.
    if not isinstance(engine, OrderBook) or not hasattr(OrderBook, "restore"):
        return engine
    bids, asks = engine.l3()
    return OrderBook.restore(
        engine.in_auction, engine.next_trade_id, bids, asks, limits=profile.limits
    )


def _compare_step(
    engine: Book,
    reference: Book,
    command: Command,
    step: int,
    profile: Profile,
    check_views: bool,
) -> tuple[Book, Mismatch | None]:
    """Apply one command to both books; return the engine (a restore replaces it) and any
    disagreement."""
    if isinstance(command, RestoreSnapshot):
        engine = _restore(engine, profile)
    return engine, _compare_events_and_state(engine, reference, command, step, profile, check_views)


def _compare_events_and_state(
    engine: Book,
    reference: Book,
    command: Command,
    step: int,
    profile: Profile,
    check_views: bool,
) -> Mismatch | None:
    engine_events = _apply(engine, command)
    reference_events = _apply(reference, command)
    if isinstance(reference_events, str):
        raise AssertionError(f"the reference book itself failed at step {step}: {reference_events}")
    if isinstance(engine_events, str) or [_comparable(e) for e in engine_events] != [
        _comparable(e) for e in reference_events
    ]:
        return Mismatch(step, command, "events", engine_events, reference_events)
    if engine.state_hash() != reference.state_hash():
        return Mismatch(step, command, "state_hash (l3 shown)", engine.l3(), reference.l3())
    if check_views:
        bids, asks = reference.l3()
        ids = [view.order_id for view in bids + asks]
        ids += [command.order_id] if hasattr(command, "order_id") else []
        ids += [0, max(ids, default=0) + 1]
        engine_views = _view_snapshot(engine, profile, ids)
        reference_views = _view_snapshot(reference, profile, ids)
        if engine_views != reference_views:
            return Mismatch(step, command, "views", engine_views, reference_views)
    return None


def _new_books(profile: Profile) -> tuple[Book, Book]:
    engine = OrderBook(limits=profile.limits, in_auction=profile.start_in_auction)
    reference = ReferenceBook(limits=profile.limits, in_auction=profile.start_in_auction)
    return engine, reference


def replay(commands: Sequence[Command], profile: Profile) -> Mismatch | None:
    """Replay a fixed program into fresh books; return the first disagreement."""
    engine, reference = _new_books(profile)
    if engine.state_hash() != reference.state_hash():
        return Mismatch(-1, None, "initial state_hash", engine.l3(), reference.l3())
    for step, command in enumerate(commands):
        engine, mismatch = _compare_step(
            engine, reference, command, step, profile, check_views=True
        )
        if mismatch is not None:
            return mismatch
    return None


def shrink(
    commands: list[Command], fails: Callable[[list[Command]], bool], deadline: float
) -> list[Command]:
    """Drop chunks of commands while the program still fails (delta debugging, time-boxed)."""
    chunk = max(len(commands) // 2, 1)
    while time.monotonic() < deadline:
        start = 0
        removed_any = False
        while start < len(commands) and time.monotonic() < deadline:
            candidate = commands[:start] + commands[start + chunk :]
            if candidate and fails(candidate):
                commands = candidate
                removed_any = True
            else:
                start += chunk
        if chunk == 1 and not removed_any:
            break
        chunk = max(chunk // 2, 1)
    return commands


def _report(seed: int, profile: Profile, history: list[Command], mismatch: Mismatch) -> str:
    deadline = time.monotonic() + SHRINK_SECONDS_MAX
    program = shrink(list(history), lambda cmds: replay(cmds, profile) is not None, deadline)
    minimal = replay(program, profile)
    lines = [
        f"engine and reference disagree: IPX_SEED={BASE_SEED} profile={profile.name} "
        f"run seed={seed} step={mismatch.step} ({mismatch.what})",
        f"command:   {mismatch.command!r}",
        f"engine:    {python_repr(mismatch.engine)}",
        f"reference: {python_repr(mismatch.reference)}",
        f"shrunk program ({len(program)} commands), on "
        f"OrderBook(limits={python_repr(profile.limits)}, in_auction={profile.start_in_auction}):",
        *(f"  {command!r}" for command in program),
    ]
    if minimal is not None:
        lines += [
            f"shrunk mismatch at its step {minimal.step} ({minimal.what}):",
            f"  engine:    {python_repr(minimal.engine)}",
            f"  reference: {python_repr(minimal.reference)}",
        ]
    return "\n".join(lines)


def run_differential(seed: int, profile: Profile, steps: int) -> None:
    engine, reference = _new_books(profile)
    assert engine.state_hash() == reference.state_hash(), "fresh books must hash equal"
    generator = CommandGenerator(seed, profile)
    history: list[Command] = []
    for step in range(steps):
        command = generator.next_command(reference)
        history.append(command)
        check_views = step % VIEW_EVERY_STEPS == 0 or reference.in_auction
        engine, mismatch = _compare_step(engine, reference, command, step, profile, check_views)
        if mismatch is not None:
            pytest.fail(_report(seed, profile, history, mismatch), pytrace=False)


@pytest.mark.slow
@pytest.mark.parametrize("profile", PROFILES, ids=lambda profile: profile.name)
def test_engine_agrees_with_the_reference_book_after_every_command(profile: Profile) -> None:
    seed = BASE_SEED + PROFILES.index(profile)
    print(
        f"differential: IPX_SEED={BASE_SEED} profile={profile.name} run seed={seed} "
        f"steps={STEPS_PER_PROFILE}"
    )
    started = time.monotonic()
    run_differential(seed, profile, STEPS_PER_PROFILE)
    print(f"differential: {profile.name} done in {time.monotonic() - started:.1f} s")


def test_shrink_keeps_a_failing_program_failing() -> None:
    # The shrinker is what turns a 25,000-step failure into a report; it must not lose it.
    commands: list[Command] = []
    generator = CommandGenerator(7, PROFILES[0])
    book = ReferenceBook(limits=PROFILES[0].limits)
    for _ in range(300):
        command = generator.next_command(book)
        command.apply(book)
        commands.append(command)
    marked = next(command for command in commands[100:] if isinstance(command, Place))
    shrunk = shrink(commands, lambda cmds: marked in cmds, time.monotonic() + 10)
    assert shrunk == [marked]
