"""A snapshot plus the journal's tail rebuilds exactly the exchange that the full journal does.

- A seeded random session (test_replay_determinism.py) is journaled in group commits, with
  snapshots (Exchange.snapshot() and its state_hash, through FileJournal.write_snapshot) at
  genesis, at random seqs between batches and at the end. Reopened, the latest snapshot
  restores to its recorded state_hash and, with the tail replayed (every record giving back
  its postings), to the state_hash and balances of the full replay from genesis; so does a
  fresh process under another PYTHONHASHSEED (tests/exchange/replay_worker.py). Then the
  latest snapshot is damaged (a flipped byte, a cut), again and again: each time the journal
  falls back to the previous one, names the damaged one, and the result is still the same.
- Restoring `Exchange.from_snapshot(x.snapshot())` at many points of random sessions gives x's
  state_hash and snapshot bytes, and the restored exchange then answers every following
  command exactly as x does: the same reply, events, record and postings.
- Across a day roll too: yesterday's finished orders, kept for resends and status queries
  for one more trading day, come back with the snapshot, and a resend to the restored
  exchange gets the first outcome as the original's does.

Replay: IPX_SEED=<seed> .venv/bin/pytest tests/exchange/test_snapshot_replay.py -s
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

from exchange.calendar import NS_PER_DAY, parse_date
from exchange.commands import Tick, command_decoder
from exchange.core import Exchange, Outcome
from exchange.events import Phase
from exchange.state import SEQUENCER_ACTOR
from ledger.file_store import FileJournal
from ledger.frames import FRAME_PAYLOAD_BYTES_MAX
from ledger.records import GENESIS_HASH, encode_record, seal
from tests.exchange.replay_worker import replay
from tests.exchange.rulebook import (
    BUY,
    FOK,
    IOC,
    ISSUER,
    SECOND,
    SELL,
    Market,
    issuance,
    listing,
)
from tests.exchange.test_core_state_machine import Driver
from tests.exchange.test_replay_determinism import (
    journaled_session,
    random_session,
    run_workers,
)

SEED = (
    int(os.environ["IPX_SEED"])
    if os.environ.get("IPX_SEED")
    else random.SystemRandom().randrange(1 << 32)
)
SESSION_COMMANDS = 4_000
SNAPSHOTS_BETWEEN = 5  # Snapshots at random seqs, besides genesis and the end.
MIRROR_SESSIONS = 6
MIRROR_COMMANDS = 2_000
MIRROR_RESTART_EVERY = 150  # Commands between two restores of the mirror.


class Snapshotter:
    """Writes a snapshot after the first commit at or past each target seq."""

    def __init__(self, targets: list[int]) -> None:
        self.targets = sorted(targets)
        self.seqs: list[int] = []

    def __call__(self, journal: FileJournal, exchange: Exchange) -> None:
        if self.seqs and not (self.targets and journal.last_seq >= self.targets[0]):
            return
        while self.targets and journal.last_seq >= self.targets[0]:
            self.targets.pop(0)
        assert exchange.seq == journal.last_seq
        journal.write_snapshot(journal.last_seq, exchange.state_hash(), exchange.snapshot())
        self.seqs.append(journal.last_seq)


def _damage(path: Path, how: int) -> None:
    data = bytearray(path.read_bytes())
    if how % 2:
        path.write_bytes(bytes(data[: len(data) // 2]))  # Cut short.
    else:
        data[len(data) // 2] ^= 0x40  # One flipped bit in the state.
        path.write_bytes(bytes(data))


def test_a_snapshot_plus_the_tail_equals_the_full_replay(tmp_path: Path) -> None:
    started = time.monotonic()
    print(f"snapshot + tail: IPX_SEED={SEED}")
    rng = random.Random(SEED)
    snapshotter = Snapshotter(
        [rng.randrange(100, SESSION_COMMANDS) for _ in range(SNAPSHOTS_BETWEEN)]
    )
    driver, _ = journaled_session(tmp_path, SEED, SESSION_COMMANDS, snapshotter)
    # Other processes, under other hash seeds, restore the latest snapshot taken mid-journal and
    # replay the tail after it: the live state.
    live_hash = driver.exchange.state_hash().hex()
    mid = max(snapshotter.seqs)
    tail = driver.exchange.seq - mid
    assert tail > 0, "the last snapshot was taken at the end: no tail to replay"
    for hash_seed in ("0", "random"):  # One at a time: each opens (and locks) the journal.
        line = run_workers(tmp_path, "--from-snapshot", hash_seeds=(hash_seed,))[hash_seed]
        expected = f"records={tail} from_seq={mid + 1} state_hash={live_hash} "
        assert expected in line, (hash_seed, line)
    with FileJournal.open(tmp_path) as journal:
        journal.write_snapshot(
            journal.last_seq, driver.exchange.state_hash(), driver.exchange.snapshot()
        )
        snapshotter.seqs.append(journal.last_seq)
        full = Exchange()
        assert full.replay(journal.records()) == journal.last_seq
        assert full.state_hash() == driver.exchange.state_hash()
        full_hash = full.state_hash()
        # Another process, another hash seed, restores the latest snapshot to the same state.
        latest = journal.latest_snapshot()
        assert latest is not None and latest.seq == journal.last_seq
    line = run_workers(tmp_path, "--from-snapshot", hash_seeds=("random",))["random"]
    assert f"records=0 from_seq=0 state_hash={full_hash.hex()} " in line, line

    snapshot_dir = tmp_path / "snapshots"
    remaining = sorted(set(snapshotter.seqs), reverse=True)
    checked = []
    with FileJournal.open(tmp_path) as journal:
        for damaged, seq in enumerate(remaining):
            snapshot = journal.latest_snapshot()
            assert snapshot is not None and snapshot.seq == seq, (snapshot, seq)
            assert [path for path, _ in journal.skipped_snapshots] == [
                str(snapshot_dir / f"{skipped:020d}.snap") for skipped in remaining[:damaged]
            ]
            restored = Exchange.from_snapshot(snapshot.state)
            assert restored.seq == seq
            assert restored.state_hash() == snapshot.state_hash, f"snapshot {seq} restores badly"
            count, _, _, _ = replay(restored, journal.records(seq + 1))
            assert count == journal.last_seq - seq
            assert restored.state_hash() == full_hash, f"snapshot {seq} + tail differs"
            assert list(restored.balances.entries()) == list(full.balances.entries())
            checked.append(seq)
            _damage(snapshot_dir / f"{seq:020d}.snap", damaged)
        assert journal.latest_snapshot() is None
        assert len(journal.skipped_snapshots) == len(remaining)
    assert checked[-1] == 0 and len(checked) >= 3, checked
    print(
        f"snapshot + tail: {journal.last_seq} records; snapshots at seqs {sorted(checked)} "
        f"each restored + tail == full replay {full_hash.hex()[:16]}... (and in a fresh "
        f"process for the latest), each found after damaging the newer ones; "
        f"{time.monotonic() - started:.1f} s (IPX_SEED={SEED})"
    )


class Mirror:
    """Follows an exchange from a snapshot of it, command by command, comparing outcomes."""

    def __init__(self, original: Exchange, restart_every: int) -> None:
        self.original = original
        self.restart_every = restart_every
        self.mirror: Exchange | None = None
        self.since_restart = 0
        self.restores = 0
        self.compared = 0

    def __call__(self, outcome: Outcome) -> None:
        if self.mirror is not None:
            command = command_decoder.decode(outcome.record.command)
            mirrored = self.mirror.handle(command, outcome.ts_ns)
            assert mirrored == outcome, f"restored exchange differs at seq {outcome.seq}"
            self.compared += 1
        self.since_restart += 1
        if self.since_restart >= self.restart_every:
            self.restart()

    def restart(self) -> None:
        original = self.original
        if self.mirror is not None:
            assert self.mirror.state_hash() == original.state_hash(), "the mirror drifted"
            assert self.mirror.snapshot() == original.snapshot()
        data = original.snapshot()
        self.mirror = Exchange.from_snapshot(data)
        assert self.mirror.state_hash() == original.state_hash(), (
            f"snapshot at seq {original.seq} restores another state"
        )
        assert self.mirror.snapshot() == data, "a restored snapshot encodes differently"
        self.since_restart = 0
        self.restores += 1


def test_a_restored_exchange_answers_every_command_as_the_original() -> None:
    started = time.monotonic()
    print(f"snapshot mirror: IPX_SEED={SEED}")
    restores = compared = 0
    for session in range(MIRROR_SESSIONS):
        seed = SEED + 1_000 + session
        rng = random.Random(seed)
        driver = Driver()
        # Restores land at a different phase of each session.
        mirror = Mirror(driver.exchange, MIRROR_RESTART_EVERY + rng.randrange(50))
        driver.market.on_outcome = mirror
        random_session(seed, MIRROR_COMMANDS, driver)
        mirror.restart()  # Compares the final states.
        restores += mirror.restores
        compared += mirror.compared
    print(
        f"snapshot mirror: {MIRROR_SESSIONS} sessions, {restores} restores, {compared} "
        f"commands answered identically by the restored exchange; "
        f"{time.monotonic() - started:.1f} s (IPX_SEED={SEED})"
    )


def test_a_snapshot_after_the_day_roll_keeps_yesterdays_orders_for_resends() -> None:
    market = Market().trading()
    market.rest(ISSUER, SELL, 1_000, 1_000)
    midnight = (market.ts_ns // NS_PER_DAY + 1) * NS_PER_DAY
    market.tick_to(midnight - SECOND)
    traded = market.order("alice", BUY, 100, 1_000, cl="traded", tif=IOC)
    refused = market.order("bob", BUY, 901, 1_000, cl="refused", tif=FOK)  # 900 offered.
    resting = market.order("alice", BUY, 10, 990, cl="resting")
    first = [market.do(command).reply for command in (traded, refused, resting)]
    market.tick_to(midnight + SECOND)  # The roll: two of them finished yesterday.
    original = market.exchange
    restored = Exchange.from_snapshot(original.snapshot())
    assert restored.state_hash() == original.state_hash()
    assert restored.snapshot() == original.snapshot()
    state = restored.state
    assert state.finished_order(first[0].order_id) is not None  # type: ignore[union-attr]
    assert state.rejected_order(first[1].order_id) == ("bob", "refused")  # type: ignore[union-attr]
    ts_ns = market.ts_ns
    for command, reply in zip((traded, refused, resting), first, strict=True):
        ts_ns += SECOND
        again, mirrored = original.handle(command, ts_ns), restored.handle(command, ts_ns)
        assert again.reply == reply and mirrored == again
    assert restored.state_hash() == original.state_hash()


def test_a_delisting_of_a_book_too_large_for_a_frame_is_journaled_and_replays(
    tmp_path: Path,
) -> None:
    # The patent's expiry cancels every resting order in the one record of the command that
    # fires the timer: 120,000 of them (two accounts, each under its open-order limit) make a
    # record of ~19 MB, over a frame. It must be written, or the exchange could never go on
    # (after a restart the same timer would make the same record again).
    market = Market()
    market.accounts()
    market.do(listing(expiry_date="2030-01-16"))
    market.do(issuance())
    market.open_trading()
    accounts = ["a" * 63 + "1", "a" * 63 + "2"]
    for account in accounts:
        market.open_account(account, cash=10**15)
    exchange, ts_ns = market.exchange, market.ts_ns
    records = list(market.records)
    for index in range(120_000):
        ts_ns += 1
        command = market.order(accounts[index % 2], BUY, 1, 900 + index % 100)
        records.append(exchange.handle(command, ts_ns).record)
    delisting = exchange.handle(Tick(SEQUENCER_ACTOR), parse_date("2030-01-16")).record
    assert market.instrument().phase is Phase.DELISTED and not exchange.state.orders
    assert len(encode_record(seal(GENESIS_HASH, delisting))) > FRAME_PAYLOAD_BYTES_MAX
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies(records)
        journal.append_bodies([delisting])
    with FileJournal.open(tmp_path) as journal:
        replayed = Exchange()
        replayed.replay(journal.records())
    assert replayed.seq == delisting.seq
    assert replayed.state_hash() == exchange.state_hash()
