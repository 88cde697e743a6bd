"""The single writer: time, batching, durability before visibility, overload, timers, crashes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from exchange.commands import Command, OpenAccount, Resume, Role, Tick, command_decoder
from exchange.core import ADMIN_ACTOR, Exchange, Outcome
from exchange.events import Phase, TradeExecuted
from exchange.snapshot import SNAPSHOT_VERSION
from exchange.state import SEQUENCER_ACTOR
from gateway import sequencer as sequencer_module
from gateway.sequencer import (
    Overloaded,
    Sequencer,
    SequencerStopped,
    Unavailable,
    recover,
)
from ledger.file_store import FileJournal, read_journal
from matching.orders import TimeInForce
from tests.exchange import rulebook
from tests.gateway.conftest import stopped_in_an_auction

pytestmark = pytest.mark.asyncio


def _open(index: int) -> OpenAccount:
    return OpenAccount(ADMIN_ACTOR, f"acct-{index}", Role.INVESTOR)


class FrozenClock:
    """A wall clock that a test moves by hand (and may move backwards)."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


async def _run(sequencer: Sequencer) -> asyncio.Task[None]:
    task = asyncio.create_task(sequencer.run())
    await asyncio.sleep(0)
    return task


async def _stop(sequencer: Sequencer, task: asyncio.Task[None]) -> None:
    await sequencer.stop()
    await asyncio.wait_for(task, 5.0)
    sequencer.close()


async def test_a_batch_is_on_disk_before_anyone_sees_it(tmp_path: Path) -> None:
    journal = FileJournal.open(tmp_path)
    sequencer = Sequencer(Exchange(), journal)
    seen: list[tuple[int, int]] = []  # (last outcome seq, journal's last durable seq)
    released: list[tuple[int, int]] = []  # What the observer said, once durable.

    def observer(outcome: Outcome) -> list[tuple[int, int]]:
        # Called right after each command: the state is exactly as that command left it.
        return [(outcome.seq, sequencer.exchange.seq)]

    def subscriber(outcomes: Sequence[Outcome], messages: Sequence[tuple[int, int]]) -> None:
        seen.append((outcomes[-1].seq, journal.last_seq))
        assert all(seq <= journal.last_seq for seq, _ in messages)
        released.extend(messages)

    sequencer.observe(observer)
    sequencer.subscribe(subscriber)
    task = await _run(sequencer)
    outcomes = await asyncio.gather(*(sequencer.submit(_open(index)) for index in range(50)))
    for outcome in outcomes:
        assert journal.last_seq >= outcome.seq  # Resolved only once durable.
    assert [outcome.seq for outcome in outcomes] == list(range(1, 51))  # Submission order.
    assert all(seq <= durable for seq, durable in seen)
    assert released == [(seq, seq) for seq in range(1, 51)]
    assert sequencer.batches < 50  # Queued together, committed together (group commit).
    await _stop(sequencer, task)
    assert [record.seq for record in read_journal(tmp_path)] == list(range(1, 51))


async def test_time_only_moves_forward_even_when_the_wall_clock_does_not(tmp_path: Path) -> None:
    clock = FrozenClock(1_800_000_000_000_000_000)
    monotonic = FrozenClock(0)  # No time passes: each command is 1 ns after the last.
    sequencer = Sequencer(
        Exchange(), FileJournal.open(tmp_path), clock=clock, monotonic_clock=monotonic
    )
    task = await _run(sequencer)
    first = await sequencer.submit(_open(1))
    clock.now_ns -= 5_000_000_000  # The wall clock steps back five seconds.
    second = await sequencer.submit(_open(2))
    third = await sequencer.submit(_open(3))
    assert first.ts_ns == clock.now_ns + 5_000_000_000
    assert (second.ts_ns, third.ts_ns) == (first.ts_ns + 1, first.ts_ns + 2)
    await _stop(sequencer, task)


