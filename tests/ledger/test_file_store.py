"""The file journal's writer rules: group commit, a stop on any failed write or fsync, segments.

Faults are injected at the OS call (os.fdatasync, os.fsync, os.pwrite raise through
monkeypatch): the journal must behave as it would if the kernel reported the error.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ledger.errors import JournalError, JournalStopped
from ledger.file_store import FileJournal, read_journal
from ledger.frames import encode_frame, seal_batch
from ledger.records import GENESIS_HASH, Record, RecordBody, seal
from tests.ledger.journal_writer import body_for


def bodies(first: int, count: int) -> list[RecordBody]:
    return [body_for(seq) for seq in range(first, first + count)]


def sealed(first: int, count: int, prev_hash: bytes) -> list[Record]:
    records = []
    for body in bodies(first, count):
        records.append(seal(prev_hash, body))
        prev_hash = records[-1].hash
    return records


def segment_files(root: Path) -> list[Path]:
    return sorted((root / "journal").glob("*.seg"))


def files_of(root: Path) -> dict[Path, tuple[bytes, int]]:
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


class FsyncLog:
    """Wrap os.fsync and os.fdatasync: count syncs of files and of directories, fail some.

    fail_next fails the next sync, or with fail_directories_only the next directory sync.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real_fsync, self.real_fdatasync = os.fsync, os.fdatasync
        self.files = 0
        self.directories = 0
        self.fail_next: Callable[[], OSError] | None = None
        self.fail_directories_only = False
        monkeypatch.setattr(os, "fsync", lambda fd: self.sync(fd, self.real_fsync))
        monkeypatch.setattr(os, "fdatasync", lambda fd: self.sync(fd, self.real_fdatasync))

    def sync(self, fd: int, real: Callable[[int], None]) -> None:
        directory = stat.S_ISDIR(os.fstat(fd).st_mode)
        if directory:
            self.directories += 1
        else:
            self.files += 1
        if self.fail_next is not None and (directory or not self.fail_directories_only):
            error, self.fail_next = self.fail_next(), None
            raise error
        real(fd)


# --- Appending and reading back ------------------------------------------------------------


def test_a_new_journal_starts_empty_with_its_first_segment(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path / "j") as journal:
        assert (journal.last_seq, journal.last_hash) == (0, GENESIS_HASH)
        assert journal.recovery.records == 0 and journal.recovery.torn_bytes_truncated == 0
        assert list(journal.records()) == []
    assert [p.name for p in segment_files(tmp_path / "j")] == ["00000000000000000001.seg"]


def test_what_the_journal_creates_only_its_owner_can_read(tmp_path: Path) -> None:
    # Every account's orders, balances and payouts are in it: not for other local users.
    old_umask = os.umask(0o022)  # The usual one, under which files were 0644 before.
    try:
        with FileJournal.open(tmp_path / "exchange") as journal:
            journal.append_bodies(bodies(1, 3))
            journal.write_snapshot(3, bytes(32), b"state")
    finally:
        os.umask(old_umask)
    created = [tmp_path / "exchange", *(tmp_path / "exchange").rglob("*")]
    modes = {path: stat.S_IMODE(path.stat().st_mode) for path in created}
    assert modes == {path: 0o700 if path.is_dir() else 0o600 for path in created}
    assert {path.suffix for path in created} >= {".seg", ".snap"}


