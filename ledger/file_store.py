"""The durable journal on disk: segment files, group commit, recovery and snapshots.

Layout under the journal's directory:
    LOCK                                  held (flock) by the one open writer
    journal/<first seq, 20 digits>.seg    frames (ledger/frames.py), then (the last one only)
                                          zeros: space written ahead for the next frames
    snapshots/<seq, 20 digits>.snap       one state per file, written whole and renamed in

Invariants:
- append(), append_bodies() and append_sealed() return only after the batch's bytes are on
  disk: all frames in one write, then one fdatasync. Returning is the acknowledgement;
  last_seq and last_hash move only after it. Sealing is pure (ledger.frames.seal_batch), so
  a caller may seal the next batch while this one syncs; the appends run one at a time.
- Frames only ever go after the last acknowledged one; the bytes before it never change.
- The last segment's frames are followed by zeros written ahead (ZERO_AHEAD_BYTES at a time,
  in the same fdatasync as the batch that passes the zeroed end): a batch then overwrites
  blocks the file already has, so its fdatasync flushes the data alone. Appending past the
  end also changes the file's size and allocation, which costs ext4 a journal commit on every
  fdatasync: measured here, 0.14 ms against 0.27 ms per 10 KB batch. Zeros after the last
  valid frame of the last segment are space, not records and not damage: open() and
  read_journal() end there; a segment is cut to its frames when the next one starts and when
  the journal is closed, so only a journal that was not closed (a crash) has them.
- Any OSError while writing a batch, syncing it or starting a segment stops the journal for
  good (JournalStopped). After a failed fsync the kernel may have dropped the dirty pages and
  marked them clean, so a second fsync could "succeed" without the data (PostgreSQL's
  fsyncgate, 2018). The only way on is to reopen, which re-reads what really is on disk.
- A new segment starts only between batches, once the current one holds segment_bytes_max
  bytes or more: a batch never spans two segments, so a torn write can only sit at the end of
  the last segment. The directory is fsynced after a file is created, truncated to nothing by
  rename, or renamed into place.
- open() validates every frame of every segment with ledger.frames.SegmentReader (the same
  code the tests mutate journals through). A torn tail (a frame cut short, zeros or not
  after it) is truncated and reported in `recovery`; anything else raises
  JournalCorrupt(first bad seq, file, offset, reason) before any file is changed.
- Segment names carry their first seq: the first is seq 1, each next one starts exactly
  where the previous one ended. A gap, an overlap or an empty segment that is not the last is
  damage.
- Snapshots: temporary file, fsync, rename, directory fsync. Each stores its seq, the journal's
  head hash at that seq, the caller's state_hash and state, under a CRC32C. latest_snapshot()
  skips (and lists in `skipped_snapshots`) any that fails its checksum, its name, or its link to
  this journal.
- What it creates is the owner's alone (directories 0700, files 0600, before the umask): the
  journal holds every account's orders, balances and payouts.
- This is the only module of ledger/ that touches the disk.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import crc32c
import msgspec

from ledger.errors import JournalCorrupt, JournalError, JournalStopped
from ledger.frames import (
    Damage,
    SealedBatch,
    SegmentReader,
    decode_frame,
    encode_frames,
    link_error,
    seal_batch,
    skip_frames,
)
from ledger.records import GENESIS_HASH, Record, RecordBody

JOURNAL_DIR = "journal"
SNAPSHOT_DIR = "snapshots"
LOCK_FILE = "LOCK"
SEGMENT_SUFFIX = ".seg"
SNAPSHOT_SUFFIX = ".snap"
TEMP_SUFFIX = ".tmp"
SEGMENT_BYTES_MAX_DEFAULT = 64 << 20
SEQ_DIGITS = 20
SNAPSHOT_FLUSH_BYTES = 1 << 20  # A snapshot is written and flushed in steps of this size.
# Zeros written ahead of the last frame: one batch in ~100 (of 10 KB) pays ~1 ms to extend.
ZERO_AHEAD_BYTES = 1 << 20
_ZEROS = bytes(ZERO_AHEAD_BYTES)

_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
_SNAPSHOT_NAME = re.compile(r"^(\d{20})\.snap$")
_SNAPSHOT_MAGIC = b"IPXSNAP1"
_SNAPSHOT_CRC = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    """What open() found: the valid journal, and the torn tail it cut off, if any."""

    records: int
    last_seq: int
    last_hash: bytes
    segments: int
    torn_bytes_truncated: int  # 0 when the journal ended cleanly.
    torn_path: str | None
    torn_seq: int | None  # The seq the torn frame would have carried.
    torn_offset: int | None  # Where the torn tail started, now the end of torn_path.
    torn_reason: str | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """State at a seq, as the caller wrote it, and the journal's head hash at that seq."""

    seq: int
    state_hash: bytes
    state: bytes
    head_hash: bytes  # Hash of record `seq` (GENESIS_HASH for seq 0): ties it to this journal.