async def test_after_the_wall_clock_steps_back_exchange_time_goes_on_by_the_monotonic_clock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An NTP step or a VM restore sets the wall clock back an hour while a 30 s opening
    # auction runs: exchange time must go on at the pace of real time, so that the auction
    # (like a GTD expiry or the day roll) ends on time, not an hour late.
    second = rulebook.SECOND
    wall, monotonic = FrozenClock(rulebook.START_TS_NS), FrozenClock(7 * second)
    sequencer = Sequencer(
        Exchange(),
        FileJournal.open(tmp_path),
        clock=wall,
        monotonic_clock=monotonic,
        tick_interval_s=0.01,
    )
    task = await _run(sequencer)
    for command in _standard_listing():
        rulebook.accepted_reply(await sequencer.submit(command))
    resumed = await sequencer.submit(Resume(rulebook.OPERATOR, rulebook.SYMBOL))
    instrument = sequencer.exchange.state.instruments[rulebook.SYMBOL]
    assert instrument.phase_until_ns == resumed.ts_ns + rulebook.OPENING_AUCTION_NS
    with caplog.at_level(logging.WARNING, logger="ipx.sequencer"):
        wall.now_ns -= rulebook.HOUR
        for step in range(2):  # 20 s of real time: the auction still runs.
            wall.now_ns += 10 * second
            monotonic.now_ns += 10 * second
            placed = await sequencer.submit(_open(100 + step))
        assert placed.ts_ns >= resumed.ts_ns + 20 * second
        assert instrument.phase is Phase.AUCTION
        wall.now_ns += 15 * second  # 35 s: the idle sequencer's tick ends the auction.
        monotonic.now_ns += 15 * second
        deadline = time.monotonic() + 5.0
        while instrument.phase is Phase.AUCTION and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    assert sequencer.exchange.state.instruments[rulebook.SYMBOL].phase is Phase.CONTINUOUS
    behind = [record for record in caplog.records if "behind" in record.getMessage()]
    assert len(behind) == 1 and behind[0].levelno == logging.WARNING  # Once, not per command.
    await _stop(sequencer, task)


def _standard_listing() -> list[Command]:
    # The rulebook's standard accounts, patent and share class, pre-open.
    market = rulebook.Market()
    market.pre_open()
    return [command_decoder.decode(record.command) for record in market.records]


async def test_a_full_queue_refuses_at_once_and_does_nothing(tmp_path: Path) -> None:
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path), queue_max=2)
    waiting = [asyncio.create_task(sequencer.submit(_open(index))) for index in range(2)]
    await asyncio.sleep(0)  # Both are queued; the sequencer is not running yet.
    with pytest.raises(Overloaded, match="retry"):
        await sequencer.submit(_open(3))
    task = await _run(sequencer)
    assert [outcome.seq for outcome in await asyncio.gather(*waiting)] == [1, 2]
    await _stop(sequencer, task)
    assert len(list(read_journal(tmp_path))) == 2


async def test_after_stop_commands_are_refused_and_the_queue_is_drained(tmp_path: Path) -> None:
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path))
    queued = [asyncio.create_task(sequencer.submit(_open(index))) for index in range(5)]
    await asyncio.sleep(0)
    await sequencer.stop()
    with pytest.raises(Unavailable):
        await sequencer.submit(_open(9))
    await asyncio.wait_for(sequencer.run(), 5.0)
    assert [outcome.seq for outcome in await asyncio.gather(*queued)] == [1, 2, 3, 4, 5]
    sequencer.close()
    exchange, journal, recovery = recover(tmp_path)
    journal.close()
    assert (recovery.snapshot_seq, recovery.replayed_records, exchange.seq) == (5, 0, 5)


async def test_an_idle_exchange_ticks_only_when_a_timer_is_due(tmp_path: Path) -> None:
    clock = FrozenClock(1_800_000_000_000_000_000)
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path), clock=clock, tick_interval_s=0.01)
    task = await _run(sequencer)
    await sequencer.submit(_open(1))  # The first command sets the day-roll timer.
    await asyncio.sleep(0.1)
    assert sequencer.exchange.seq == 1  # Idle, nothing due: nothing written.
    clock.now_ns = sequencer.exchange.state.next_timer_ns  # The day rolls over.
    await asyncio.sleep(0.1)
    assert sequencer.exchange.seq == 2
    assert [record.kind for record in sequencer.journal.records()] == ["open_account", "tick"]
    await _stop(sequencer, task)