def test_appended_records_come_back_after_reopening(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        first = journal.append_bodies(bodies(1, 10))
        second = journal.append_bodies(bodies(11, 5))
        assert journal.last_seq == 15 and journal.last_hash == second[-1].hash
    with FileJournal.open(tmp_path) as journal:
        assert journal.recovery.records == 15
        assert journal.recovery.last_hash == second[-1].hash
        assert list(journal.records()) == first + second
        assert list(journal.records(from_seq=12)) == second[1:]
    assert list(read_journal(tmp_path)) == first + second


def test_append_takes_records_sealed_elsewhere(tmp_path: Path) -> None:
    records = sealed(1, 20, GENESIS_HASH)
    with FileJournal.open(tmp_path) as journal:
        journal.append(records[:7])
        journal.append(records[7:])
        journal.append([])
        assert journal.last_seq == 20
    assert list(read_journal(tmp_path)) == records


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("gap", "seq 3 where seq 2 was expected"),
        ("broken link", "prev_hash does not link"),
        ("altered", "does not recompute"),
    ],
)
def test_append_refuses_a_record_that_does_not_continue_the_chain(
    tmp_path: Path, case: str, reason: str
) -> None:
    records = sealed(1, 3, GENESIS_HASH)
    bad = {
        "gap": [records[0], records[2]],
        "broken link": [records[0], seal(GENESIS_HASH, records[1].body())],
        "altered": [records[0], Record(2, 1, "x", b"", (), records[0].hash, records[1].hash)],
    }[case]
    with FileJournal.open(tmp_path) as journal:
        size_before = segment_files(tmp_path)[0].stat().st_size
        with pytest.raises(JournalError, match=reason):
            journal.append(bad)
        assert segment_files(tmp_path)[0].stat().st_size == size_before
        assert journal.last_seq == 0
        journal.append(records)  # A refusal is not a failure of the disk: carry on.
        assert journal.last_seq == 3


