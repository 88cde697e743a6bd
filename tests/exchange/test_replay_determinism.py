"""Replaying the journal reproduces the exchange bit for bit, in any process, any hash seed.

A seeded random session of a few thousand commands (the world and the command spaces of
test_core_state_machine.py, drawn with random.Random; every command checked as in the state
machine) is journaled with FileJournal in group-commit batches of random size, over several
segments. Then:
- three fresh processes with PYTHONHASHSEED=0, 1 and random replay the journal from genesis
  (tests/exchange/replay_worker.py): each command gives back its record exactly, and all three
  print the same state_hash, events digest and head hash as the session itself;
- the same replay in this process gives the same state_hash; stopping it one record short of
  a trade gives another (the hash does see the state);
- ledger.verify.verify_records passes on the journal: chain, balances, conservation, and its
  deposits and issuance are those the session made.

And replay is a check, not only a rebuild: a record is refused (ReplayMismatch naming its seq)
unless handling its command writes it exactly: its kind, its command bytes (canonical) and its
postings.

Replay: IPX_SEED=<seed> .venv/bin/pytest tests/exchange/test_replay_determinism.py -s
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from exchange.commands import command_decoder
from exchange.core import Exchange, Outcome, ReplayMismatch
from exchange.events import TradeExecuted
from ledger.file_store import FileJournal
from ledger.records import GENESIS_HASH, Record, RecordBody, seal
from ledger.verify import verify_records
from matching.orders import Side
from tests.exchange.replay_worker import events_digest
from tests.exchange.rulebook import HOUR, ISSUER, Market
from tests.exchange.test_core_state_machine import (
    AFTERS_NS,
    AMOUNTS,
    ANY_ACCOUNT,
    AUCTION_DURATIONS_NS,
    CANCEL_KINDS,
    CONTROL_ACTORS,
    CONTROLS,
    CURRENCIES,
    EXPIRIES_S,
    FAR_PER_MILLE,
    GHOST,
    JUMPS_NS,
    LOTS,
    MALFORMED,
    NEAR_PER_MILLE,
    NEXT_DAY,
    ODD_LOTS,
    OFFERING_UNITS_LOTS,
    OPERATOR,
    PAYERS,
    PERIODS,
    SESSION_ACTIONS,
    SESSION_NAMES,
    SESSIONS,
    SHAPES,
    STP_MODES,
    SYMBOLS,
    TAKER_TIFS,
    TRADERS,
    WITHDRAWALS,
    Driver,
    open_world,
)

SEED = (
    int(os.environ["IPX_SEED"])
    if os.environ.get("IPX_SEED")
    else random.SystemRandom().randrange(1 << 32)
)
SESSION_COMMANDS = 5_000
BATCH_MAX = 64  # Commands per group commit.
SEGMENT_BYTES_MAX = 128 << 10  # Small segments: the replay crosses several.
REPO_ROOT = Path(__file__).resolve().parents[2]
HASH_SEEDS = ("0", "1", "random")
WORKER_TIMEOUT_S = 120


# The seeded session.


def _symbol(rng: random.Random) -> str:
    # The continuous instrument most, the one that gets delisted least.
    return rng.choices(SYMBOLS, (5, 3, 2))[0]


def _per_mille(rng: random.Random) -> int:
    return rng.randint(*(NEAR_PER_MILLE if rng.random() < 0.8 else FAR_PER_MILLE))


def _lots(rng: random.Random) -> int:
    return rng.randint(*LOTS) if rng.random() < 0.9 else rng.choice(ODD_LOTS)


def _place(driver: Driver, rng: random.Random) -> None:
    driver.place(
        rng.choice((*TRADERS, *TRADERS, OPERATOR, GHOST)),
        _symbol(rng),
        rng.choice((Side.BUY, Side.SELL)),
        rng.choice(SHAPES),
        _per_mille(rng),
        _lots(rng),
        rng.choice(STP_MODES),
        rng.choice(EXPIRIES_S),
        rng.choice(MALFORMED),
        rng.choice(AFTERS_NS),
        rng.choice(SESSIONS),
    )


def _session(driver: Driver, rng: random.Random) -> None:
    account = rng.choice((*TRADERS, GHOST))
    driver.session(account, rng.choice(SESSION_NAMES), rng.choice(SESSION_ACTIONS), 1)


def _take(driver: Driver, rng: random.Random) -> None:
    driver.take(
        rng.choice(TRADERS),
        _symbol(rng),
        rng.choice((Side.BUY, Side.SELL)),
        rng.randint(0, 3),
        rng.randint(*LOTS),
        rng.choice(TAKER_TIFS),
        rng.choice(STP_MODES),
        rng.choice(AFTERS_NS),
    )


def _quote(driver: Driver, rng: random.Random) -> None:
    driver.quote(rng.choice(TRADERS), _symbol(rng), rng.randint(0, 8), rng.randint(*LOTS), 1)


def _resend(driver: Driver, rng: random.Random) -> None:
    driver.resend(rng.randrange(1 << 16), rng.random() < 0.3, rng.choice(AFTERS_NS))


def _cancel(driver: Driver, rng: random.Random) -> None:
    kind = "own" if rng.random() < 0.6 else rng.choice(CANCEL_KINDS)
    driver.cancel(rng.choice(TRADERS), kind, rng.randrange(1 << 16), rng.choice(AFTERS_NS))


def _amend(driver: Driver, rng: random.Random) -> None:
    driver.amend(
        rng.choice(TRADERS),
        rng.randrange(1 << 16),
        _per_mille(rng),
        rng.randint(-4, 6),
        rng.choice(AFTERS_NS),
    )


def _move_cash(driver: Driver, rng: random.Random) -> None:
    account, currency = rng.choice(ANY_ACCOUNT), rng.choice(CURRENCIES)
    if rng.random() < 0.5:
        driver.withdraw(account, currency, rng.choice(WITHDRAWALS), rng.choice(AFTERS_NS))
    else:
        driver.deposit(account, currency, rng.choice(AMOUNTS), rng.choice(AFTERS_NS))


def _cancel_all_or_kill(driver: Driver, rng: random.Random) -> None:
    account = rng.choice(ANY_ACCOUNT)
    if rng.random() < 0.5:
        actor = rng.choice((account, account, OPERATOR, rng.choice(TRADERS)))
        driver.cancel_all(actor, account, rng.choice(("", *SYMBOLS)), 1)
    else:
        # Released more often than engaged, so that the session keeps trading.
        account = rng.choice(TRADERS)
        driver.kill_switch(rng.choice(CONTROL_ACTORS), account, rng.random() < 0.2, 1)


def _distribute(driver: Driver, rng: random.Random) -> None:
    driver.distribute(
        rng.choice(SYMBOLS), rng.choice(AMOUNTS), rng.choice(PAYERS), rng.choice(PERIODS), 1
    )


def _control(driver: Driver, rng: random.Random) -> None:
    # Resumes outnumber halts and closes, so that the session keeps trading.
    driver.control(
        rng.choices(CONTROLS, (1, 4, 2, 1))[0],
        rng.choice(CONTROL_ACTORS),
        rng.choice(SYMBOLS),
        rng.choice(AUCTION_DURATIONS_NS),
        1,
    )


def _offering(driver: Driver, rng: random.Random) -> None:
    driver.offering(
        rng.choice(SYMBOLS),
        rng.choice(OFFERING_UNITS_LOTS),
        _per_mille(rng),
        rng.choice((30, 120, 0)),
        rng.random() < 0.5,
        1,
    )


def _tick(driver: Driver, rng: random.Random) -> None:
    # Mostly short jumps: a session spans a few trading days, not weeks.
    driver.tick(rng.choices(JUMPS_NS, JUMP_WEIGHTS)[0])


# Mostly short jumps: an hour now and then, the next day rarely, so that a session spans a
# few trading days (and the third patent expires during it, for most seeds).
JUMP_WEIGHTS = tuple({HOUR: 1.0, NEXT_DAY: 0.3}.get(jump, 3.0) for jump in JUMPS_NS)
STEPS: tuple[tuple[Callable[[Driver, random.Random], None], int], ...] = (
    (_place, 30),
    (_take, 20),
    (_quote, 5),
    (_resend, 3),
    (_session, 6),
    (_cancel, 12),
    (_amend, 6),
    (_move_cash, 4),
    (_cancel_all_or_kill, 2),
    (_distribute, 2),
    (_control, 3),
    (_offering, 1),
    (_tick, 10),
)


def random_session(seed: int, commands: int, driver: Driver | None = None) -> Driver:
    """Open the world and send at least `commands` seeded random commands, checking each."""
    rng = random.Random(seed)
    driver = Driver() if driver is None else driver
    open_world(driver.market, all_or_none=rng.random() < 0.3)
    steps = [step for step, _ in STEPS]
    weights = [weight for _, weight in STEPS]
    while driver.market.commands < commands:
        rng.choices(steps, weights)[0](driver, rng)
    return driver


class Journaled:
    """Journals a session as a sequencer does: group commits of random size."""

    def __init__(
        self,
        journal: FileJournal,
        exchange: Exchange,
        rng: random.Random,
        after_commit: Callable[[FileJournal, Exchange], None] | None,
    ) -> None:
        self.journal = journal
        self.exchange = exchange
        self.rng = rng
        self.after_commit = after_commit  # Called after each commit, e.g. to snapshot.
        self.pending: list[RecordBody] = []
        self.batch = rng.randint(1, BATCH_MAX)
        self.events = hashlib.sha256()
        self.last_trade_seq = 0

    def __call__(self, outcome: Outcome) -> None:
        self.pending.append(outcome.record)
        events_digest(self.events, outcome.events)
        if any(isinstance(event, TradeExecuted) for event in outcome.events):
            self.last_trade_seq = outcome.seq
        if len(self.pending) >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.journal.append_bodies(self.pending)
            self.pending = []
            self.batch = self.rng.randint(1, BATCH_MAX)
            if self.after_commit is not None:
                self.after_commit(self.journal, self.exchange)


def journaled_session(
    directory: Path,
    seed: int,
    commands: int,
    after_commit: Callable[[FileJournal, Exchange], None] | None = None,
) -> tuple[Driver, Journaled]:
    """Run a random session, journaling every record; return it and its journaler (closed)."""
    driver = Driver()
    with FileJournal.open(directory, segment_bytes_max=SEGMENT_BYTES_MAX) as journal:
        if after_commit is not None:
            after_commit(journal, driver.exchange)  # Genesis: seq 0.
        journaled = Journaled(journal, driver.exchange, random.Random(seed + 1), after_commit)
        driver.market.on_outcome = journaled
        random_session(seed, commands, driver)
        journaled.flush()
        assert journal.last_seq == driver.exchange.seq
    return driver, journaled


def run_workers(
    directory: Path, *options: str, hash_seeds: tuple[str, ...] = HASH_SEEDS
) -> dict[str, str]:
    """Run replay_worker in one fresh process per PYTHONHASHSEED; return each one's line."""
    processes = {}
    for hash_seed in hash_seeds:
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        processes[hash_seed] = subprocess.Popen(
            [sys.executable, "-m", "tests.exchange.replay_worker", str(directory), *options],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    lines = {}
    for hash_seed, process in processes.items():
        out, err = process.communicate(timeout=WORKER_TIMEOUT_S)
        assert process.returncode == 0, f"worker PYTHONHASHSEED={hash_seed} failed: {err}"
        lines[hash_seed] = out.strip()
    return lines


def test_replaying_the_journal_gives_the_same_state_in_any_process(tmp_path: Path) -> None:
    started = time.monotonic()
    print(f"replay determinism: IPX_SEED={SEED}")
    driver, journaled = journaled_session(tmp_path, SEED, SESSION_COMMANDS)
    exchange = driver.exchange
    market = driver.market
    records_count = exchange.seq
    session_s = time.monotonic() - started
    with FileJournal.open(tmp_path) as journal:
        head = journal.last_hash
        segments = journal.recovery.segments
        records = list(journal.records())
    expected = (
        f"records={records_count} from_seq=1 state_hash={exchange.state_hash().hex()} "
        f"events_hash={journaled.events.hexdigest()} head_hash={head.hex()}"
    )
    workers_started = time.monotonic()
    lines = run_workers(tmp_path)
    workers_s = time.monotonic() - workers_started
    for hash_seed, line in lines.items():
        assert line == expected, f"PYTHONHASHSEED={hash_seed} replayed to\n{line}\nnot\n{expected}"

    fresh = Exchange()
    assert fresh.replay(records) == records_count
    assert fresh.state_hash() == exchange.state_hash()
    short = Exchange()
    short.replay(records[: journaled.last_trade_seq - 1])
    assert short.state_hash() != exchange.state_hash(), "the state hash missed a trade"

    report = verify_records(records)
    assert report.records == records_count and report.head_hash == head
    assert report.state_hash == exchange.balances.state_hash()
    assert report.net_deposits == {
        asset: total for asset, total in sorted(market.outside.items()) if asset in ("EUR", "USD")
    }
    assert report.issued_units == {symbol: 100_000 for symbol in sorted(SYMBOLS)}
    print(
        f"replay determinism: {records_count} records in {segments} segments, "
        f"{market.trades} trades; state_hash {exchange.state_hash().hex()[:16]}... equal in "
        f"this process and under PYTHONHASHSEED={','.join(HASH_SEEDS)}; session {session_s:.1f} s, "
        f"3 workers {workers_s:.1f} s, total {time.monotonic() - started:.1f} s (IPX_SEED={SEED})"
    )


def sealed(bodies: list[RecordBody]) -> list[Record]:
    records, previous = [], GENESIS_HASH
    for body in bodies:
        records.append(seal(previous, body))
        previous = records[-1].hash
    return records


def traded_market() -> tuple[Market, int]:
    """A short real session ending in a trade; return it and the seq of the trade."""
    market = Market().trading()
    market.sell(ISSUER, 100, 1_000)
    return market, market.buy("alice", 40, 1_000).seq


def refused_at(bodies: list[RecordBody], seq: int, words: str) -> None:
    with pytest.raises(ReplayMismatch, match=words) as refused:
        Exchange().replay(sealed(bodies))
    assert refused.value.seq == seq


def test_replay_refuses_a_record_whose_kind_is_not_its_commands() -> None:
    # ledger.verify lets value cross the boundary by kind alone: the kind must be the command's.
    market, trade_seq = traded_market()
    bodies = list(market.records)
    bodies[trade_seq - 1] = msgspec.structs.replace(bodies[trade_seq - 1], kind="deposit")
    refused_at(bodies, trade_seq, "its kind is deposit but its command is PlaceOrder")


def test_replay_refuses_postings_its_command_does_not_make() -> None:
    market, trade_seq = traded_market()
    bodies = list(market.records)
    trade = bodies[trade_seq - 1]
    first = trade.postings[0]
    more = msgspec.structs.replace(first, amount=first.amount + 1)
    bodies[trade_seq - 1] = msgspec.structs.replace(trade, postings=(more, *trade.postings[1:]))
    refused_at(bodies, trade_seq, f"posting 1 is {first.amount + 1} .*, its command makes")
    bodies[trade_seq - 1] = msgspec.structs.replace(trade, postings=trade.postings[:-1])
    refused_at(bodies, trade_seq, f"it holds {len(trade.postings) - 1} postings")


def test_replay_refuses_command_bytes_that_are_not_a_command_or_not_canonical() -> None:
    market, trade_seq = traded_market()
    bodies = list(market.records)
    trade = bodies[trade_seq - 1]
    garbled = msgspec.structs.replace(trade, command=b"place_order")
    refused_at([*bodies[: trade_seq - 1], garbled], trade_seq, "do not decode to a command")
    # The same command with its array header in the 3-byte form msgpack also allows: it
    # decodes to the same command, but the hash and the receipts cover the bytes.
    assert trade.command[0] & 0xF0 == 0x90, "a command is a msgpack fixarray"
    length = trade.command[0] & 0x0F
    wide = b"\xdc" + length.to_bytes(2, "big") + trade.command[1:]
    assert command_decoder.decode(wide) == command_decoder.decode(trade.command)
    bodies[trade_seq - 1] = msgspec.structs.replace(trade, command=wide)
    refused_at(bodies, trade_seq, "not the canonical encoding")