async def test_an_idle_exchange_ticks_for_no_gtd_order_that_has_left_the_book(
    tmp_path: Path,
) -> None:
    # Each canceled GTD order left its expiry as the cached next timer: an idle sequencer
    # journaled an empty Tick for each, and a restarted one (whose snapshot has none) did not.
    market = rulebook.Market()
    market.trading()
    expiry = market.ts_ns + 1_000_000
    order_id = market.rest("alice", rulebook.BUY, 1, 990, tif=TimeInForce.GTD, expire_ts_ns=expiry)
    market.cancel("alice", order_id)
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies(market.records)
    exchange, journal, _ = recover(tmp_path)
    exchange.state.next_timer_ns = expiry  # As the never-restarted server had it cached.
    clock = FrozenClock(expiry + 1)
    sequencer = Sequencer(exchange, journal, clock=clock, tick_interval_s=0.01)
    task = await _run(sequencer)
    await asyncio.sleep(0.1)
    assert sequencer.exchange.seq == len(market.records), "an empty Tick was journaled"
    await _stop(sequencer, task)


async def test_a_crash_fails_every_waiter_and_stops_the_sequencer(tmp_path: Path) -> None:
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path))
    task = await _run(sequencer)
    await sequencer.submit(_open(1))
    sequencer.journal.close()  # The next append fails like a dead disk would.
    waiting = [asyncio.create_task(sequencer.submit(_open(index))) for index in range(2, 5)]
    for waiter in waiting:
        with pytest.raises(SequencerStopped, match="outcome is unknown"):
            await waiter
    with pytest.raises(Exception, match="closed"):
        await task
    with pytest.raises(Unavailable):
        await sequencer.submit(_open(9))


async def test_a_callback_hears_its_outcome_once_durable_and_a_broken_one_costs_no_other(
    tmp_path: Path,
) -> None:
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path))
    heard: list[tuple[int, int]] = []  # (outcome seq, journal's last durable seq) when told.

    def on_outcome(outcome: Outcome | BaseException) -> None:
        assert isinstance(outcome, Outcome)
        heard.append((outcome.seq, sequencer.journal.last_seq))

    def broken(_: Outcome | BaseException) -> None:
        raise RuntimeError("a sender's bug")

    task = await _run(sequencer)
    for index in range(6):
        sequencer.enqueue_call(_open(index), broken if index == 2 else on_outcome)
    last = await sequencer.submit(_open(6))
    assert [seq for seq, _ in heard] == [1, 2, 4, 5, 6]
    assert all(durable >= seq for seq, durable in heard)
    assert last.seq == 7  # The broken callback stopped nothing.
    await _stop(sequencer, task)


async def test_a_crash_tells_every_queued_callback_the_outcome_is_unknown(tmp_path: Path) -> None:
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path))
    told: list[Outcome | BaseException] = []
    task = await _run(sequencer)
    await sequencer.submit(_open(0))
    sequencer.journal.close()  # The next append fails like a dead disk would.
    for index in range(1, 4):
        sequencer.enqueue_call(_open(index), told.append)
    with pytest.raises(Exception, match="closed"):
        await task
    assert len(told) == 3
    assert all(isinstance(error, SequencerStopped) for error in told)


async def test_a_periodic_snapshot_is_written_off_the_loop_and_recovers_the_same_state(
    tmp_path: Path,
) -> None:
    # Every 50 records a forked child writes the state of that moment; the sequencer does not
    # wait for it, and learns it succeeded when it reaps the child.
    journal = FileJournal.open(tmp_path)
    sequencer = Sequencer(Exchange(), journal, snapshot_every_records=50)
    task = await _run(sequencer)
    for index in range(60):
        await sequencer.submit(_open(index))
    hash_at_60 = sequencer.exchange.state_hash()
    deadline = asyncio.get_running_loop().time() + 10.0
    while sequencer.snapshots_written == 0:  # Reaped when idle (each tick interval).
        assert asyncio.get_running_loop().time() < deadline, "no snapshot within 10 s"
        await asyncio.sleep(0.05)
    snapshot = journal.latest_snapshot()
    assert snapshot is not None and 50 <= snapshot.seq <= 60
    assert Exchange.from_snapshot(snapshot.state).state_hash() == snapshot.state_hash
    for index in range(60, 70):  # The exchange carried on meanwhile, and goes on.
        await sequencer.submit(_open(index))
    assert sequencer.exchange.state_hash() != hash_at_60
    final_hash = sequencer.exchange.state_hash()
    await _stop(sequencer, task)
    recovered, journal_again, recovery = recover(tmp_path)
    try:
        assert recovered.state_hash() == final_hash
        assert recovery.snapshot_seq == 70  # The shutdown snapshot, written in process.
    finally:
        journal_again.close()


