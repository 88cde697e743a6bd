"""The single writer: one asyncio task that times, handles, journals and releases every command.

Invariants:
- Every state-changing command goes through one bounded queue to this one task; nothing else
  calls `Exchange.handle` while it runs. ts_ns = max(now, previous ts_ns + 1): strictly
  increasing, so replaying the journal sees the same times in the same order. The one
  exception is the first batch of a restart (end_stale_sessions): the last run's sessions
  end at the time of its last record, so that no timer fires before their cancels.
- Exchange time keeps pace with real time even when the wall clock does not: now = max(wall
  clock, previous ts_ns + the monotonic time elapsed since it was stamped). After the wall
  clock steps back by D (an NTP step, a VM restore, a restart on a host whose clock is behind
  the journal), max(wall, previous + 1) alone would crawl 1 ns per command for D of real
  time: no auction would end, no GTD order expire, no day roll. The idle Tick check uses the
  same now. A wall clock found behind is logged once (WARNING, by how much) until it catches
  up.
- Durable before visible: a batch (everything queued, up to BATCH_MAX commands) is handled,
  its record bodies are sealed and appended with ONE fsync (FileJournal.append_sealed), and
  only then is each command's sender told (its future resolved, or its callback called) and
  the outcomes handed to subscribers.
- A full queue refuses at once (Overloaded): the command was not handled, the caller may retry.
- A crash inside `handle` or the journal is not a rejection: the sequencer stops, every waiting
  sender gets the error (the outcome is unknown to its sender), and the process must restart,
  which recovers from the journal.

Why the fsync runs on the event loop rather than in asyncio.to_thread: measured on this
machine, an fsync of a batch costs 0.2-0.4 ms (a 1,000-record batch, ~200 KB, about 0.4 ms).
Blocking the loop that long is cheaper than a thread hop, and it keeps "handle, fsync,
release" atomic with respect to every other coroutine: a query served by a connection
handler (order.status, book.snapshot, balances) can never see the effects of a command that
is not yet on disk. Frames that arrive meanwhile wait in the kernel and join the next batch.

Snapshots: every SNAPSHOT_EVERY_RECORDS records a forked child writes one (copy-on-write: the
state as of that batch, while the parent serves on); the one at shutdown is written in
process. A snapshot only bounds recovery time: losing one costs nothing but a longer replay.
So nothing about one stops the exchange: a fork that fails, a writer that fails (the next try
comes SNAPSHOT_EVERY_RECORDS records later, not at the next batch), or one that overruns. The
writer keeps nothing of its parent's but stdin, stdout and stderr, and dies with it: an
orphaned writer holding the journal's LOCK (flock is shared across fork) and the listening
socket would refuse the restart after a SIGKILL, and take its connections, until it ended.

The queue is a deque and one waiter future, not an asyncio.Queue read with asyncio.wait_for:
that made a task, a future and a timer per batch and a queue operation per command, and the
gateway's answers take a callback (enqueue_call) rather than a future per command. Woken by
the first command, the task lets the loop make two more passes before it takes the batch, so
the frames read meanwhile join it: the group commit's batch size, and so the fsyncs per
command, follow from this (one pass fewer gave 0.92 x the orders/s and a worse open-loop p99,
one more a worse p99 again; BENCHMARKS.md, "Gateway").

Timers: when no command has arrived for TICK_INTERVAL_S and a timer of the core is due
(Exchange.timer_due(now): an auction end, a GTD expiry, a day roll), a Tick is handled so the
timer fires without waiting for a client. An idle exchange with nothing due writes nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import functools
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from exchange.commands import Command, EndSession, Tick
from exchange.core import Exchange, Outcome
from exchange.state import SEQUENCER_ACTOR
from ledger.file_store import FileJournal
from ledger.frames import seal_batch

QUEUE_MAX = 10_000
BATCH_MAX = 1_000
TICK_INTERVAL_S = 0.1
SNAPSHOT_EVERY_RECORDS = 100_000  # A snapshot bounds recovery time; also one at shutdown.
SNAPSHOT_WRITER_MAX_S = 120  # A forked snapshot writer running longer is killed.
# The wall clock behind exchange time by more than this is logged (once until it catches up):
# below it, it is only the jitter between reading the wall clock and the monotonic one.
CLOCK_BEHIND_LOGGED_NS = 100_000_000

log = logging.getLogger("ipx.sequencer")

Subscriber = Callable[[Sequence[Outcome], Sequence[Any]], None]
Observer = Callable[[Outcome], Iterable[Any]]
# Told a command's outcome once it is durable, or the SequencerStopped that left it unknown.
OnOutcome = Callable[[Outcome | BaseException], None]


def _settle(future: asyncio.Future[Outcome], result: Outcome | BaseException) -> None:
    if future.done():  # The sender gave up waiting (cancelled).
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _ignore(_: Outcome | BaseException) -> None:
    pass


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a child gets when its parent dies.


def _detach_from_parent(parent_pid: int) -> None:
    # In the forked snapshot writer, first thing: die with the parent, and close every
    # descriptor it inherited but stdin, stdout and stderr (the journal's LOCK, the listening
    # socket, the connections, the event loop's own). It writes by path.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # The parent died before prctl took effect.
        os._exit(1)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))


def _yield_cpu_to_others() -> None:
    # The snapshot writer only bounds recovery time, so it runs when a core would otherwise be
    # idle: with it competing at normal priority, the event loop (and a load driver on a small
    # machine) lost CPU for the ~0.5 s it ran, on top of the copy-on-write faults the fork
    # costs the parent, and answers stalled 5-13 ms at a time (bench/gateway_bench.py).
    if hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
    with contextlib.suppress(OSError):
        os.nice(19)


class SequencerError(Exception):
    """Root of the sequencer's errors.

    SequencerError
    +-- Overloaded        the queue is full: the command was not handled; retry later
    +-- Unavailable       not accepting commands (shutting down): the command was not handled
    +-- SequencerStopped  it crashed with the command in flight: the outcome is unknown
    """


class Overloaded(SequencerError):
    """The command queue is full; nothing was done."""


class Unavailable(SequencerError):
    """The sequencer is shutting down or has stopped; nothing was done."""


class SequencerStopped(SequencerError):
    """The sequencer is not running; a command in flight may or may not be journaled."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """How the exchange was rebuilt at start."""

    snapshot_seq: int  # 0 without a snapshot.
    replayed_records: int
    last_seq: int
    torn_bytes_truncated: int
    seconds: float
    # Gateway sessions of the last run, ended at the start (end_stale_sessions).
    sessions_ended: int = 0


def recover(data_dir: str | os.PathLike[str]) -> tuple[Exchange, FileJournal, Recovery]:
    """Open the journal under data_dir and rebuild the exchange: latest snapshot + tail replay.

    Raises:
        ledger.errors.JournalError: another process holds the journal, or it is damaged.
        exchange.core.ReplayMismatch: a record does not replay to its postings.
    """
    started = time.perf_counter()
    journal = FileJournal.open(data_dir)
    torn = journal.recovery
    if torn.torn_bytes_truncated:
        # Normal after a power loss mid-append (nothing in it was acknowledged), but it cannot
        # be told from the last append damaged since (ledger/frames.py): an operator who knows
        # a higher seq was acknowledged must know it is gone.
        log.warning(
            "journal: cut a torn tail of %d bytes at seq %d in %s: %s",
            torn.torn_bytes_truncated,
            torn.torn_seq,
            torn.torn_path,
            torn.torn_reason,
        )
    try:
        exchange, snapshot_seq = Exchange(), 0
        snapshot = journal.latest_snapshot()
        if snapshot is not None:
            try:
                restored = Exchange.from_snapshot(snapshot.state)
            except (msgspec.DecodeError, ValueError) as error:  # Another version's, or damaged.
                log.warning("snapshot %d cannot be read (%s): full replay", snapshot.seq, error)
            else:
                if restored.state_hash() == snapshot.state_hash:
                    exchange, snapshot_seq = restored, snapshot.seq
                else:
                    log.warning(
                        "snapshot %d does not match its state hash: full replay", snapshot.seq
                    )
        replayed = exchange.replay(journal.records(snapshot_seq + 1))
    except BaseException:
        journal.close()
        raise
    recovery = Recovery(
        snapshot_seq,
        replayed,
        exchange.seq,
        torn.torn_bytes_truncated,
        time.perf_counter() - started,
    )
    return exchange, journal, recovery


def stale_session_ends(exchange: Exchange) -> list[EndSession]:
    """An EndSession for every gateway session the recovered state still holds.

    Every session of the last run ended with it, so their cancel-on-disconnect is due
    (exchange/disconnect.py). They are to be handled first, before any client's command, and
    at the time of the last record, so that no timer fires first: an auction that ended while
    the server was down must uncross without the orders whose sessions asked for them to be
    canceled (Sequencer.end_stale_sessions; end_stale_sessions for a stopped exchange).
    """
    return [
        EndSession(session.account, session_id)
        for session_id, session in exchange.state.sessions.items()
    ]


def end_stale_sessions(exchange: Exchange, journal: FileJournal) -> int:
    """On a stopped exchange: handle and journal stale_session_ends (one fsync); return how many.

    Raises:
        ledger.errors.JournalError: the batch could not be made durable.
    """
    ends = stale_session_ends(exchange)
    ts_ns = exchange.state.last_ts_ns
    journal.append_bodies([exchange.handle(end, ts_ns).record for end in ends])
    return len(ends)


class Sequencer:
    """Owns the exchange and its journal; `submit` is the only way in."""

    def __init__(
        self,
        exchange: Exchange,
        journal: FileJournal,
        *,
        queue_max: int = QUEUE_MAX,
        batch_max: int = BATCH_MAX,
        tick_interval_s: float = TICK_INTERVAL_S,
        clock: Callable[[], int] = time.time_ns,
        monotonic_clock: Callable[[], int] = time.monotonic_ns,
        snapshot_every_records: int = SNAPSHOT_EVERY_RECORDS,
    ) -> None:
        self.exchange = exchange
        self.journal = journal
        self._queue: collections.deque[tuple[Command, OnOutcome]] = collections.deque()
        self._queue_max = queue_max
        self._waiter: asyncio.Future[None] | None = None  # While run() waits for commands.
        self._batch_max = batch_max
        self._tick_interval_s = tick_interval_s
        self._clock = clock
        self._monotonic_clock = monotonic_clock
        self._last_ts_ns = exchange.state.last_ts_ns
        # The monotonic clock when _last_ts_ns was stamped (for a recovered exchange: now).
        self._last_monotonic_ns = monotonic_clock()
        self._clock_behind_logged = False
        self._subscribers: list[Subscriber] = []
        self._observers: list[Observer] = []
        self._accepting = True
        self._stopping = False
        self._failure: BaseException | None = None
        self._snapshot_seq = exchange.seq
        self._snapshot_tried_seq = 0  # The seq of the last writer that failed.
        self._snapshot_every = snapshot_every_records
        # (pid, seq, monotonic start) of the forked snapshot writer, while it runs.
        self._snapshot_child: tuple[int, int, float] | None = None
        self.snapshots_written = 0
        # Why the shutdown snapshot (close) was not written, if it was not: the journal is
        # complete all the same, but the next start replays more of it (`ipx serve` says so).
        self.shutdown_snapshot_error: Exception | None = None
        self.batches = 0
        self.records = 0
        # Told how long each batch's journal append (write + fsync) took, in seconds.
        self.on_journal_append: Callable[[float], None] | None = None

    @property
    def running(self) -> bool:
        return self._accepting and self._failure is None

    @property
    def failed(self) -> bool:
        """True once a batch failed: memory may then hold effects the journal does not."""
        return self._failure is not None

    @property
    def queue_depth(self) -> int:
        """Commands waiting for the sequencer."""
        return len(self._queue)

    def now_ns(self) -> int:
        """Return the time the sequencer stamps commands with (before the +1 ns rule)."""
        return self._now_ns()[0]

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call subscriber(outcomes, messages) with each durable batch, in seq order.

        `messages` are what the observers returned for the batch's commands, in order.
        """
        self._subscribers.append(subscriber)

    def observe(self, observer: Observer) -> None:
        """Call observer right after each command is handled, before the batch's fsync.

        For work that needs the state exactly as that command left it (e.g. diffing a book
        for market data). What it returns is held back and handed to the subscribers only
        once the batch is durable. It must be quick and must not raise.
        """
        self._observers.append(observer)

    async def submit(self, command: Command) -> Outcome:
        """Queue a command and wait until it is handled and on disk.

        Raises:
            Overloaded: the queue is full (nothing was done).
            Unavailable: not running (nothing was done).
            SequencerStopped: it crashed with this command in flight.
        """
        return await self.enqueue(command)

    def enqueue(self, command: Command) -> asyncio.Future[Outcome]:
        """Queue a command; return the future of its outcome, resolved once it is on disk.

        Raises as submit() does; the future's exception is SequencerStopped.
        """
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.enqueue_call(command, functools.partial(_settle, future))
        return future

    def enqueue_call(self, command: Command, on_outcome: OnOutcome) -> None:
        """Queue a command; call on_outcome(outcome) once it is on disk, in the sequencer.

        on_outcome gets a SequencerStopped instead if the sequencer crashed with the command in
        flight. It runs inside the batch's release, before the subscribers: it must be quick
        and must not raise (what it raises is logged). Raises as submit() does.
        """
        if not self.running:
            raise Unavailable("the exchange is not accepting commands: nothing was done")
        queue = self._queue
        if len(queue) >= self._queue_max:
            raise Overloaded(
                f"the exchange is overloaded ({self._queue_max} commands queued): "
                "nothing was done, retry after a short wait"
            )
        queue.append((command, on_outcome))
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self) -> None:
        """Serve the queue until stop(); raise what crashed it, after failing its waiters."""
        queue = self._queue
        try:
            while True:
                if not queue:
                    if self._stopping:
                        return
                    await self._commands_or_tick()
                    if not queue:
                        self._reap_snapshot()
                        self._tick_if_due()
                        continue
                # Two more passes of the loop before the batch, so the socket is read at least
                # once more: frames that arrived with the first command's join it, and one
                # fsync covers more commands (a command can be queued from a socket's read
                # callback, in the pass that wakes this task).
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                take = min(len(queue), self._batch_max)
                self._process([queue.popleft() for _ in range(take)])
        except BaseException as exc:
            self._fail(exc)
            raise

    async def _commands_or_tick(self) -> None:
        # Wakes at the next enqueue, at stop(), or after the tick interval, whichever is first.
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(self._tick_interval_s, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def stop(self) -> None:
        """Refuse new commands, let run() drain what is queued, snapshot, close the journal."""
        self._accepting = False
        self._stopping = True
        if self._waiter is not None:
            _wake(self._waiter)

    def close(self) -> None:
        """Write a final snapshot (if anything changed) and release the journal."""
        self._reap_snapshot(wait=True)
        if self._failure is None and self.exchange.seq > self._snapshot_seq:
            self.shutdown_snapshot_error = self._write_snapshot()
        self.journal.close()

    def _tick_if_due(self) -> None:
        if self._failure is None and self.exchange.timer_due(self._now_ns()[0]):
            self._process([(Tick(SEQUENCER_ACTOR), _ignore)])

    def _now_ns(self) -> tuple[int, int]:
        # (exchange time now, the monotonic clock's reading it was derived from): the wall
        # clock, unless it is behind the last stamp plus the real time elapsed since.
        wall_ns = self._clock()
        monotonic_ns = self._monotonic_clock()
        carried_ns = self._last_ts_ns + (monotonic_ns - self._last_monotonic_ns)
        if wall_ns >= carried_ns:
            self._clock_behind_logged = False
            return wall_ns, monotonic_ns
        if not self._clock_behind_logged and carried_ns - wall_ns > CLOCK_BEHIND_LOGGED_NS:
            self._clock_behind_logged = True
            log.warning(
                "the wall clock is %.3f s behind exchange time (stepped back, or behind the "
                "journal): exchange time goes on by the monotonic clock until it catches up",
                (carried_ns - wall_ns) / 1e9,
            )
        return carried_ns, monotonic_ns

    def end_stale_sessions(self) -> int:
        """Handle stale_session_ends as the first batch, at the last record's time; return how
        many. Called once, before run() and before anyone is served: its outcomes reach the
        observers and subscribers (market data, publishers) like any batch's.

        Raises:
            ledger.errors.JournalError: the batch could not be made durable.
        """
        ends = stale_session_ends(self.exchange)
        if ends:
            self._process([(end, _ignore) for end in ends], self.exchange.state.last_ts_ns)
        return len(ends)

    def _process(self, batch: list[tuple[Command, OnOutcome]], at_ts_ns: int = 0) -> None:
        # Handle, then one fsync, then release: no await in between (see the module docstring).
        exchange = self.exchange
        outcomes: list[Outcome] = []
        messages: list[Any] = []
        observers = self._observers
        try:
            for command, _ in batch:
                if at_ts_ns:
                    ts_ns, monotonic_ns = at_ts_ns, self._monotonic_clock()
                else:
                    now_ns, monotonic_ns = self._now_ns()
                    ts_ns = max(now_ns, self._last_ts_ns + 1)
                self._last_ts_ns = ts_ns
                self._last_monotonic_ns = monotonic_ns
                outcome = exchange.handle(command, ts_ns)
                outcomes.append(outcome)
                for observer in observers:
                    messages.extend(observer(outcome))
            started = time.perf_counter()
            journal = self.journal
            # Sealed here, without the Record objects append_bodies would return and nothing
            # here reads; append_sealed checks the batch continues the journal.
            journal.append_sealed(
                seal_batch(journal.last_hash, [outcome.record for outcome in outcomes])
            )
            if self.on_journal_append is not None:
                self.on_journal_append(time.perf_counter() - started)
        except BaseException as exc:
            _tell(batch, SequencerStopped(f"the exchange stopped: {exc!r}; the outcome is unknown"))
            raise
        self.batches += 1
        self.records += len(outcomes)
        for (_, on_outcome), outcome in zip(batch, outcomes, strict=True):
            try:
                on_outcome(outcome)
            except Exception:  # One sender's broken callback must not cost the others.
                log.exception("outcome callback failed at seq %d", outcome.seq)
        for subscriber in self._subscribers:
            try:
                subscriber(outcomes, messages)
            except Exception:  # A broken subscriber must not stop the exchange.
                log.exception("subscriber failed")
        try:
            self._reap_snapshot()
            # After a failed try, the next waits as long as after a written snapshot.
            last = max(self._snapshot_seq, self._snapshot_tried_seq)
            if exchange.seq - last >= self._snapshot_every and self._snapshot_child is None:
                self._start_snapshot()  # One writer at a time.
        except Exception:  # A snapshot only shortens recovery: the exchange carries on.
            self._snapshot_tried_seq = exchange.seq
            log.exception("snapshot writer at seq %d not started or not reaped", exchange.seq)

    def _store_snapshot(self, seq: int) -> None:
        exchange = self.exchange
        self.journal.write_snapshot(seq, exchange.state_hash(), exchange.snapshot())

    def _write_snapshot(self) -> Exception | None:
        # Return why the snapshot was not written, or None.
        exchange = self.exchange
        try:
            self._store_snapshot(exchange.seq)
            self._snapshot_seq = exchange.seq
            self.snapshots_written += 1
        except Exception as error:  # The journal carries on; the next snapshot will try again.
            log.exception("snapshot at seq %d not written", exchange.seq)
            return error
        return None

    def _start_snapshot(self) -> None:
        # A periodic snapshot encodes and hashes the whole state (every order of the day):
        # 0.3-0.6 s at 100,000 records, during which no frame was read or answered. A forked
        # child does it on a copy-on-write image of this moment instead, as Redis's BGSAVE
        # does; the parent carries on at once and learns the result when it reaps the child.
        if not hasattr(os, "fork"):
            self._write_snapshot()
            return
        seq = self.exchange.seq
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # The child: write the snapshot, never return into the event loop.
            code = 1
            try:
                _detach_from_parent(parent)
                _yield_cpu_to_others()
                self._store_snapshot(seq)
                code = 0
            except BaseException as exc:
                os.write(2, f"ipx: snapshot at seq {seq} not written: {exc!r}\n".encode())
            finally:
                os._exit(code)
        self._snapshot_child = (pid, seq, time.monotonic())

    def _reap_snapshot(self, wait: bool = False) -> None:
        # Learn how the forked writer ended. One that outlives SNAPSHOT_WRITER_MAX_S is killed
        # (a snapshot only shortens recovery), so neither snapshots nor a shutdown that waits
        # for it (wait=True) can hang on it.
        if self._snapshot_child is None:
            return
        pid, seq, started = self._snapshot_child
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() - started > SNAPSHOT_WRITER_MAX_S:
                log.error(
                    "snapshot writer at seq %d overran %d s: killed", seq, SNAPSHOT_WRITER_MAX_S
                )
                os.kill(pid, signal.SIGKILL)
                _, status = os.waitpid(pid, 0)
                break
            if not wait:
                return
            time.sleep(0.01)  # Only at shutdown.
        self._snapshot_child = None
        if os.waitstatus_to_exitcode(status) == 0:
            self._snapshot_seq = max(self._snapshot_seq, seq)
            self.snapshots_written += 1
        else:  # The journal carries on; a new try comes an interval later.
            self._snapshot_tried_seq = max(self._snapshot_tried_seq, seq)
            log.error("snapshot at seq %d not written (writer exit status %d)", seq, status)

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        self._accepting = False
        if not isinstance(exc, asyncio.CancelledError):
            log.error("sequencer stopped: %r", exc)
        queued = list(self._queue)
        self._queue.clear()
        _tell(queued, SequencerStopped(f"the exchange stopped: {exc!r}; the outcome is unknown"))
        with contextlib.suppress(Exception):
            self.journal.close()


def _tell(senders: Iterable[tuple[Command, OnOutcome]], error: SequencerStopped) -> None:
    for _, on_outcome in senders:
        try:
            on_outcome(error)
        except Exception:
            log.exception("outcome callback failed on %r", error)
