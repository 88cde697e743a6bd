"""Recovery on open, and snapshots: a torn tail is cut and reported, damage stops with its place.

The rules, in the words of the journal:
- a write cut short by power loss at the end of the last segment is dropped, and said so;
- zeros after the last frame of the last segment are space the journal wrote ahead: kept,
  not reported, and written over by the next batch;
- anything else that fails (a flipped bit, a zeroed sector, a missing, reordered or extra
  frame or segment) stops the open with JournalCorrupt(first bad seq, file, offset), and no
  file is changed;
- the newest snapshot that validates, plus the records after it, rebuild the same state as
  replaying every record from the first.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from pathlib import Path

import crc32c
import msgspec
import pytest

from ledger.errors import JournalCorrupt, JournalError
from ledger.file_store import ZERO_AHEAD_BYTES, FileJournal, Snapshot, read_journal
from ledger.frames import FRAME_HEADER_BYTES, encode_frames, skip_frames
from ledger.records import GENESIS_HASH, Record, RecordBody, seal
from tests.ledger.journal_writer import body_for

SEGMENT_BYTES = 4096


def build(root: Path, count: int, *, batch: int = 7) -> list[Record]:
    records: list[Record] = []
    with FileJournal.open(root, segment_bytes_max=SEGMENT_BYTES) as journal:
        for first in range(1, count + 1, batch):
            last = min(count, first + batch - 1)
            records += journal.append_bodies([body_for(seq) for seq in range(first, last + 1)])
    return records


def segments(root: Path) -> list[Path]:
    return sorted((root / "journal").glob("*.seg"))


def frame_offsets(path: Path) -> list[int]:
    data = path.read_bytes()
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset = skip_frames(data, offset, 1)
    return offsets


def first_seq(path: Path) -> int:
    return int(path.name.removesuffix(".seg"))


def snapshot_of_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def expect_corrupt(root: Path, seq: int, path: Path, offset: int, reason: str) -> None:
    # Both open() and the read-only walk must stop at the same place, and change nothing.
    before = snapshot_of_files(root)
    for attempt in (lambda: FileJournal.open(root), lambda: list(read_journal(root))):
        with pytest.raises(JournalCorrupt) as caught:
            attempt()
        error = caught.value
        assert (error.seq, error.path, error.offset) == (seq, str(path), offset), error
        assert reason in error.reason
        assert f"seq {seq}" in str(error) and str(path) in str(error)
    after = {k: v for k, v in snapshot_of_files(root).items() if not k.endswith("LOCK")}
    assert after == {k: v for k, v in before.items() if not k.endswith("LOCK")}


# --- Torn tails are cut and reported ------------------------------------------------------


def test_a_torn_last_frame_is_truncated_and_reported(tmp_path: Path) -> None:
    records = build(tmp_path, 100)
    tail = segments(tmp_path)[-1]
    offsets = frame_offsets(tail)
    size = tail.stat().st_size
    with tail.open("r+b") as file:
        file.truncate(size - 5)
    with FileJournal.open(tmp_path) as journal:
        report = journal.recovery
        assert (report.last_seq, report.last_hash) == (99, records[98].hash)
        assert (report.torn_seq, report.torn_path, report.torn_offset) == (
            100,
            str(tail),
            offsets[-1],
        )
        assert report.torn_bytes_truncated == size - 5 - offsets[-1]
        assert report.torn_reason is not None and report.torn_reason.startswith("torn tail")
        assert tail.stat().st_size == offsets[-1]
        assert list(journal.records()) == records[:99]
        journal.append_bodies([body_for(100)])  # The writer carries on from seq 100.
    with FileJournal.open(tmp_path) as journal:
        assert journal.recovery.torn_bytes_truncated == 0
        assert list(journal.records()) == records


def test_read_journal_reports_a_torn_tail_without_cutting_it(tmp_path: Path) -> None:
    records = build(tmp_path, 30)
    tail = segments(tmp_path)[-1]
    clean_size = tail.stat().st_size
    with tail.open("ab") as file:
        file.write(b"\x10\x01\x00\x00\xaa\xbb")  # Most of the header of the next frame.
    before = tail.read_bytes()
    seen: list[Record] = []
    with pytest.raises(JournalCorrupt) as caught:
        seen.extend(read_journal(tmp_path))
    assert seen == records
    assert caught.value.reason.startswith("torn tail")
    assert (caught.value.seq, caught.value.offset) == (31, clean_size)
    assert tail.read_bytes() == before


def test_a_zero_filled_end_is_space_and_a_zeroed_sector_before_it_is_damage(
    tmp_path: Path,
) -> None:
    records = build(tmp_path, 60)
    tail = segments(tmp_path)[-1]
    clean = tail.read_bytes()
    tail.write_bytes(clean + bytes(8192))  # Written ahead, never used: what a crash leaves.
    assert list(read_journal(tmp_path)) == records
    with FileJournal.open(tmp_path) as journal:  # Segments big enough: 61.. join this one.
        assert journal.recovery.torn_bytes_truncated == 0 and journal.last_seq == 60
        assert tail.stat().st_size == len(clean) + 8192  # Kept, and written over next.
        more = journal.append_bodies([body_for(seq) for seq in range(61, 64)])
    assert tail.read_bytes() == clean + encode_frames(more)  # Closing cut the rest.
    assert len(clean) > 1024
    offsets = frame_offsets(tail)
    tail.write_bytes(clean[:512] + bytes(512) + clean[1024:])
    hit = max(i for i, offset in enumerate(offsets) if offset <= 512)
    expect_corrupt(tmp_path, first_seq(tail) + hit, tail, offsets[hit], "")


def test_an_open_journal_writes_zeros_ahead_and_readers_stop_at_its_last_frame(
    tmp_path: Path,
) -> None:
    # A verifier may read the journal of a running exchange (ipx stress does).
    with FileJournal.open(tmp_path, segment_bytes_max=SEGMENT_BYTES) as journal:
        records = journal.append_bodies([body_for(seq) for seq in range(1, 6)])
        tail = segments(tmp_path)[-1]
        assert tail.stat().st_size >= ZERO_AHEAD_BYTES
        assert not any(tail.read_bytes()[journal.segment_sizes()[tail.name] :])
        assert list(read_journal(tmp_path)) == records
        for first in range(6, 200, 10):
            records += journal.append_bodies([body_for(seq) for seq in range(first, first + 10)])
        assert len(segments(tmp_path)) > 1
        for path in segments(tmp_path)[:-1]:  # Cut to their frames when the next one began.
            assert path.stat().st_size == journal.segment_sizes()[path.name]
        assert list(read_journal(tmp_path)) == records
    assert sum(path.stat().st_size for path in segments(tmp_path)) == len(encode_frames(records))


def test_a_last_segment_that_holds_only_a_torn_frame_is_emptied_and_reused(
    tmp_path: Path,
) -> None:
    records = build(tmp_path, 40)
    tail = segments(tmp_path)[-1]
    first = first_seq(tail)
    frame = tail.read_bytes()[: frame_offsets(tail)[1]]
    tail.write_bytes(frame[:-1])
    with FileJournal.open(tmp_path, segment_bytes_max=SEGMENT_BYTES) as journal:
        assert journal.last_seq == first - 1 and journal.recovery.torn_seq == first
        assert tail.stat().st_size == 0
        again = journal.append_bodies([body_for(seq) for seq in range(first, 41)])
    assert again == records[first - 1 :]
    assert list(read_journal(tmp_path)) == records


# --- Damage stops the open, names the first bad seq, changes nothing ----------------------


def test_a_flipped_bit_in_an_earlier_segment_is_damage(tmp_path: Path) -> None:
    build(tmp_path, 120)
    target = segments(tmp_path)[1]
    offsets = frame_offsets(target)
    data = bytearray(target.read_bytes())
    data[offsets[3] + FRAME_HEADER_BYTES + 17] ^= 0x04
    target.write_bytes(bytes(data))
    expect_corrupt(tmp_path, first_seq(target) + 3, target, offsets[3], "CRC mismatch")


def test_a_flipped_bit_in_the_last_segment_with_frames_after_it_is_damage(
    tmp_path: Path,
) -> None:
    build(tmp_path, 120)
    target = segments(tmp_path)[-1]
    offsets = frame_offsets(target)
    assert len(offsets) >= 3
    data = bytearray(target.read_bytes())
    data[offsets[-2] + 2] ^= 0x80  # The length field of the second-to-last frame.
    target.write_bytes(bytes(data))
    expect_corrupt(
        tmp_path,
        first_seq(target) + len(offsets) - 2,
        target,
        offsets[-2],
        f"but a valid frame follows at {offsets[-1]}",
    )


def test_stray_bytes_at_the_end_of_an_earlier_segment_are_damage(tmp_path: Path) -> None:
    build(tmp_path, 120)
    target = segments(tmp_path)[0]
    size = target.stat().st_size
    with target.open("ab") as file:
        file.write(b"\x00" * 100)
    next_seq = first_seq(segments(tmp_path)[1])
    expect_corrupt(
        tmp_path, next_seq, target, size, "zero-length frame in a segment that is not the last"
    )


def test_a_missing_segment_is_a_gap(tmp_path: Path) -> None:
    build(tmp_path, 120)
    paths = segments(tmp_path)
    assert len(paths) >= 4
    paths[1].unlink()
    expect_corrupt(tmp_path, first_seq(paths[1]), paths[2], 0, "are in no segment")


def test_a_segment_named_for_the_wrong_seq_is_damage(tmp_path: Path) -> None:
    build(tmp_path, 120)
    paths = segments(tmp_path)
    wrong = paths[2].with_name(f"{first_seq(paths[2]) - 1:020d}.seg")
    paths[2].rename(wrong)
    expect_corrupt(tmp_path, first_seq(paths[2]), wrong, 0, "overlapping")


def test_an_empty_segment_before_the_last_is_damage(tmp_path: Path) -> None:
    build(tmp_path, 120)
    paths = segments(tmp_path)
    paths[1].write_bytes(b"")
    expect_corrupt(tmp_path, first_seq(paths[1]), paths[1], 0, "empty segment")


def test_a_journal_that_does_not_start_at_seq_1_is_damage(tmp_path: Path) -> None:
    build(tmp_path, 120)
    paths = segments(tmp_path)
    paths[0].unlink()
    expect_corrupt(tmp_path, 1, paths[1], 0, "seqs 1..")


def test_records_swapped_between_frames_are_damage(tmp_path: Path) -> None:
    build(tmp_path, 50)
    target = segments(tmp_path)[0]
    offsets = frame_offsets(target)
    data = target.read_bytes()
    a, b, c = offsets[4], offsets[5], offsets[6]
    target.write_bytes(data[:a] + data[b:c] + data[a:b] + data[c:])
    expect_corrupt(tmp_path, 5, target, a, "seq 6 where seq 5 was expected")


# --- Snapshots ---------------------------------------------------------------------------


class Fold:
    """A deterministic state over records: balances from postings and a digest of the chain."""

    def __init__(self) -> None:
        self.seq = 0
        self.digest = GENESIS_HASH
        self.balances: dict[tuple[str, str, str], int] = {}

    def apply(self, record: Record) -> None:
        assert record.seq == self.seq + 1
        for p in record.postings:
            debit = (p.debit_account, p.debit_bucket.value, p.asset)
            credit = (p.credit_account, p.credit_bucket.value, p.asset)
            self.balances[debit] = self.balances.get(debit, 0) - p.amount
            self.balances[credit] = self.balances.get(credit, 0) + p.amount
        self.digest = hashlib.sha256(self.digest + record.hash).digest()
        self.seq = record.seq

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode([self.seq, self.digest, sorted(self.balances.items())])

    def state_hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> Fold:
        seq, digest, balances = msgspec.msgpack.decode(data)
        fold = cls()
        fold.seq, fold.digest = seq, digest
        fold.balances = {(a, b, c): amount for (a, b, c), amount in balances}
        return fold


def snapshot_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "snapshots").iterdir())


def test_snapshot_plus_tail_equals_replay_from_genesis(tmp_path: Path) -> None:
    fold = Fold()
    with FileJournal.open(tmp_path, segment_bytes_max=SEGMENT_BYTES) as journal:
        for first in range(1, 1001, 25):
            for record in journal.append_bodies([body_for(s) for s in range(first, first + 25)]):
                fold.apply(record)
            if fold.seq % 300 == 0 or fold.seq == 950:
                journal.write_snapshot(fold.seq, fold.state_hash(), fold.to_bytes())
    assert snapshot_files(tmp_path) == [f"{s:020d}.snap" for s in (300, 600, 900, 950)]
    with FileJournal.open(tmp_path) as journal:
        genesis = Fold()
        for record in journal.records():
            genesis.apply(record)
        snapshot = journal.latest_snapshot()
        assert snapshot is not None and snapshot.seq == 950 and journal.skipped_snapshots == []
        resumed = Fold.from_bytes(snapshot.state)
        assert resumed.state_hash() == snapshot.state_hash
        tail = list(journal.records(from_seq=snapshot.seq + 1))
        assert [r.seq for r in tail] == list(range(951, 1001))
        for record in tail:
            resumed.apply(record)
        assert resumed.to_bytes() == genesis.to_bytes() == fold.to_bytes()
        assert resumed.state_hash() == genesis.state_hash()


def test_a_damaged_newest_snapshot_is_skipped_and_named(tmp_path: Path) -> None:
    fold = Fold()
    with FileJournal.open(tmp_path, segment_bytes_max=SEGMENT_BYTES) as journal:
        for record in journal.append_bodies([body_for(s) for s in range(1, 201)]):
            fold.apply(record)
            if record.seq in (50, 120, 200):
                journal.write_snapshot(record.seq, fold.state_hash(), fold.to_bytes())
        newest = tmp_path / "snapshots" / f"{200:020d}.snap"
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0x01
        newest.write_bytes(bytes(data))
        middle = tmp_path / "snapshots" / f"{120:020d}.snap"
        middle.write_bytes(middle.read_bytes()[:-3])  # A copy cut short.
        snapshot = journal.latest_snapshot()
        assert snapshot is not None and snapshot.seq == 50
        assert journal.skipped_snapshots == [
            (str(newest), "checksum mismatch"),
            (str(middle), "checksum mismatch"),
        ]
        resumed = Fold.from_bytes(snapshot.state)
        for record in journal.records(from_seq=51):
            resumed.apply(record)
        assert resumed.to_bytes() == fold.to_bytes()


def test_a_snapshot_of_another_journal_or_beyond_this_one_is_skipped(tmp_path: Path) -> None:
    other = tmp_path / "other"
    with FileJournal.open(other) as journal:
        journal.append_bodies([body_for(1), body_for(2)])
        # A fork: the same first two records, then a different record 3.
        journal.append([seal(journal.last_hash, RecordBody(3, 0, "fork", b"", ()))])
        journal.write_snapshot(3, b"h" * 32, b"theirs")
    mine = tmp_path / "mine"
    with FileJournal.open(mine) as journal:
        journal.append_bodies([body_for(s) for s in range(1, 4)])
        journal.write_snapshot(1, b"h" * 32, b"mine")
    shutil.copy(other / "snapshots" / f"{3:020d}.snap", mine / "snapshots")
    beyond = mine / "snapshots" / f"{9:020d}.snap"
    shutil.copy(other / "snapshots" / f"{3:020d}.snap", beyond)
    with FileJournal.open(mine) as journal:
        snapshot = journal.latest_snapshot()
        assert snapshot == Snapshot(1, b"h" * 32, b"mine", next(journal.records()).hash)
        reasons = [reason for _, reason in journal.skipped_snapshots]
        assert reasons == [
            "holds seq 3 but is named for seq 9",
            "head hash does not match the journal's record 3",
        ]


def test_a_snapshot_lands_whole_or_not_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        calls.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    def rename(src: str, dst: str) -> None:
        calls.append(f"rename {Path(src).name} -> {Path(dst).name}")
        real_rename(src, dst)

    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies([body_for(s) for s in range(1, 11)])
        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "rename", rename)
        journal.write_snapshot(10, b"s" * 32, b"state at ten")
        name = f"{10:020d}.snap"
        assert calls == ["fsync file", f"rename {name}.tmp -> {name}", "fsync dir"]

        def failing_rename(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "rename", failing_rename)
        with pytest.raises(JournalError, match="snapshot at seq 5 not written"):
            journal.write_snapshot(5, b"s" * 32, b"state at five")
        assert snapshot_files(tmp_path) == [name]  # No half snapshot, no stray temp file.
        monkeypatch.undo()
        journal.append_bodies([body_for(11)])  # A failed snapshot does not stop the journal.
        latest = journal.latest_snapshot()
        assert latest is not None and latest.state == b"state at ten"


def test_a_temporary_snapshot_left_by_a_crash_is_ignored_and_removed(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies([body_for(1)])
    stale = tmp_path / "snapshots" / f"{1:020d}.snap.tmp"
    stale.write_bytes(b"IPXSNAP1 half written")
    with FileJournal.open(tmp_path) as journal:
        assert journal.latest_snapshot() is None and journal.skipped_snapshots == []
    assert not stale.exists()


def test_a_snapshot_must_be_of_an_acknowledged_seq(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies([body_for(1), body_for(2)])
        journal.write_snapshot(0, b"", b"empty state")
        for seq in (-1, 3):
            with pytest.raises(ValueError, match="not between 0 and last seq 2"):
                journal.write_snapshot(seq, b"", b"")
        latest = journal.latest_snapshot()
        assert latest == Snapshot(0, b"", b"empty state", GENESIS_HASH)


def test_snapshot_files_start_with_their_magic_and_checksum(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies([body_for(1)])
        journal.write_snapshot(1, b"x" * 32, b"abc")
    data = (tmp_path / "snapshots" / f"{1:020d}.snap").read_bytes()
    assert data[:8] == b"IPXSNAP1"
    assert struct.unpack_from("<I", data, 8)[0] == crc32c.crc32c(data[12:])