async def test_after_a_crash_recovery_starts_from_the_forked_snapshot(tmp_path: Path) -> None:
    journal = FileJournal.open(tmp_path)
    sequencer = Sequencer(Exchange(), journal, snapshot_every_records=50)
    task = await _run(sequencer)
    for index in range(60):
        await sequencer.submit(_open(index))
    deadline = asyncio.get_running_loop().time() + 10.0
    while sequencer.snapshots_written == 0:
        assert asyncio.get_running_loop().time() < deadline, "no snapshot within 10 s"
        await asyncio.sleep(0.05)
    final_hash = sequencer.exchange.state_hash()
    task.cancel()  # As if the process died: no shutdown snapshot.
    with pytest.raises(asyncio.CancelledError):
        await task
    journal.close()
    recovered, journal_again, recovery = recover(tmp_path)
    try:
        assert 50 <= recovery.snapshot_seq <= 60
        assert recovery.replayed_records == 60 - recovery.snapshot_seq
        assert recovered.state_hash() == final_hash
    finally:
        journal_again.close()


async def test_a_snapshot_writer_that_overruns_is_killed_and_a_later_one_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A writer that hangs must not stop snapshots for good, nor hang the shutdown.
    monkeypatch.setattr(sequencer_module, "SNAPSHOT_WRITER_MAX_S", 0.5)
    parent, marker = os.getpid(), tmp_path / "hung-once"
    encode = Exchange.snapshot

    def hangs_the_first_time(exchange: Exchange) -> bytes:
        if os.getpid() != parent and not marker.exists():  # Only in the first child.
            marker.touch()
            time.sleep(60)
        return encode(exchange)

    monkeypatch.setattr(Exchange, "snapshot", hangs_the_first_time)
    journal = FileJournal.open(tmp_path / "data")
    sequencer = Sequencer(Exchange(), journal, snapshot_every_records=20)
    task = await _run(sequencer)
    deadline = asyncio.get_running_loop().time() + 15.0
    index = 0
    while sequencer.snapshots_written == 0:  # The first writer hangs, is killed; then one writes.
        assert asyncio.get_running_loop().time() < deadline, "no snapshot within 15 s"
        await sequencer.submit(_open(index))
        index += 1
        await asyncio.sleep(0.02)
    assert marker.exists()
    snapshot = journal.latest_snapshot()
    assert snapshot is not None and snapshot.seq > 20
    await _stop(sequencer, task)


async def test_the_forked_snapshot_writer_runs_only_when_a_core_would_be_idle() -> None:
    # It only shortens recovery: at normal priority it took CPU from the event loop for as long
    # as it ran. Checked in a child process, as the writer is one.
    if not hasattr(os, "SCHED_IDLE"):
        pytest.skip("no SCHED_IDLE on this platform")
    code = (
        "import os; from gateway.sequencer import _yield_cpu_to_others; "
        "_yield_cpu_to_others(); print(os.sched_getscheduler(0) == os.SCHED_IDLE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "True"


@pytest.mark.parametrize("kind", ["older-version", "damaged"])
async def test_a_snapshot_this_code_cannot_read_is_skipped_for_a_full_replay(
    tmp_path: Path, kind: str
) -> None:
    # A snapshot only shortens recovery: one written by another version of the state (or one
    # whose bytes are not a state at all) must not keep the exchange from starting.
    exchange = Exchange()
    journal = FileJournal.open(tmp_path)
    for index in range(5):
        journal.append_bodies([exchange.handle(_open(index), 1_000 + index).record])
    state = exchange.snapshot()
    if kind == "older-version":
        row = msgspec.msgpack.decode(state)
        row[0] = SNAPSHOT_VERSION - 1
        state = msgspec.msgpack.encode(row)
    else:
        state = b"\x93not a state"
    journal.write_snapshot(5, exchange.state_hash(), state)
    journal.close()
    recovered, journal_again, recovery = recover(tmp_path)
    try:
        assert (recovery.snapshot_seq, recovery.replayed_records) == (0, 5)
        assert recovered.state_hash() == exchange.state_hash()
    finally:
        journal_again.close()


async def test_the_restart_ends_the_last_runs_sessions_before_any_timer_fires(
    tmp_path: Path,
) -> None:
    # The auction ended while the exchange was down: the restart cancels alice's bid at the
    # time of the last record, so the uncross after it has nothing to trade.
    auction_end = stopped_in_an_auction(tmp_path, rulebook.START_TS_NS)
    exchange, journal, _ = recover(tmp_path)
    try:
        assert sequencer_module.end_stale_sessions(exchange, journal) == 1
        assert exchange.state.last_ts_ns < auction_end  # No time passed: no timer fired.
        assert exchange.state.accounts["alice"].open_orders == {}
        uncross = exchange.handle(Tick(SEQUENCER_ACTOR), auction_end + 1)
        assert not [event for event in uncross.events if isinstance(event, TradeExecuted)]
        assert sequencer_module.end_stale_sessions(exchange, journal) == 0
    finally:
        journal.close()
    again, journal, _ = recover(tmp_path)  # The ends were journaled.
    journal.close()
    assert again.state.sessions == {} and again.state.accounts["alice"].open_orders == {}


async def test_a_snapshot_writer_that_cannot_be_forked_stops_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ENOMEM under strict overcommit, EAGAIN at a process limit: a snapshot only shortens
    # recovery, so the exchange goes on, and tries again an interval later, not every batch.
    forks = []

    def no_fork() -> int:
        forks.append(1)
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path), snapshot_every_records=20)
    task = await _run(sequencer)
    for index in range(65):
        await sequencer.submit(_open(index))  # Each one durable: the exchange runs on.
    assert sequencer.running and sequencer.exchange.seq == 65
    assert len(forks) == 3  # At 20, 40 and 60.
    await _stop(sequencer, task)


