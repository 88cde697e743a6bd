"""Crashes lose no acknowledged record: kill -9 of a real writer, and simulated power loss.

1. A writer process (tests/ledger/journal_writer.py) appends batches and prints the last seq
   of each batch once append() returned. It is killed with SIGKILL at random moments, 50 times
   or more; after each kill the journal is reopened here: every acknowledged record is present
   and is the record that was written, the chain verifies, and the next writer carries on.
2. Power loss, simulated in process: a crash image keeps what was fsynced, plus a random
   prefix of the one batch that was written but not yet synced (sometimes followed by zeros:
   the space the journal writes ahead of its frames, or a file that grew where the data never
   landed; sometimes a new segment whose directory entry never landed). Recovery must always
   give a valid prefix of the journal that holds every acknowledged record, and the writer
   must be able to carry on.

Replay: IPX_SEED=<seed> .venv/bin/pytest -s tests/ledger/test_crash.py
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.file_store import FileJournal
from ledger.frames import skip_frames
from ledger.records import GENESIS_HASH
from tests.ledger.journal_writer import body_for

SEED = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))
ROOT = Path(__file__).resolve().parents[2]
KILLS = 60
KILLS_PER_JOURNAL = 10
KILLS_MIN = 50
KILL_SECONDS_MAX = 40.0
KILL_DELAY_SECONDS_MAX = 0.08
WRITER_SEGMENT_BYTES = 64 << 10
POWER_LOSS_TRIALS = 1000
POWER_LOSS_BATCHES = 150
POWER_LOSS_SEGMENT_BYTES = 16 << 10


# --- kill -9 ------------------------------------------------------------------------------


def _start_writer(directory: Path, seed: int) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.ledger.journal_writer",
            str(directory),
            str(seed),
            "--segment-bytes",
            str(WRITER_SEGMENT_BYTES),
            "--batches-max",
            "100000",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline().split()
    assert ready and ready[0] == "ready", f"writer did not start: {ready}"
    return process, int(ready[1])


def _kill(process: subprocess.Popen[str]) -> int:
    # Every "ack" line printed before the kill names a seq that must survive it.
    process.send_signal(signal.SIGKILL)
    assert process.stdout is not None
    output = process.stdout.read()
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    acks = [int(line.split()[1]) for line in output.splitlines() if line.startswith("ack ")]
    return max(acks, default=0)


@dataclass
class KillFigures:
    kills: int = 0
    acknowledged: int = 0
    recovered: int = 0
    lost: int = 0
    torn_tails: int = 0
    carried_on: int = 0
    segments: int = 0


def _kill_and_recover(
    directory: Path, kills: int, rng: random.Random, figures: KillFigures
) -> None:
    """Kill a writer on this journal `kills` times; check it after each kill."""
    acknowledged = checked = 0
    for _ in range(kills):
        process, recovered_by_writer = _start_writer(directory, rng.randrange(1 << 32))
        assert recovered_by_writer >= acknowledged  # The writer itself found them all.
        time.sleep(rng.uniform(0, KILL_DELAY_SECONDS_MAX))
        acked_now = _kill(process)
        figures.kills += 1
        figures.carried_on += acked_now > acknowledged  # It appended after a recovery.
        acknowledged = max(acknowledged, acked_now)
        with FileJournal.open(directory, segment_bytes_max=WRITER_SEGMENT_BYTES) as journal:
            # open() validated every frame, seq and link; now check what was written.
            figures.lost += max(0, acknowledged - journal.last_seq)
            figures.torn_tails += journal.recovery.torn_bytes_truncated > 0
            for record in journal.records(from_seq=checked + 1):
                assert record.body() == body_for(record.seq), f"seq {record.seq} differs"
            checked = journal.last_seq
            assert journal.last_seq >= acknowledged, (
                f"kill {figures.kills}: acknowledged seq {acknowledged}, "
                f"recovered {journal.last_seq}"
            )
    with FileJournal.open(directory, segment_bytes_max=WRITER_SEGMENT_BYTES) as journal:
        last = journal.last_seq
        journal.append_bodies([body_for(seq) for seq in range(last + 1, last + 11)])
        assert [r.seq for r in journal.records()] == list(range(1, last + 11))
    figures.acknowledged += acknowledged
    figures.recovered += last
    figures.segments += len(list((directory / "journal").glob("*.seg")))


@pytest.mark.slow
def test_kill_9_at_random_moments_loses_no_acknowledged_record(tmp_path: Path) -> None:
    print(f"\nIPX_SEED={SEED}")
    rng = random.Random(SEED)
    figures = KillFigures()
    started = time.monotonic()
    # A fresh journal every few kills keeps each reopen short, whatever the disk's speed.
    for journal_index in range(KILLS // KILLS_PER_JOURNAL):
        if time.monotonic() - started > KILL_SECONDS_MAX:
            break
        _kill_and_recover(tmp_path / f"journal-{journal_index}", KILLS_PER_JOURNAL, rng, figures)
    elapsed = time.monotonic() - started
    print(
        f"kill -9: {figures.kills} kills in {elapsed:.1f} s, {figures.acknowledged:,} records "
        f"acknowledged, {figures.recovered:,} recovered, {figures.lost} lost, "
        f"{figures.torn_tails} torn tails cut, {figures.carried_on} writers appended after a "
        f"recovery, {figures.segments} segments"
    )
    assert figures.kills >= KILLS_MIN, f"only {figures.kills} kills fit in {KILL_SECONDS_MAX} s"
    assert figures.lost == 0


# --- Simulated power loss -----------------------------------------------------------------


@dataclass
class History:
    """A journal written batch by batch, and what was durable after each batch."""

    final: dict[str, bytes]  # Segment name -> its bytes at the end.
    durable: list[dict[str, int]]  # After batch b (0: none yet): segment name -> synced frames.
    acknowledged: list[int]  # After batch b: the last acknowledged seq.
    hashes: list[bytes]  # hashes[seq]: the hash of record seq (hashes[0]: GENESIS_HASH).
    frame_ends: dict[str, dict[int, int]]  # Segment name -> {end offset of a frame: its seq}.


def _write_history(directory: Path, rng: random.Random) -> History:
    durable: list[dict[str, int]] = []
    acknowledged = [0]
    hashes = [GENESIS_HASH]
    journal_dir = directory / "journal"
    with FileJournal.open(directory, segment_bytes_max=POWER_LOSS_SEGMENT_BYTES) as journal:
        durable.append(journal.segment_sizes())
        for _ in range(POWER_LOSS_BATCHES):
            first = journal.last_seq + 1
            size = rng.randint(1, 20)
            records = journal.append_bodies([body_for(s) for s in range(first, first + size)])
            hashes += [r.hash for r in records]
            acknowledged.append(journal.last_seq)
            durable.append(journal.segment_sizes())
    final = {p.name: p.read_bytes() for p in journal_dir.glob("*.seg")}  # Closed: frames only.
    frame_ends: dict[str, dict[int, int]] = {}
    for name, data in final.items():
        seq, offset, ends = int(name[:20]), 0, {}
        while offset < len(data):
            offset = skip_frames(data, offset, 1)
            ends[offset] = seq
            seq += 1
        frame_ends[name] = ends
    return History(final, durable, acknowledged, hashes, frame_ends)


def _crash_image(history: History, batch: int, rng: random.Random) -> tuple[dict[str, bytes], str]:
    """Return the segment files after power loss while batch+1 was written, and how."""
    synced, next_state = history.durable[batch], history.durable[batch + 1]
    image = {name: history.final[name][:size] for name, size in synced.items()}
    (grown,) = [name for name, size in next_state.items() if synced.get(name) != size]
    if grown not in synced and rng.random() < 0.25:
        return image, "new segment lost"
    unsynced = history.final[grown][synced.get(grown, 0) : next_state[grown]]
    roll = rng.random()
    kept = 0 if roll < 0.1 else len(unsynced) if roll < 0.2 else rng.randrange(len(unsynced))
    torn = unsynced[:kept]
    how = "prefix"
    if rng.random() < 0.25:
        torn += bytes(rng.randint(1, 4096))  # The size grew; the data never landed.
        how = "prefix + zeros"
    image[grown] = image.get(grown, b"") + torn
    return image, how


def _materialize(image: dict[str, bytes], history: History, base: Path, root: Path) -> str:
    # Complete segments are hard links to the written journal; the last is a fresh copy,
    # since recovery may cut it and the writer appends to it.
    (root / "journal").mkdir(parents=True)
    (root / "snapshots").mkdir()
    last = max(image)
    for name, data in image.items():
        path = root / "journal" / name
        if name != last and len(data) == len(history.final[name]):
            os.link(base / "journal" / name, path)
        else:
            path.write_bytes(data)
    return last


@pytest.mark.slow
def test_power_loss_recovers_a_valid_prefix_with_every_acknowledged_record() -> None:
    print(f"\nIPX_SEED={SEED}")
    rng = random.Random(SEED ^ 0x9031)
    # tmpfs: the crash images are built here, so the files' own fsyncs model nothing.
    scratch = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    started = time.perf_counter()
    try:
        history = _write_history(scratch / "written", rng)
        figures: Counter[str] = Counter()
        for trial in range(POWER_LOSS_TRIALS):
            batch = rng.randrange(POWER_LOSS_BATCHES)
            image, how = _crash_image(history, batch, rng)
            root = scratch / f"trial-{trial}"
            last = _materialize(image, history, scratch / "written", root)
            figures[how] += 1
            _recover_and_check(root, history, batch, last, image, figures, writer=trial % 10 == 0)
    finally:
        shutil.rmtree(scratch)
    elapsed = time.perf_counter() - started
    print(
        f"power loss: {POWER_LOSS_TRIALS} trials in {elapsed:.1f} s; images {dict(figures)}; "
        f"records lost: {figures['records lost']}"
    )
    assert figures["records lost"] == 0


def _recover_and_check(
    root: Path,
    history: History,
    batch: int,
    last: str,
    image: dict[str, bytes],
    figures: Counter[str],
    *,
    writer: bool,
) -> None:
    acknowledged, ceiling = history.acknowledged[batch], history.acknowledged[batch + 1]
    with FileJournal.open(root, segment_bytes_max=POWER_LOSS_SEGMENT_BYTES) as journal:
        recovered = journal.last_seq
        figures["records lost"] += max(0, acknowledged - recovered)
        assert acknowledged <= recovered <= ceiling
        # The chain verified on open, so an equal head hash means an equal prefix.
        assert journal.last_hash == history.hashes[recovered]
        size = journal.segment_sizes()[last]
        if size:
            assert history.frame_ends[last][size] == recovered  # Ends at a frame boundary.
        else:
            assert recovered == int(last[:20]) - 1
        # After the frames: zeros only are space written ahead, kept; anything else is torn.
        after = image[last][size:]
        torn = len(after) if any(after) else 0
        assert journal.recovery.torn_bytes_truncated == torn
        assert (root / "journal" / last).stat().st_size == len(image[last]) - torn
        figures["torn tails cut"] += torn > 0
        figures["zeros kept as space"] += bool(after) and not torn
        figures["unacknowledged records kept"] += recovered - acknowledged
        if writer:
            journal.append_bodies([body_for(s) for s in range(recovered + 1, recovered + 4)])
    if writer:
        with FileJournal.open(root) as journal:
            assert journal.recovery.torn_bytes_truncated == 0
            assert journal.last_seq == recovered + 3
            figures["writer carried on"] += 1
