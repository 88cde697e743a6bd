"""Every mutation of a 100,000-record journal is caught, at exactly the first bad seq.

Kinds of mutation, at least 1,000 trials each, at uniformly random places:
  flip        XOR one byte with a random nonzero value
  delete      remove one whole frame (its CRC still valid: a re-framing attack)
  swap        exchange two adjacent frames
  insert      add a CRC-valid frame that does not belong: a copy of another frame, or a record
              of the right seq forged onto another chain
  duplicate   repeat a frame right after itself
  truncate    cut the journal at a byte strictly inside a frame
  zero        zero one 512-byte sector
The journal is written as the sequencer writes it: appends (group commits) of 1 to 64 records.
Expected: validation stops at the first frame that differs from the original, naming its seq
and its offset; a cut (or zeros) that reaches the end of the last segment is a torn tail; a
flipped byte or a zeroed sector inside the last append may read as either (it cannot be told
from an append that never finished: ledger/frames.py); everything else is damage. Clean
journals raise no alarm.

Trials run in memory through ledger.frames.SegmentReader, the validator FileJournal.open()
uses. A trial starts the reader at a frame boundary a few frames before the mutation with the
chain state the clean journal has there: the bytes before that point are untouched, so the
reader's state there is the same as after reading them. A subset runs on real segment files
through FileJournal.open(), from the first byte.

Not detectable from the files alone, by design (see ledger/frames.py): dropping whole frames
at the very end of the journal leaves a shorter valid journal. That needs an acknowledged seq
or a signed checkpoint to catch, and the last test here pins that fact down.

Replay: IPX_SEED=<seed> .venv/bin/pytest -s tests/ledger/test_mutations.py
"""

from __future__ import annotations

import bisect
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.errors import JournalCorrupt
from ledger.file_store import FileJournal, read_journal
from ledger.frames import (
    FRAME_FOLLOWS,
    FRAME_HEADER,
    SegmentReader,
    encode_frame,
    seal_batch,
    seal_frames,
    skip_frames,
)
from ledger.records import GENESIS_HASH, Bucket, Posting, RecordBody, seal

SEED = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))
RECORDS = 100_000
TRIALS_PER_KIND = int(os.environ.get("IPX_MUTATION_TRIALS", "1000"))
FILE_TRIALS_PER_KIND = 2
CLEAN_JOURNALS = 300
KINDS = ("flip", "delete", "swap", "insert", "duplicate", "truncate", "zero")
SECTOR_BYTES = 512
APPEND_RECORDS_MAX = 64
CHECKPOINT_FRAMES_BEFORE = 3


def small_body(seq: int) -> RecordBody:
    posting = Posting("USD", seq % 9973 + 1, f"a{seq % 97}", Bucket.AVAILABLE, "b", Bucket.HELD)
    return RecordBody(
        seq, 1_700_000_000_000_000_000 + seq, "deposit", seq.to_bytes(8, "little"), (posting,)
    )


@dataclass
class Journal:
    """Frames of consecutive records, with where each starts and the chain hash before it."""

    data: bytes
    offsets: list[int]  # len(frames) + 1 entries; the last is len(data).
    hashes: list[bytes]  # len(offsets) entries: hashes[i] is the chain hash before frame i.
    first_seq: int
    last_append: int  # The frame position where the last append starts.

    @property
    def frames(self) -> int:
        return len(self.offsets) - 1

    def frame(self, index: int) -> bytes:
        return self.data[self.offsets[index] : self.offsets[index + 1]]


def journal_of(data: bytes, first_seq: int, prev_hash: bytes) -> Journal:
    offsets, offset = [0], 0
    hashes = [prev_hash]
    last_append = 0
    reader = SegmentReader(data, next_seq=first_seq, prev_hash=prev_hash, last=True)
    for index, record in enumerate(reader):
        if not FRAME_HEADER.unpack_from(data, offset)[0] & FRAME_FOLLOWS:
            last_append = index
        offset = skip_frames(data, offset, 1)
        offsets.append(offset)
        hashes.append(record.hash)
    assert reader.damage is None and offset == len(data)
    return Journal(data, offsets, hashes, first_seq, last_append)