async def test_a_snapshot_writer_that_keeps_failing_is_tried_once_an_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parent = os.getpid()
    encode = Exchange.snapshot

    def fails_in_the_writer(exchange: Exchange) -> bytes:
        if os.getpid() != parent:
            raise OSError(28, "No space left on device")
        return encode(exchange)

    monkeypatch.setattr(Exchange, "snapshot", fails_in_the_writer)
    forks = []
    fork = os.fork

    def counted_fork() -> int:
        forks.append(1)
        return fork()

    monkeypatch.setattr(os, "fork", counted_fork)
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path), snapshot_every_records=20)
    task = await _run(sequencer)
    for index in range(100):
        await sequencer.submit(_open(index))
        await asyncio.sleep(0.005)  # Room for the writer to fail and be reaped.
    assert sequencer.running and sequencer.snapshots_written == 0
    assert len(forks) <= 100 // 20 + 1, f"{len(forks)} writers forked for 100 records"
    await _stop(sequencer, task)


async def test_a_sigkill_during_a_snapshot_leaves_the_journal_and_port_free_at_once(
    tmp_path: Path,
) -> None:
    # The writer dies with its parent, and held neither the journal's LOCK nor the listening
    # socket: the restart opens both at once, instead of when an orphaned writer ends.
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.slow_snapshot_server", str(tmp_path), "30"],
        cwd=root, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), 30.0)
        _, writer, port = line.split()
    finally:
        server.kill()
        server.wait(timeout=10)
    deadline = time.monotonic() + 2.0
    while Path(f"/proc/{writer}").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{writer}/stat").read_text().split()[2] == "Z":
            break
        await asyncio.sleep(0.02)
    FileJournal.open(tmp_path).close()  # Not "open in another writer".
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(port)))  # Not "address already in use".


async def test_a_restart_from_a_snapshot_with_nothing_due_writes_nothing(tmp_path: Path) -> None:
    # The next timer is derived, not in the snapshot: restored as 0 it said a timer was due,
    # and every restart journaled a Tick.
    clock = FrozenClock(1_800_000_000_000_000_000)
    sequencer = Sequencer(Exchange(), FileJournal.open(tmp_path), clock=clock)
    task = await _run(sequencer)
    await sequencer.submit(_open(1))
    await _stop(sequencer, task)  # Writes the shutdown snapshot.
    exchange, journal, recovery = recover(tmp_path)
    assert recovery.snapshot_seq == 1 and recovery.replayed_records == 0
    again = Sequencer(exchange, journal, clock=clock, tick_interval_s=0.01)
    task = await _run(again)
    await asyncio.sleep(0.1)
    assert again.exchange.seq == 1, "an idle restart journaled a record"
    await _stop(again, task)