def test_append_bodies_refuses_a_seq_that_does_not_follow(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies(bodies(1, 2))
        with pytest.raises(JournalError, match="seq 4 was expected"):
            journal.append_bodies([body_for(3), body_for(5)])
        assert journal.last_seq == 2


def test_one_process_at_a_time_writes_a_journal(tmp_path: Path) -> None:
    journal = FileJournal.open(tmp_path)
    with pytest.raises(JournalError, match="another writer"):
        FileJournal.open(tmp_path)
    journal.close()
    FileJournal.open(tmp_path).close()


def test_a_closed_journal_refuses_appends(tmp_path: Path) -> None:
    journal = FileJournal.open(tmp_path)
    journal.close()
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.append_bodies(bodies(1, 1))


def test_read_journal_changes_nothing_and_needs_no_lock(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        records = journal.append_bodies(bodies(1, 30))
        before = files_of(tmp_path)
        assert list(read_journal(tmp_path)) == records  # The writer still holds the lock.
        after = files_of(tmp_path)
    assert after == before
    with pytest.raises(JournalError, match="no journal"):
        list(read_journal(tmp_path / "missing"))


# --- Group commit -------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 10, 1000])
def test_a_batch_is_made_durable_with_exactly_one_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: int
) -> None:
    with FileJournal.open(tmp_path) as journal:
        log = FsyncLog(monkeypatch)
        writes: list[int] = []
        real_pwrite = os.pwrite

        def counting_pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
            if any(data):  # Not the zeros written ahead of the frames.
                writes.append(len(data))
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", counting_pwrite)
        journal.append_bodies(bodies(1, batch))
        assert (log.files, log.directories) == (1, 0)
        assert len(writes) == 1  # All frames of the batch in one write.
        journal.append_bodies(bodies(batch + 1, batch))
        assert log.files == 2


def test_the_caller_learns_of_durability_only_after_fsync_returned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []
    with FileJournal.open(tmp_path) as journal:
        real_fdatasync = os.fdatasync

        def observing_fdatasync(fd: int) -> None:
            seen.append(journal.last_seq)  # What a caller could see while the sync runs.
            real_fdatasync(fd)

        monkeypatch.setattr(os, "fdatasync", observing_fdatasync)
        journal.append_bodies(bodies(1, 5))
        assert seen == [0]
        assert journal.last_seq == 5


def test_a_write_cut_short_by_the_kernel_is_finished_before_the_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite

    def short_pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
        return real_pwrite(fd, bytes(data)[: max(1, len(data) // 3)], offset)

    with FileJournal.open(tmp_path) as journal:
        monkeypatch.setattr(os, "pwrite", short_pwrite)
        records = journal.append_bodies(bodies(1, 40))
    monkeypatch.undo()
    assert list(read_journal(tmp_path)) == records


# --- A failed fsync or write stops the writer for good -----------------------------------


def test_an_fsync_error_stops_the_writer_and_is_never_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FileJournal.open(tmp_path) as journal:
        acknowledged = journal.append_bodies(bodies(1, 10))
        log = FsyncLog(monkeypatch)
        log.fail_next = lambda: OSError(errno.EIO, "Input/output error")
        with pytest.raises(JournalStopped, match="Input/output error") as stopped:
            journal.append_bodies(bodies(11, 10))
        assert isinstance(stopped.value.__cause__, OSError)
        assert journal.last_seq == 10  # The failed batch was never acknowledged.
        assert log.files == 1
        # The disk "recovers", but the journal must not: the kernel may have dropped the pages.
        for attempt in (
            lambda: journal.append_bodies(bodies(11, 1)),
            lambda: journal.append([seal(journal.last_hash, body_for(11))]),
            lambda: journal.write_snapshot(10, b"h", b"s"),
        ):
            with pytest.raises(JournalStopped, match="earlier failure"):
                attempt()
        assert log.files == 1  # No second fsync of anything.
        assert list(journal.records()) == acknowledged  # Reading what is durable still works.
    with FileJournal.open(tmp_path) as reopened:
        recovered = list(reopened.records())
        assert recovered[:10] == acknowledged
        reopened.append_bodies(bodies(reopened.last_seq + 1, 3))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_a_write_error_stops_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies(bodies(1, 3))
        real_pwrite = os.pwrite
        calls = {"n": 0}

        def failing_pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
            # A few bytes of the batch reach the file, then the disk refuses the rest.
            calls["n"] += 1
            if calls["n"] == 1:
                return real_pwrite(fd, bytes(data)[:10], offset)
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "pwrite", failing_pwrite)
        with pytest.raises(JournalStopped):
            journal.append_bodies(bodies(4, 6))
        monkeypatch.undo()
        with pytest.raises(JournalStopped):
            journal.append_bodies(bodies(4, 1))
        assert journal.last_seq == 3
    with FileJournal.open(tmp_path) as reopened:
        assert reopened.last_seq == 3
        assert reopened.recovery.torn_seq == 4  # The cut batch was a torn tail.
        assert reopened.recovery.torn_bytes_truncated > 0


# --- Segments -----------------------------------------------------------------------------


def test_a_new_segment_starts_between_batches_once_the_current_one_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame_bytes = len(encode_frame(seal(GENESIS_HASH, body_for(1))))
    segment_bytes_max = 10 * frame_bytes
    with FileJournal.open(tmp_path, segment_bytes_max=segment_bytes_max) as journal:
        log = FsyncLog(monkeypatch)
        batches = [7, 7, 1, 20, 3, 1]
        seq = 1
        for size in batches:
            journal.append_bodies(bodies(seq, size))
            seq += size
        # 1..14 fill the first segment (14 frames >= 10); 15 starts the second, which 16..35
        # fill; 36 starts the third, and 37..39 join it (4 frames < 10).
        names = [p.name for p in segment_files(tmp_path)]
        assert names == [f"{first:020d}.seg" for first in (1, 15, 36)]
        assert log.directories == 2  # One directory fsync per segment created.
        # One sync per batch, and one per segment cut to its frames when the next began.
        assert log.files == len(batches) + 2
        for path in segment_files(tmp_path)[:-1]:
            assert path.stat().st_size == journal.segment_sizes()[path.name]
        records = list(journal.records())
        assert [r.seq for r in records] == list(range(1, 40))
        assert [r.seq for r in journal.records(from_seq=15)] == list(range(15, 40))
        assert [r.seq for r in journal.records(from_seq=37)] == list(range(37, 40))
    with FileJournal.open(tmp_path, segment_bytes_max=segment_bytes_max) as journal:
        assert journal.recovery.segments == 3 and journal.last_seq == 39
        assert list(journal.records()) == records
        journal.append_bodies(bodies(40, 10))
        journal.append_bodies(bodies(50, 1))
        names = [p.name for p in segment_files(tmp_path)]
        assert names[-2:] == [f"{first:020d}.seg" for first in (36, 50)]


def test_records_notices_a_segment_changed_behind_its_back(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies(bodies(1, 10))
        path = segment_files(tmp_path)[0]
        data = bytearray(path.read_bytes())
        data[100] ^= 0x40
        path.write_bytes(bytes(data))
        with pytest.raises(JournalError, match="journal corrupt at seq"):
            list(journal.records())


def test_a_failed_directory_fsync_when_starting_a_segment_stops_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FileJournal.open(tmp_path, segment_bytes_max=1) as journal:
        journal.append_bodies(bodies(1, 2))  # The first segment is now full.
        log = FsyncLog(monkeypatch)
        log.fail_next = lambda: OSError(errno.EIO, "Input/output error")
        log.fail_directories_only = True
        with pytest.raises(JournalStopped):
            journal.append_bodies(bodies(3, 2))
        # The full segment was cut to its frames (one file sync), then the new one's directory
        # entry failed to sync: nothing was written after it.
        assert (log.directories, log.files) == (1, 1)
        with pytest.raises(JournalStopped):
            journal.append_bodies(bodies(3, 2))
        assert journal.last_seq == 2
    monkeypatch.undo()
    with FileJournal.open(tmp_path, segment_bytes_max=1) as journal:
        assert journal.last_seq == 2  # The new segment is there, empty, and is reused.
        journal.append_bodies(bodies(3, 2))
    assert [p.name for p in segment_files(tmp_path)] == [f"{s:020d}.seg" for s in (1, 3)]


def test_batches_sealed_ahead_are_appended_in_order_while_the_next_is_sealed(
    tmp_path: Path,
) -> None:
    # Pipelined group commit: a writer thread syncs batch N while this thread seals N+1.
    with FileJournal.open(tmp_path) as journal, ThreadPoolExecutor(1) as writer:
        prev_hash, pending, sealed = GENESIS_HASH, None, []
        for first in range(1, 200, 10):
            batch = seal_batch(prev_hash, bodies(first, 10))
            prev_hash = batch.last_hash
            if pending is not None:
                pending.result()  # Batch N is durable: its acks may go out now.
            pending = writer.submit(journal.append_sealed, batch)
            sealed += batch.records
        assert pending is not None
        pending.result()
        assert journal.last_seq == 200
    assert list(read_journal(tmp_path)) == sealed


def test_a_batch_sealed_on_another_chain_or_out_of_turn_is_refused(tmp_path: Path) -> None:
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies(bodies(1, 3))
        stale = seal_batch(GENESIS_HASH, bodies(4, 2))  # Sealed before records 1..3.
        early = seal_batch(journal.last_hash, bodies(5, 2))  # Skips seq 4.
        for batch in (stale, early):
            with pytest.raises(JournalError, match="were not sealed after seq 3"):
                journal.append_sealed(batch)
        journal.append_sealed(seal_batch(journal.last_hash, bodies(4, 2)))
        assert journal.last_seq == 5


def test_a_snapshot_larger_than_a_flush_step_is_written_in_steps_and_reads_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Snapshots are flushed in steps so that a big one does not queue the journal's fsyncs
    # behind it; the file must still read back byte for byte, with its hashes.
    monkeypatch.setattr("ledger.file_store.SNAPSHOT_FLUSH_BYTES", 7)
    state = bytes(range(256)) * 40
    with FileJournal.open(tmp_path) as journal:
        journal.append_bodies([body_for(1), body_for(2)])
        journal.write_snapshot(2, b"h" * 32, state)
        snapshot = journal.latest_snapshot()
    assert snapshot is not None
    assert (snapshot.seq, snapshot.state_hash, snapshot.state) == (2, b"h" * 32, state)