def appended(rng: random.Random, first_seq: int, count: int, prev_hash: bytes) -> bytes:
    """The frames of records first_seq.. written by appends of 1 to APPEND_RECORDS_MAX."""
    parts = []
    seq = first_seq
    while seq < first_seq + count:
        size = min(rng.randint(1, APPEND_RECORDS_MAX), first_seq + count - seq)
        batch = seal_batch(prev_hash, [small_body(s) for s in range(seq, seq + size)])
        parts.append(batch.data)
        prev_hash = batch.last_hash
        seq += size
    return b"".join(parts)


@dataclass
class Mutation:
    kind: str
    apply: Callable[[bytearray], None]
    undo: Callable[[bytearray], None]
    bad_index: int  # Frame position of the first bad seq.
    torn: bool | None  # Expected torn-tail verdict; None: either is right (see flip).


def plan(kind: str, rng: random.Random, journal: Journal, *, last: bool) -> Mutation:
    """Choose a random mutation of this kind and what validation must report for it."""
    data, offsets, n = journal.data, journal.offsets, journal.frames
    if kind == "flip":
        position, mask = rng.randrange(len(data)), rng.randrange(1, 256)
        index = bisect.bisect_right(offsets, position) - 1

        def flip(buffer: bytearray) -> None:
            buffer[position] ^= mask

        # A flip inside the last append of the last segment may read as a torn write (a
        # payload, CRC or flag byte) or as damage (a length that no longer fits): both name
        # the seq.
        return Mutation(
            kind, flip, flip, index, None if last and index >= journal.last_append else False
        )
    if kind == "delete":
        index = rng.randrange(n - 1)
        start, stop = offsets[index], offsets[index + 1]
        removed = data[start:stop]

        def delete(buffer: bytearray) -> None:
            del buffer[start:stop]

        def restore(buffer: bytearray) -> None:
            buffer[start:start] = removed

        return Mutation(kind, delete, restore, index, False)
    if kind == "swap":
        index = rng.randrange(n - 1)
        start, middle, stop = offsets[index], offsets[index + 1], offsets[index + 2]
        swapped = data[middle:stop] + data[start:middle]
        return Mutation(kind, _put(start, swapped), _put(start, data[start:stop]), index, False)
    if kind == "insert":
        index = rng.randrange(n + 1)
        if rng.random() < 0.5:
            other = rng.randrange(n)
            while other == index:  # A copy of the frame that belongs here would be no change.
                other = rng.randrange(n)
            extra = journal.frame(other)
        else:
            body = small_body(journal.first_seq + index)
            extra = encode_frame(seal(rng.randbytes(32), body))
        return _insertion(kind, offsets[index], extra, index)
    if kind == "duplicate":
        index = rng.randrange(n)
        return _insertion(kind, offsets[index + 1], journal.frame(index), index + 1)
    if kind == "truncate":
        index = rng.randrange(n)
        cut = rng.randrange(offsets[index] + 1, offsets[index + 1])
        tail = data[cut:]

        def truncate(buffer: bytearray) -> None:
            del buffer[cut:]

        def untruncate(buffer: bytearray) -> None:
            buffer[cut:] = tail

        return Mutation(kind, truncate, untruncate, index, last)
    assert kind == "zero"
    while True:
        start = rng.randrange(0, len(data), SECTOR_BYTES)
        stop = min(len(data), start + SECTOR_BYTES)
        original = data[start:stop]
        if original.count(0) < len(original):
            break
    first_changed = start + next(i for i, byte in enumerate(original) if byte)
    index = bisect.bisect_right(offsets, first_changed) - 1
    zeros = bytes(stop - start)
    last_touched = bisect.bisect_right(offsets, stop - 1) - 1
    torn = (
        True
        if last and stop == len(data)
        else None
        if last and last_touched >= journal.last_append  # Inside the last append: either.
        else False
    )
    return Mutation(kind, _put(start, zeros), _put(start, original), index, torn)


def _put(start: int, replacement: bytes) -> Callable[[bytearray], None]:
    def put(buffer: bytearray) -> None:
        buffer[start : start + len(replacement)] = replacement

    return put


def _insertion(kind: str, at: int, extra: bytes, bad_index: int) -> Mutation:
    def insert(buffer: bytearray) -> None:
        buffer[at:at] = extra

    def remove(buffer: bytearray) -> None:
        del buffer[at : at + len(extra)]

    return Mutation(kind, insert, remove, bad_index, False)