class _SnapshotFile(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    seq: int
    head_hash: bytes
    state_hash: bytes
    state: bytes


_snapshot_encoder = msgspec.msgpack.Encoder()
_snapshot_decoder = msgspec.msgpack.Decoder(_SnapshotFile)


@dataclass(slots=True)
class _Segment:
    first_seq: int
    path: str
    prev_hash: bytes  # Hash of the record before this segment's first one.
    size: int  # Bytes validated (or appended and synced) so far.


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:0{SEQ_DIGITS}d}{SEGMENT_SUFFIX}"


def _list_segments(journal_dir: str) -> list[tuple[int, str]]:
    found = []
    for name in os.listdir(journal_dir):
        match = _SEGMENT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(journal_dir, name)))
    found.sort()
    return found


def _read_file(path: str, size: int | None = None) -> bytes:
    with open(path, "rb") as file:
        return file.read() if size is None else file.read(size)


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    # os.pwrite may write less than asked (a signal, a full disk); loop until all is written.
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _all_zero(data: bytes, start: int) -> bool:
    return data.count(0, start) == len(data) - start


def _fsync_dir(path: str) -> None:
    # A new or renamed file is durable only once its directory entry is: fsync the directory.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir(path: str) -> None:
    if os.path.isdir(path):
        return
    # Owner only: the journal holds every account's orders, balances and payouts.
    os.makedirs(path, mode=0o700, exist_ok=True)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


class _Walk:
    """Validate the segments of a journal in order; iterating yields every valid record.

    With allow_torn, a torn tail of the last segment ends the walk and is kept in `torn`;
    otherwise it raises JournalCorrupt like any other damage (reason "torn tail: ...").
    """

    def __init__(self, listing: list[tuple[int, str]], *, allow_torn: bool) -> None:
        self._listing = listing
        self._allow_torn = allow_torn
        self.segments: list[_Segment] = []
        self.next_seq = 1
        self.prev_hash = GENESIS_HASH
        self.torn: tuple[str, Damage, int] | None = None  # (path, damage, file size)

    def __iter__(self) -> Iterator[Record]:
        count = len(self._listing)
        for index, (first_seq, path) in enumerate(self._listing):
            last = index == count - 1
            if first_seq != self.next_seq:
                raise JournalCorrupt(self.next_seq, path, 0, self._misplaced(first_seq))
            data = _read_file(path)
            if not data and not last:
                raise JournalCorrupt(first_seq, path, 0, "empty segment before the last one")
            reader = SegmentReader(data, next_seq=first_seq, prev_hash=self.prev_hash, last=last)
            yield from reader
            self.segments.append(_Segment(first_seq, path, self.prev_hash, reader.offset))
            self.next_seq = reader.next_seq
            self.prev_hash = reader.prev_hash
            damage = reader.damage
            if damage is None or (last and _all_zero(data, damage.offset)):
                continue  # A clean end, or one followed by space written ahead.
            if not (damage.torn and self._allow_torn):
                raise JournalCorrupt(damage.seq, path, damage.offset, damage.reason)
            self.torn = (path, damage, len(data))

    def _misplaced(self, first_seq: int) -> str:
        if first_seq > self.next_seq:
            return (
                f"segment starts at seq {first_seq} but seqs {self.next_seq}..{first_seq - 1} "
                f"are in no segment"
            )
        return f"segment starts at seq {first_seq}, overlapping seqs before {self.next_seq}"