@pytest.fixture(scope="module")
def big_journal() -> Journal:
    started = time.perf_counter()
    data = appended(random.Random(SEED ^ 0xA99E), 1, RECORDS, GENESIS_HASH)
    journal = journal_of(data, 1, GENESIS_HASH)
    print(
        f"\njournal: {journal.frames:,} records, {len(data):,} bytes, built and validated in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return journal


@pytest.mark.slow
def test_every_mutation_is_caught_at_the_first_bad_seq(big_journal: Journal) -> None:
    print(f"IPX_SEED={SEED}")
    rng = random.Random(SEED)
    journal = big_journal
    work = bytearray(journal.data)
    figures: dict[str, Counter[str]] = {}
    started = time.perf_counter()
    for kind in KINDS:
        counts: Counter[str] = Counter()
        for trial in range(TRIALS_PER_KIND):
            mutation = plan(kind, rng, journal, last=True)
            mutation.apply(work)
            try:
                verdict = check(work, journal, mutation)
            finally:
                mutation.undo(work)
            assert verdict.startswith("ok"), f"{kind} trial {trial}: {verdict} (IPX_SEED={SEED})"
            counts["trials"] += 1
            counts["detected at the exact seq and offset"] += 1
            counts[verdict] += 1
        figures[kind] = counts
    assert work == journal.data
    elapsed = time.perf_counter() - started
    print(f"{'kind':<10} {'trials':>7} {'exact':>7} {'damage':>7} {'torn':>6}")
    for kind, counts in figures.items():
        print(
            f"{kind:<10} {counts['trials']:>7} {counts['detected at the exact seq and offset']:>7}"
            f" {counts['ok damage']:>7} {counts['ok torn']:>6}"
        )
    total = sum(c["trials"] for c in figures.values())
    print(f"{total:,} mutations, {total:,} detected at the exact seq, in {elapsed:.1f} s")


def check(buffer: bytearray, journal: Journal, mutation: Mutation) -> str:
    """Validate the mutated journal; return "ok torn"/"ok damage" or what went wrong."""
    start = max(0, mutation.bad_index - CHECKPOINT_FRAMES_BEFORE)
    reader = SegmentReader(
        buffer,
        next_seq=journal.first_seq + start,
        prev_hash=journal.hashes[start],
        last=True,
        offset=journal.offsets[start],
    )
    yielded = sum(1 for _ in reader)
    damage = reader.damage
    expected_seq = journal.first_seq + mutation.bad_index
    if damage is None:
        return f"not detected: {yielded} records read cleanly"
    if (damage.seq, damage.offset) != (expected_seq, journal.offsets[mutation.bad_index]):
        return f"reported seq {damage.seq} at {damage.offset}: {damage.reason}"
    if yielded != mutation.bad_index - start:
        return f"yielded {yielded} records before the damage"
    if mutation.torn is not None and damage.torn != mutation.torn:
        return f"torn={damage.torn} where torn={mutation.torn} was expected: {damage.reason}"
    return "ok torn" if damage.torn else "ok damage"


@pytest.mark.slow
def test_clean_journals_raise_no_alarm(big_journal: Journal) -> None:
    print(f"IPX_SEED={SEED}")
    rng = random.Random(SEED ^ 0xC1EA)
    reader = SegmentReader(big_journal.data, next_seq=1, prev_hash=GENESIS_HASH, last=True)
    assert sum(1 for _ in reader) == RECORDS and reader.damage is None
    alarms = 0
    for _ in range(CLEAN_JOURNALS):
        count = rng.randrange(0, 120)
        first = rng.randrange(1, 1 << 40)
        prev_hash = rng.randbytes(32)
        bodies = [
            RecordBody(
                seq,
                rng.randrange(1 << 63),
                rng.choice(["deposit", "place_order", ""]),
                rng.randbytes(rng.choice([0, 1, 151, 4000])),
                tuple(
                    Posting("USD", rng.randrange(1, 1 << 62), "a", Bucket.HELD, "b", Bucket.HELD)
                    for _ in range(rng.randrange(4))
                ),
            )
            for seq in range(first, first + count)
        ]
        _, data = seal_frames(prev_hash, bodies)
        reader = SegmentReader(data, next_seq=first, prev_hash=prev_hash, last=rng.random() < 0.5)
        alarms += sum(1 for _ in reader) != count or reader.damage is not None
    print(f"clean journals: {CLEAN_JOURNALS + 1}, false alarms: {alarms}")
    assert alarms == 0


@pytest.mark.slow
def test_mutated_segment_files_stop_the_open_at_the_first_bad_seq(
    big_journal: Journal, tmp_path: Path
) -> None:
    print(f"IPX_SEED={SEED}")
    rng = random.Random(SEED ^ 0xF11E)
    clean = tmp_path / "clean"
    with FileJournal.open(clean, segment_bytes_max=1 << 20) as journal:
        for first in range(1, RECORDS + 1, 100):  # Appends of 100 records.
            journal.append_bodies([small_body(seq) for seq in range(first, first + 100)])
        assert journal.recovery.records == 0 and journal.last_seq == RECORDS
    paths = sorted((clean / "journal").glob("*.seg"))
    assert len(paths) >= 5
    segments = []
    prev_hash = GENESIS_HASH
    for path in paths:
        segment = journal_of(path.read_bytes(), int(path.stem), prev_hash)
        segments.append(segment)
        prev_hash = segment.hashes[-1]
    verdicts: Counter[str] = Counter()
    for kind in KINDS:
        for trial in range(FILE_TRIALS_PER_KIND):
            # Alternate between the last segment (where a cut is torn) and an earlier one.
            target = len(paths) - 1 if trial % 2 == 0 else rng.randrange(len(paths) - 1)
            mutation = plan(kind, rng, segments[target], last=target == len(paths) - 1)
            root = tmp_path / f"{kind}-{trial}"
            mutated = _copy_with(clean, paths, target, mutation, root)
            verdicts[_open_verdict(root, mutated, segments[target], mutation)] += 1
    print(f"real files: {dict(verdicts)}")
    assert set(verdicts) <= {"ok damage", "ok torn"}
    assert verdicts["ok torn"] >= FILE_TRIALS_PER_KIND // 2  # The cuts in the last segment.


def _copy_with(clean: Path, paths: list[Path], target: int, mutation: Mutation, root: Path) -> Path:
    (root / "journal").mkdir(parents=True)
    for index, path in enumerate(paths):
        copy = root / "journal" / path.name
        if index != target:
            os.link(path, copy)  # Untouched segments are shared, never written to.
    buffer = bytearray(paths[target].read_bytes())
    mutation.apply(buffer)
    mutated = root / "journal" / paths[target].name
    mutated.write_bytes(bytes(buffer))
    return mutated


def _open_verdict(root: Path, mutated: Path, segment: Journal, mutation: Mutation) -> str:
    expected_seq = segment.first_seq + mutation.bad_index
    expected_offset = segment.offsets[mutation.bad_index]
    before = mutated.read_bytes()
    try:
        with FileJournal.open(root) as journal:
            report = journal.recovery
    except JournalCorrupt as error:
        assert (error.seq, error.path, error.offset) == (
            expected_seq,
            str(mutated),
            expected_offset,
        )
        assert mutated.read_bytes() == before  # Damage changes nothing on disk.
        assert mutation.torn is not True
        return "ok damage"
    assert mutation.torn is not False, f"{mutation.kind} was taken as torn: {report}"
    assert (report.torn_seq, report.torn_path, report.torn_offset) == (
        expected_seq,
        str(mutated),
        expected_offset,
    )
    assert report.last_seq == expected_seq - 1
    assert mutated.stat().st_size == expected_offset
    return "ok torn"


def test_dropping_whole_frames_at_the_very_end_leaves_a_valid_shorter_journal(
    tmp_path: Path,
) -> None:
    # The one mutation the files cannot reveal: nothing is left that contradicts it. An
    # acknowledged seq (the writer's, or a receipt's checkpoint) is what catches it.
    with FileJournal.open(tmp_path) as journal:
        records = journal.append_bodies([small_body(seq) for seq in range(1, 11)])
    segment = next((tmp_path / "journal").glob("*.seg"))
    data = segment.read_bytes()
    segment.write_bytes(data[: skip_frames(data, 0, 8)])
    assert list(read_journal(tmp_path)) == records[:8]