def read_journal(directory: str | os.PathLike[str]) -> Iterator[Record]:
    """Yield every record of the journal under directory, validating as open() does.

    Read-only: never creates, truncates or locks anything, so a verifier can run it on a
    copy or beside a stopped engine.

    Raises:
        JournalError: there is no journal directory.
        JournalCorrupt: at the first bad frame, after yielding every record before it; a torn
            last frame too, with a reason starting "torn tail".
    """
    journal_dir = os.path.join(os.fspath(directory), JOURNAL_DIR)
    if not os.path.isdir(journal_dir):
        raise JournalError(f"no journal at {journal_dir}")
    yield from _Walk(_list_segments(journal_dir), allow_torn=False)


class FileJournal:
    """The append-only journal of one sequencer: group commit on segment files.

    Not thread-safe: one writer (the sequencer) calls it; LOCK keeps other processes out.
    """

    def __init__(
        self,
        root: str,
        lock_fd: int,
        walk: _Walk,
        recovery: RecoveryReport,
        segment_bytes_max: int,
    ) -> None:
        # Use FileJournal.open(); this only wires up what open() found.
        self.root = root
        self.recovery = recovery
        self.last_seq = recovery.last_seq
        self.last_hash = recovery.last_hash
        self.skipped_snapshots: list[tuple[str, str]] = []  # (path, reason) of the last lookup
        self._journal_dir = os.path.join(root, JOURNAL_DIR)
        self._snapshot_dir = os.path.join(root, SNAPSHOT_DIR)
        self._segment_bytes_max = segment_bytes_max
        self._lock_fd: int | None = lock_fd
        self._segments = walk.segments
        tail = self._segments[-1]
        self._fd: int | None = os.open(tail.path, os.O_WRONLY | os.O_CLOEXEC)
        self._zeroed_end = os.fstat(self._fd).st_size  # Zeros from tail.size up to here.
        self._failure: OSError | None = None

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike[str],
        *,
        segment_bytes_max: int = SEGMENT_BYTES_MAX_DEFAULT,
    ) -> FileJournal:
        """Open (creating if needed) the journal under directory and recover it.

        Raises:
            JournalCorrupt: damage before the tail; nothing on disk was changed.
            JournalError: another process holds the journal open.
        """
        if segment_bytes_max <= 0:
            raise ValueError(f"segment_bytes_max must be positive, not {segment_bytes_max}")
        root = os.path.abspath(os.fspath(directory))
        _make_dir(root)
        lock_fd = _lock(root)
        try:
            journal_dir = os.path.join(root, JOURNAL_DIR)
            _make_dir(journal_dir)
            _make_dir(os.path.join(root, SNAPSHOT_DIR))
            _remove_temp_files(os.path.join(root, SNAPSHOT_DIR))
            listing = _list_segments(journal_dir)
            if not listing:
                listing = [(1, _create_segment(journal_dir, 1))]
            walk = _Walk(listing, allow_torn=True)
            records = 0
            for _ in walk:
                records += 1
            recovery = _repair(walk, records)
            return cls(root, lock_fd, walk, recovery, segment_bytes_max)
        except BaseException:
            os.close(lock_fd)
            raise

    def __enter__(self) -> FileJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def append(self, records: Sequence[Record]) -> None:
        """Make these records durable, in one write and one fsync, then return.

        Raises:
            JournalError: a record does not continue the chain (nothing is written).
            JournalStopped: this or an earlier write or fsync failed.
        """
        self._check_writable()
        if not records:
            return
        next_seq, prev_hash = self.last_seq + 1, self.last_hash
        for record in records:
            problem = link_error(record, next_seq, prev_hash)
            if problem is not None:
                raise JournalError(f"refusing to append seq {record.seq}: {problem}")
            next_seq, prev_hash = next_seq + 1, record.hash
        self._commit(records[0].seq, encode_frames(records), next_seq - 1, prev_hash)

    def append_bodies(self, bodies: Sequence[RecordBody]) -> list[Record]:
        """Seal bodies onto the chain and make them durable (one fsync); return the records.

        Raises:
            JournalError: the bodies' seqs do not continue from last_seq (nothing is written).
            JournalStopped: this or an earlier write or fsync failed.
        """
        self._check_writable()
        if not bodies:
            return []
        expected = self.last_seq + 1
        if bodies[0].seq != expected:
            raise JournalError(
                f"refusing to append seq {bodies[0].seq}: seq {expected} was expected"
            )
        try:
            batch = seal_batch(self.last_hash, bodies)
        except ValueError as exc:
            raise JournalError(f"refusing to append: {exc}") from exc
        self._commit(expected, batch.data, batch.last_seq, batch.last_hash)
        return batch.records

    def append_sealed(self, batch: SealedBatch) -> None:
        """Make a batch sealed by ledger.frames.seal_batch durable (one write, one fsync).

        The sealing can then happen elsewhere, e.g. for the next batch while this one syncs.

        Raises:
            JournalError: the batch was not sealed after last_hash at last_seq + 1.
            JournalStopped: this or an earlier write or fsync failed.
        """
        self._check_writable()
        if batch.first_seq != self.last_seq + 1 or batch.prev_hash != self.last_hash:
            raise JournalError(
                f"refusing to append seqs {batch.first_seq}..{batch.last_seq}: they were not "
                f"sealed after seq {self.last_seq}"
            )
        self._commit(batch.first_seq, batch.data, batch.last_seq, batch.last_hash)

    def records(self, from_seq: int = 1) -> Iterator[Record]:
        """Yield the acknowledged records from from_seq on, re-validating what is read.

        Raises:
            JournalCorrupt: a segment changed on disk since it was validated.
        """
        first_seqs = [segment.first_seq for segment in self._segments]
        start = max(0, bisect.bisect_right(first_seqs, from_seq) - 1)
        for segment in self._segments[start:]:
            size = segment.size
            data = _read_file(segment.path, size)
            if len(data) != size:
                reason = f"segment shrank to {len(data)} bytes, {size} were validated"
                raise JournalCorrupt(segment.first_seq, segment.path, len(data), reason)
            # Bytes up to `size` were valid and synced: any failure now is damage, never torn.
            reader = SegmentReader(
                data, next_seq=segment.first_seq, prev_hash=segment.prev_hash, last=False
            )
            for record in reader:
                if record.seq >= from_seq:
                    yield record
            if reader.damage is not None:
                damage = reader.damage
                raise JournalCorrupt(damage.seq, segment.path, damage.offset, damage.reason)

    def write_snapshot(self, seq: int, state_hash: bytes, state: bytes) -> None:
        """Store the caller's state after record seq, atomically (temp, fsync, rename, fsync).

        Raises:
            ValueError: seq is not between 0 and last_seq.
            JournalError: the snapshot could not be written (the journal itself carries on).
        """
        self._check_writable()
        if not 0 <= seq <= self.last_seq:
            raise ValueError(f"snapshot seq {seq} is not between 0 and last seq {self.last_seq}")
        body = _snapshot_encoder.encode(
            _SnapshotFile(seq, self._hash_at(seq), bytes(state_hash), bytes(state))
        )
        data = _SNAPSHOT_MAGIC + _SNAPSHOT_CRC.pack(crc32c.crc32c(body)) + body
        final = os.path.join(self._snapshot_dir, f"{seq:0{SEQ_DIGITS}d}{SNAPSHOT_SUFFIX}")
        temp = final + TEMP_SUFFIX
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                # In steps, each made durable before the next: one fsync of the whole file
                # (tens of MB) queued the journal's own fsyncs behind it, and the appends of a
                # running exchange stalled 15-25 ms (bench/gateway_bench.py).
                view = memoryview(data)
                for start in range(0, len(view), SNAPSHOT_FLUSH_BYTES):
                    _write_all(fd, view[start : start + SNAPSHOT_FLUSH_BYTES], start)
                    os.fdatasync(fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temp, final)
            _fsync_dir(self._snapshot_dir)
        except OSError as exc:
            _remove_quietly(temp)
            raise JournalError(f"snapshot at seq {seq} not written: {exc}") from exc

    def latest_snapshot(self) -> Snapshot | None:
        """Return the newest snapshot that validates, or None; list skipped ones.

        Each damaged or foreign snapshot passed over is recorded in `skipped_snapshots` as
        (path, reason), newest first.
        """
        skipped: list[tuple[str, str]] = []
        self.skipped_snapshots = skipped
        for seq, path in reversed(_list_snapshots(self._snapshot_dir)):
            snapshot, problem = self._load_snapshot(seq, path)
            if snapshot is not None:
                return snapshot
            skipped.append((path, problem))
        return None

    def close(self) -> None:
        """Cut the zeros written ahead, release the file and the lock; appends then raise."""
        if self._fd is not None:
            if self._failure is None:
                # Only space goes: a failure leaves it, and zeros after the frames are valid.
                with contextlib.suppress(OSError):
                    self._cut_to_frames()
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_writable(self) -> None:
        if self._failure is not None:
            raise JournalStopped(
                f"journal stopped by an earlier failure ({self._failure}); nothing after seq "
                f"{self.last_seq} is durable; reopen to recover"
            ) from self._failure
        if self._fd is None:
            raise JournalError("journal is closed")

    def _commit(self, first_seq: int, data: bytes, last_seq: int, last_hash: bytes) -> None:
        # Write the batch, fsync once, and only then move the acknowledged position.
        tail = self._segments[-1]
        try:
            if tail.size >= self._segment_bytes_max:
                tail = self._start_segment(first_seq)
            assert self._fd is not None
            end = tail.size + len(data)
            _write_all(self._fd, data, tail.size)
            if end > self._zeroed_end:  # In the same fdatasync as the batch.
                _write_all(self._fd, _ZEROS, end)
                self._zeroed_end = end + ZERO_AHEAD_BYTES
            os.fdatasync(self._fd)
        except OSError as exc:
            self._failure = exc
            raise JournalStopped(
                f"journal stopped: {exc}; nothing after seq {self.last_seq} is acknowledged"
            ) from exc
        tail.size += len(data)
        self.last_seq = last_seq
        self.last_hash = last_hash

    def _start_segment(self, first_seq: int) -> _Segment:
        # The previous segment was synced with its last batch: cut its zeros (a segment that is
        # not the last holds frames only), then create the next one and make its directory
        # entry durable before any frame goes into it.
        self._cut_to_frames()
        path = _create_segment(self._journal_dir, first_seq)
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        assert self._fd is not None
        os.close(self._fd)
        self._fd = fd
        self._zeroed_end = 0
        segment = _Segment(first_seq, path, self.last_hash, 0)
        self._segments.append(segment)
        return segment

    def _cut_to_frames(self) -> None:
        # Drop the zeros written ahead of the last segment's frames.
        tail = self._segments[-1]
        if self._zeroed_end > tail.size:
            assert self._fd is not None
            os.ftruncate(self._fd, tail.size)
            os.fsync(self._fd)
            self._zeroed_end = tail.size

    def segment_sizes(self) -> dict[str, int]:
        """Bytes of acknowledged frames in each segment file, by file name."""
        return {os.path.basename(segment.path): segment.size for segment in self._segments}

    def _hash_at(self, seq: int) -> bytes:
        if seq == 0:
            return GENESIS_HASH
        if seq == self.last_seq:
            return self.last_hash
        return self._record_at(seq).hash

    def _record_at(self, seq: int) -> Record:
        # Hop over the headers of an already validated segment to the one frame wanted.
        first_seqs = [segment.first_seq for segment in self._segments]
        segment = self._segments[bisect.bisect_right(first_seqs, seq) - 1]
        data = _read_file(segment.path, segment.size)
        try:
            offset = skip_frames(data, 0, seq - segment.first_seq)
            record = decode_frame(data, offset)
        except ValueError as exc:
            raise JournalCorrupt(seq, segment.path, 0, str(exc)) from exc
        if record.seq != seq:
            raise JournalCorrupt(seq, segment.path, offset, f"found seq {record.seq} there")
        return record

    def _load_snapshot(self, seq: int, path: str) -> tuple[Snapshot | None, str]:
        try:
            data = _read_file(path)
        except OSError as exc:
            return None, f"unreadable: {exc}"
        head = len(_SNAPSHOT_MAGIC) + _SNAPSHOT_CRC.size
        if len(data) < head or not data.startswith(_SNAPSHOT_MAGIC):
            return None, "not a snapshot file (bad magic or cut short)"
        body = data[head:]
        if crc32c.crc32c(body) != _SNAPSHOT_CRC.unpack_from(data, len(_SNAPSHOT_MAGIC))[0]:
            return None, "checksum mismatch"
        try:
            stored = _snapshot_decoder.decode(body)
        except msgspec.DecodeError as exc:
            return None, f"does not decode: {exc}"
        if stored.seq != seq:
            return None, f"holds seq {stored.seq} but is named for seq {seq}"
        if seq > self.last_seq:
            return None, f"seq {seq} is beyond the journal's last seq {self.last_seq}"
        if stored.head_hash != self._hash_at(seq):
            return None, f"head hash does not match the journal's record {seq}"
        return Snapshot(seq, stored.state_hash, stored.state, stored.head_hash), ""


def _repair(walk: _Walk, records: int) -> RecoveryReport:
    # Cut a torn tail off the last segment (and sync the cut) once the whole walk validated.
    torn_bytes = 0
    torn_path = torn_reason = None
    torn_seq = torn_offset = None
    if walk.torn is not None:
        torn_path, damage, size = walk.torn
        torn_bytes = size - damage.offset
        torn_seq, torn_offset, torn_reason = damage.seq, damage.offset, damage.reason
        fd = os.open(torn_path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, damage.offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    return RecoveryReport(
        records=records,
        last_seq=walk.next_seq - 1,
        last_hash=walk.prev_hash,
        segments=len(walk.segments),
        torn_bytes_truncated=torn_bytes,
        torn_path=torn_path,
        torn_seq=torn_seq,
        torn_offset=torn_offset,
        torn_reason=torn_reason,
    )


def _create_segment(journal_dir: str, first_seq: int) -> str:
    path = os.path.join(journal_dir, _segment_name(first_seq))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    os.close(fd)
    _fsync_dir(journal_dir)
    return path


def _lock(root: str) -> int:
    fd = os.open(os.path.join(root, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        os.close(fd)
        raise JournalError(f"journal at {root} is open in another writer") from exc
    return fd


def _list_snapshots(snapshot_dir: str) -> list[tuple[int, str]]:
    found = []
    for name in os.listdir(snapshot_dir):
        match = _SNAPSHOT_NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(snapshot_dir, name)))
    found.sort()
    return found


def _remove_temp_files(directory: str) -> None:
    # A crash mid-snapshot leaves a temporary file that was never renamed in: it means nothing.
    removed = False
    for name in os.listdir(directory):
        if name.endswith(TEMP_SUFFIX):
            os.unlink(os.path.join(directory, name))
            removed = True
    if removed:
        _fsync_dir(directory)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
