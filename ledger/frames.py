"""Journal frames: how records sit in a segment, and the one validator every reader uses.

Layout of a segment: frames back to back, nothing else.
    frame = u32 LE (flags << 30 | payload length) | u32 LE CRC32C | payload
    flags: MORE (bit 31): the record's bytes go on in the next frame;
           FOLLOWS (bit 30): the frame was written by the same append as the frame before it.
    CRC32C = crc32c(payload) when the flags are 0, else crc32c(flag byte || payload).
A record is one frame, or (longer than FRAME_PAYLOAD_BYTES_MAX) a run of frames, each but the
last with MORE, whose payloads joined are encode_record(record). Nothing bounds a record but
memory: a timer's record (a delisting cancels a whole book, an offering allocates to every
bidder) or a royalty paid to every holder can be any size, and must still be journaled.
Journals written before the flags existed have none: each frame a record and its own append,
which every rule below reads as before.

Invariants:
- A record is accepted only when all of these hold, checked in this order: each frame's header
  is complete, its length is positive and at most FRAME_PAYLOAD_BYTES_MAX and fits the buffer,
  its CRC32C matches (a frame after MORE must also carry FOLLOWS: one append wrote the whole
  record), the joined payload decodes to a Record, its seq is the next one, its prev_hash is the
  previous record's hash, and its hash recomputes from prev_hash and the canonical body bytes.
  A failure anywhere in a record is placed at its first frame: nothing of it is kept.
- Validation stops at the first frame that fails; nothing after it is ever yielded. Every
  failure names the seq expected at that place and the byte offset of the frame.
- A failure is a torn tail (a write cut short by power loss: the journal may drop it) only when
  everything from the failing frame to the end of the LAST segment is consistent with an
  unfinished append. Only the last append can be unfinished (each is synced before the next
  starts), and its pages may land in any order, the rest reading as the zeros written ahead.
  So no CRC-valid frame that STARTS an append (no FOLLOWS, and shaped like a record's first
  frame: a whole record ending in its two hash fields, or a full frame with MORE) may begin
  anywhere after the failing frame, and:
    * the remaining bytes are all zero (a preallocated or sector-zeroed end), or
    * the header itself is cut short by the end of the buffer, or
    * the header is all zeros (its page never landed; later pages of the append may have), or
    * the frame runs past the end, its present bytes start like the expected record (or are
      zeros, or it continues a record), and they do not already satisfy the CRC (that would be
      a damaged length field), or
    * the frame is complete but fails its CRC.
  A frame whose CRC holds but whose content is wrong (decode, seq, link, hash) is never torn:
  a torn write does not produce a matching CRC. Anything followed by a valid append start, and
  any failure in a segment that is not the last, is damage.
- A complete last append that is damaged later (a flipped bit) cannot be told from one that was
  never finished: a sector cut short by power loss need not read back as zeros, so a frame
  with no zero sector may still be torn. Recovery drops it as torn, and says so (file_store's
  RecoveryReport, logged by the server). SQLite's and PostgreSQL's logs end at the first bad
  frame alike; only an external high-water mark (an acknowledged seq kept elsewhere) catches it.
- A CRC-valid frame that is well placed proves nothing about a missing END of the journal:
  dropping whole frames at the very end (or the whole last segment) leaves a shorter valid
  journal. Only an external high-water mark (an acknowledged seq, a signed checkpoint) can
  catch that; everything else (reordering, gaps, duplicates, insertions) breaks seq or chain.
- Pure: bytes in, records and verdicts out. ledger/file_store.py is the only module that
  reads or writes files.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import crc32c
import msgspec

from ledger.records import HASH_BYTES, Record, RecordBody

FRAME_HEADER = struct.Struct("<II")
FRAME_HEADER_BYTES = FRAME_HEADER.size
# A frame's payload at most. A record is a few hundred bytes; a longer one than this spans
# frames (MORE), so a length above it is a damaged header, not a big record.
FRAME_PAYLOAD_BYTES_MAX = 1 << 24
FRAME_MORE = 1 << 31  # The record's bytes go on in the next frame.
FRAME_FOLLOWS = 1 << 30  # Written by the same append as the frame before it.
_LENGTH_MASK = FRAME_FOLLOWS - 1
# The CRC's start value for each flags value (word >> 30): 0 (plain crc32c) for none, else the
# crc32c of the flag byte, so the flags are covered too and a flagless frame reads as before.
_CRC_SEEDS = (0, *(crc32c.crc32c(bytes([flags])) for flags in (1, 2, 3)))

# The msgpack bytes that bracket a record: a 7-element fixarray in front (a body is the same
# with a 5-element one) and two bin8 fields of HASH_BYTES (prev_hash, hash) at the end.
_RECORD_ARRAY = b"\x97"
_HASH_FIELD = b"\xc4" + bytes([HASH_BYTES])
_HASH_FIELDS_BYTES = 2 * (len(_HASH_FIELD) + HASH_BYTES)  # prev_hash and hash, at the end.

# Same configuration as the canonical encoder in ledger/records.py, built once here so the hot
# loops below avoid a function layer; tests/ledger/test_frames.py checks the bytes agree.
_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoder = msgspec.msgpack.Decoder(Record)
_crc = crc32c.crc32c
_sha256 = hashlib.sha256
_pack_header = FRAME_HEADER.pack
_unpack_header = FRAME_HEADER.unpack_from

_ZERO_PROBE_BYTES = 4096


def frame_crc(payload: bytes | bytearray | memoryview, flags: int = 0) -> int:
    """Return the CRC32C that a frame with these header flags stores for this payload."""
    return _crc(payload, _CRC_SEEDS[flags >> 30])


def _frames(payload: bytes, follows: int) -> list[bytes]:
    # Headers and payloads of one record: one frame, or chunks chained by MORE. Every frame but
    # the first of an append carries FOLLOWS (`follows` says whether this record's first does).
    if len(payload) <= FRAME_PAYLOAD_BYTES_MAX:
        return [_pack_header(len(payload) | follows, _crc(payload, _CRC_SEEDS[follows >> 30])),
                payload]  # fmt: skip
    parts: list[bytes] = []
    for start in range(0, len(payload), FRAME_PAYLOAD_BYTES_MAX):
        chunk = payload[start : start + FRAME_PAYLOAD_BYTES_MAX]
        flags = follows | (FRAME_MORE if start + len(chunk) < len(payload) else 0)
        parts += (_pack_header(len(chunk) | flags, _crc(chunk, _CRC_SEEDS[flags >> 30])), chunk)
        follows = FRAME_FOLLOWS
    return parts


def frame_payload(payload: bytes) -> bytes:
    """Wrap an already encoded record payload in frames, as the first record of an append.

    Raises:
        ValueError: the payload is empty, so no reader would accept the frame.
    """
    if not payload:
        raise ValueError("an empty frame payload cannot be stored")
    return b"".join(_frames(payload, 0))


def encode_frame(record: Record) -> bytes:
    """Return the frames that store this record, written as an append of its own."""
    return frame_payload(_encoder.encode(record))


def encode_frames(records: Sequence[Record]) -> bytes:
    """Return the frames of these records back to back: the bytes of one append."""
    parts: list[bytes] = []
    follows = 0
    for record in records:
        parts += _frames(_encoder.encode(record), follows)
        follows = FRAME_FOLLOWS
    return b"".join(parts)


def seal_frames(prev_hash: bytes, bodies: Sequence[RecordBody]) -> tuple[list[Record], bytes]:
    """Seal bodies onto the chain after prev_hash and frame them in one pass.

    Equal to [seal(...)] and encode_frames(...) but encodes each body once: a record's
    encoding is its body's encoding with the array header widened and the two hashes appended.

    Raises:
        ValueError: prev_hash is not HASH_BYTES long (every hash in a chain is), or the seqs of
            the bodies are not consecutive.
    """
    hashes, data = _seal(prev_hash, bodies)
    return _records(prev_hash, bodies, hashes), data


def _seal(prev_hash: bytes, bodies: Sequence[RecordBody]) -> tuple[list[bytes], bytes]:
    # The hashes and the frames of seal_frames, without the Record objects (0.45 us each,
    # a fifth of the sealing, which a sequencer writing its batch never reads).
    if len(prev_hash) != HASH_BYTES:
        raise ValueError(f"prev_hash has {len(prev_hash)} bytes, expected {HASH_BYTES}")
    hashes: list[bytes] = []
    parts: list[bytes] = []
    encode = _encoder.encode
    next_seq = bodies[0].seq if bodies else 0
    follows = 0  # The batch is one append: every frame after its first carries FOLLOWS.
    seed = 0
    for body in bodies:
        if body.seq != next_seq:
            raise ValueError(f"body seq {body.seq} where seq {next_seq} was expected")
        next_seq += 1
        canonical = encode(body)
        digest = _sha256(prev_hash)
        digest.update(canonical)
        record_digest = digest.digest()
        hashes.append(record_digest)
        payload = b"".join(
            (_RECORD_ARRAY, canonical[1:], _HASH_FIELD, prev_hash, _HASH_FIELD, record_digest)
        )
        if len(payload) <= FRAME_PAYLOAD_BYTES_MAX:
            parts.append(_pack_header(len(payload) | follows, _crc(payload, seed)))
            parts.append(payload)
        else:
            parts += _frames(payload, follows)
        follows = FRAME_FOLLOWS
        seed = _CRC_SEEDS[1]
        prev_hash = record_digest
    return hashes, b"".join(parts)


def _records(prev_hash: bytes, bodies: Sequence[RecordBody], hashes: list[bytes]) -> list[Record]:
    prevs = [prev_hash, *hashes][: len(hashes)]  # Each record's previous hash.
    return [
        Record(body.seq, body.ts_ns, body.kind, body.command, body.postings, prev, digest)
        for body, prev, digest in zip(bodies, prevs, hashes, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class SealedBatch:
    """Bodies sealed onto the chain after prev_hash, and their frames: the bytes of one write.

    Made by seal_batch(), so hashes and data always agree. Sealing is pure and needs only the
    previous batch's last hash, so a sequencer can seal batch N+1 while batch N is being synced
    (FileJournal.append_sealed in a writer thread): pipelined group commit.
    """

    prev_hash: bytes
    bodies: Sequence[RecordBody]
    hashes: list[bytes]  # Each body's record hash, in order.
    data: bytes

    @property
    def records(self) -> list[Record]:
        """The sealed records, built on demand (writing the batch does not need them)."""
        return _records(self.prev_hash, self.bodies, self.hashes)

    @property
    def first_seq(self) -> int:
        return self.bodies[0].seq

    @property
    def last_seq(self) -> int:
        return self.bodies[-1].seq

    @property
    def last_hash(self) -> bytes:
        return self.hashes[-1]


def seal_batch(prev_hash: bytes, bodies: Sequence[RecordBody]) -> SealedBatch:
    """Seal and frame a non-empty batch of consecutive bodies after prev_hash.

    Raises:
        ValueError: no bodies, or as seal_frames.
    """
    if not bodies:
        raise ValueError("a sealed batch holds at least one record")
    hashes, data = _seal(prev_hash, bodies)
    return SealedBatch(prev_hash, bodies, hashes, data)


def recompute_hash(record: Record) -> bytes:
    """Return sha256(prev_hash || canonical body bytes) for a record, as records.record_hash."""
    digest = _sha256(record.prev_hash)
    # A tuple of the body fields encodes to the same msgpack array as the array-like RecordBody.
    digest.update(
        _encoder.encode((record.seq, record.ts_ns, record.kind, record.command, record.postings))
    )
    return digest.digest()


def link_error(record: Record, next_seq: int, prev_hash: bytes) -> str | None:
    """Return why a record cannot follow (next_seq, prev_hash) on the chain, or None if it can."""
    if record.seq != next_seq:
        return f"seq {record.seq} where seq {next_seq} was expected"
    if record.prev_hash != prev_hash:
        return "prev_hash does not link to the previous record's hash"
    if recompute_hash(record) != record.hash:
        return "hash does not recompute from prev_hash and the record body"
    return None


@dataclass(frozen=True, slots=True)
class Damage:
    """The first frame of a segment that failed validation."""

    seq: int  # The seq expected at this place: the first one that cannot be trusted.
    offset: int  # Byte offset of the failing frame within the segment.
    reason: str
    torn: bool  # A torn tail (an unfinished append) that recovery may truncate.


class SegmentReader:
    """Walk the frames of one segment buffer, validating each against the chain.

    Iterating yields valid records in order and stops at the end of the buffer or at the
    first bad frame; afterwards `damage` says which (None for a clean end), and `offset`,
    `next_seq` and `prev_hash` describe the chain after the last valid frame.

    Args:
        buffer: the segment bytes (bytes or bytearray; a bytearray must not change while read).
        next_seq: the seq the first frame must carry.
        prev_hash: the hash the first frame's prev_hash must equal.
        last: whether this is the last segment, the only place a torn tail may sit.
        offset: where to start; a frame boundary already validated up to (next_seq, prev_hash).
    """

    __slots__ = ("_buffer", "damage", "last", "next_seq", "offset", "prev_hash")

    def __init__(
        self,
        buffer: bytes | bytearray,
        *,
        next_seq: int,
        prev_hash: bytes,
        last: bool,
        offset: int = 0,
    ) -> None:
        if len(prev_hash) != HASH_BYTES:
            raise ValueError(f"prev_hash has {len(prev_hash)} bytes, expected {HASH_BYTES}")
        self._buffer = buffer
        self.next_seq = next_seq
        self.prev_hash = prev_hash
        self.last = last
        self.offset = offset
        self.damage: Damage | None = None

    def run(self) -> Damage | None:
        """Validate to the end without keeping the records; return the damage, if any."""
        for _ in self:
            pass
        return self.damage

    def __iter__(self) -> Iterator[Record]:
        buffer = self._buffer
        view = memoryview(buffer)
        end = len(buffer)
        offset = self.offset
        seq = self.next_seq
        prev_hash = self.prev_hash
        encode_into = _encoder.encode_into
        decode = _decoder.decode
        crc = _crc
        seeds = _CRC_SEEDS
        sha256 = _sha256
        unpack = _unpack_header
        # The hash input, prev_hash || canonical body, is built in one reused buffer: the body
        # is re-encoded from the decoded record (so a non-canonical payload cannot pass), and a
        # tuple of the body fields encodes to the same array as the array-like RecordBody.
        hash_input = bytearray(HASH_BYTES)
        try:
            while offset < end:
                start = offset + FRAME_HEADER_BYTES
                if start > end:
                    self._fail(offset, offset, seq, "header")
                    return
                word, stored_crc = unpack(buffer, offset)
                length = word & _LENGTH_MASK
                stop = start + length
                if length == 0 or length > FRAME_PAYLOAD_BYTES_MAX or stop > end:
                    self._fail(offset, offset, seq, "length")
                    return
                payload: bytes | memoryview = view[start:stop]
                if crc(payload, seeds[word >> 30]) != stored_crc:
                    self._fail(offset, offset, seq, "crc")
                    return
                if word & FRAME_MORE:
                    joined = self._join(view, offset, stop, seq)
                    if joined is None:
                        return
                    payload, stop = joined
                try:
                    record = decode(payload)
                except msgspec.DecodeError as exc:
                    self._set_damage(offset, seq, f"payload does not decode: {exc}")
                    return
                hash_input[:HASH_BYTES] = prev_hash
                encode_into(
                    (record.seq, record.ts_ns, record.kind, record.command, record.postings),
                    hash_input,
                    HASH_BYTES,
                )
                record_digest = sha256(hash_input).digest()
                if (
                    record.seq != seq
                    or record.prev_hash != prev_hash
                    or record.hash != record_digest
                ):
                    self._set_damage(offset, seq, link_error(record, seq, prev_hash) or "")
                    return
                offset = stop
                seq += 1
                prev_hash = record_digest
                yield record
        finally:
            # Also reached when the consumer stops early: the state then describes the chain
            # just after the last record it was given.
            view.release()
            self.offset = offset
            self.next_seq = seq
            self.prev_hash = prev_hash

    def _join(
        self, view: memoryview, record_start: int, offset: int, seq: int
    ) -> tuple[bytes, int] | None:
        # The payload of a record longer than one frame, from its first frame (at record_start,
        # already checked) and the frames after it up to the one without MORE; with the offset
        # after the last. None when one of them fails: the damage is then set.
        buffer = self._buffer
        end = len(buffer)
        first_stop = offset
        parts = [bytes(view[record_start + FRAME_HEADER_BYTES : first_stop])]
        while True:
            start = offset + FRAME_HEADER_BYTES
            if start > end:
                self._fail(offset, record_start, seq, "header")
                return None
            word, stored_crc = _unpack_header(buffer, offset)
            length = word & _LENGTH_MASK
            stop = start + length
            if length == 0 or length > FRAME_PAYLOAD_BYTES_MAX or stop > end:
                self._fail(offset, record_start, seq, "length")
                return None
            chunk = view[start:stop]
            if _crc(chunk, _CRC_SEEDS[word >> 30]) != stored_crc:
                self._fail(offset, record_start, seq, "crc")
                return None
            if not word & FRAME_FOLLOWS:
                reason = f"the frame at {offset} continues a record but starts an append"
                self._set_damage(record_start, seq, reason)
                return None
            parts.append(bytes(chunk))
            offset = stop
            if not word & FRAME_MORE:
                return b"".join(parts), offset

    def _set_damage(self, offset: int, seq: int, reason: str, *, torn: bool = False) -> None:
        self.damage = Damage(seq, offset, reason, torn)

    def _fail(self, offset: int, record_start: int, seq: int, failure: str) -> None:
        # Decide between a torn tail and damage for a frame (at offset, of the record starting
        # at record_start) that failed before its content could be trusted (header, length or
        # CRC); see the module docstring for the rules. Either is placed at record_start.
        buffer = self._buffer
        end = len(buffer)
        remaining = end - offset
        where = "" if offset == record_start else f" (its frame at {offset})"
        if self.last and _all_zero(buffer, offset, end):
            reason = f"torn tail: {remaining} zero bytes{where}"
            self._set_damage(record_start, seq, reason, torn=True)
            return
        if failure == "header":
            if self.last:
                reason = f"torn tail: frame header cut short ({remaining} of 8 bytes){where}"
                self._set_damage(record_start, seq, reason, torn=True)
            else:
                self._set_damage(record_start, seq, f"{remaining} stray bytes end the segment")
            return
        word, stored_crc = _unpack_header(buffer, offset)
        reason, torn = (
            self._classify_length(offset, record_start, seq, word, stored_crc)
            if failure == "length"
            else self._classify_crc(offset, word, stored_crc)
        )
        self._set_damage(record_start, seq, reason + where, torn=torn)

    def _classify_length(
        self, offset: int, record_start: int, seq: int, word: int, stored_crc: int
    ) -> tuple[str, bool]:
        buffer = self._buffer
        start = offset + FRAME_HEADER_BYTES
        present = len(buffer) - start
        length = word & _LENGTH_MASK
        if length == 0:
            # A zeroed header: its sector never landed. Later sectors of the same append may
            # have (they land in any order), but no later append may follow. Its flag byte may
            # sit in the next sector and have landed: the length alone is zero then.
            if not self.last:
                return "zero-length frame in a segment that is not the last", False
            follower = _append_start_after(buffer, start)
            if follower is not None:
                return f"zero-length frame but a valid frame follows at {follower}", False
            return "torn tail: a zeroed frame header inside the last append", True
        if length > FRAME_PAYLOAD_BYTES_MAX:
            return f"frame length {length} exceeds the maximum {FRAME_PAYLOAD_BYTES_MAX}", False
        where = f"frame length {length} runs past the end ({present} payload bytes present)"
        if not self.last:
            return f"{where} in a segment that is not the last", False
        if offset == record_start and not _starts_like_record(buffer, start, seq):
            return f"{where} and its bytes do not start record {seq}", False
        present_bytes = memoryview(buffer)[start:]
        # Under any flags: the damage may have reached them too.
        if present > 0 and any(_crc(present_bytes, seed) == stored_crc for seed in _CRC_SEEDS):
            return f"{where} but the present bytes match its CRC: damaged length field", False
        follower = _append_start_after(buffer, start)
        if follower is not None:
            return f"{where} but a valid frame follows at {follower}", False
        return f"torn tail: {where}", True

    def _classify_crc(self, offset: int, word: int, stored_crc: int) -> tuple[str, bool]:
        buffer = self._buffer
        start = offset + FRAME_HEADER_BYTES
        stop = start + (word & _LENGTH_MASK)
        computed = _crc(memoryview(buffer)[start:stop], _CRC_SEEDS[word >> 30])
        mismatch = f"CRC mismatch (stored {stored_crc:08x}, computed {computed:08x})"
        if not self.last:
            return mismatch, False
        follower = _append_start_after(buffer, start)
        if follower is not None:
            return f"{mismatch} and a valid frame starts at {follower}", False
        return f"torn tail: last append's frame {mismatch}", True


def _all_zero(buffer: bytes | bytearray, start: int, end: int) -> bool:
    # Probe a small window first so damage in a large segment is decided without a full scan.
    probe_end = min(end, start + _ZERO_PROBE_BYTES)
    if buffer.count(0, start, probe_end) != probe_end - start:
        return False
    return buffer.count(0, start, end) == end - start


def _starts_like_record(buffer: bytes | bytearray, start: int, seq: int) -> bool:
    # The first bytes of record `seq` are known exactly: the array header and the seq. A torn
    # write keeps a prefix of them, possibly followed by zeros where sectors never landed.
    expected = _RECORD_ARRAY + _encoder.encode(seq)
    present = bytes(buffer[start : start + len(expected)]).rstrip(b"\x00")
    return expected.startswith(present)


def _append_start_after(buffer: bytes | bytearray, start: int) -> int | None:
    # Every append opens with a record, whose payload opens with the 7-element array byte, in a
    # frame without FOLLOWS: try each such byte as the start of a payload whose header sits just
    # before it. Return the offset of the first CRC-valid one.
    end = len(buffer)
    view = memoryview(buffer)
    try:
        position = buffer.find(_RECORD_ARRAY, start + FRAME_HEADER_BYTES)
        while position != -1:
            word, stored_crc = _unpack_header(buffer, position - FRAME_HEADER_BYTES)
            length = word & _LENGTH_MASK
            if (
                not word & FRAME_FOLLOWS
                and 0 < length <= end - position
                and _shaped_like_a_record_start(buffer, position, word, length)
                and _crc(view[position : position + length], _CRC_SEEDS[word >> 30]) == stored_crc
            ):
                return position - FRAME_HEADER_BYTES
            position = buffer.find(_RECORD_ARRAY, position + 1)
        return None
    finally:
        view.release()


def _shaped_like_a_record_start(
    buffer: bytes | bytearray, position: int, word: int, length: int
) -> bool:
    # O(1) checks that every frame opening a record passes, made before its CRC: the CRC reads
    # up to `length` bytes, and a torn multi-frame record holds a 0x97 byte every ~256 bytes,
    # so CRC-checking each candidate made the scan of a 64 MiB torn tail take seconds (and
    # grow with its square). A record's first frame is either a whole record, whose payload
    # ends with its two hash fields, or a full frame chained by MORE.
    if word & FRAME_MORE:
        return length == FRAME_PAYLOAD_BYTES_MAX
    end = position + length
    return (
        length > _HASH_FIELDS_BYTES
        and buffer[end - _HASH_FIELDS_BYTES : end - _HASH_FIELDS_BYTES + 2] == _HASH_FIELD
        and buffer[end - HASH_BYTES - 2 : end - HASH_BYTES] == _HASH_FIELD
    )


def skip_frames(buffer: bytes | bytearray, offset: int, count: int) -> int:
    """Return the offset `count` records after `offset`, reading only headers.

    For bytes that were validated before (an open journal's own segments): nothing is checked
    but that each header fits; use SegmentReader for anything else.

    Raises:
        ValueError: a header or frame runs past the end of the buffer.
    """
    end = len(buffer)
    for _ in range(count):
        more = True
        while more:
            if offset + FRAME_HEADER_BYTES > end:
                raise ValueError(f"no frame header at offset {offset}")
            word = _unpack_header(buffer, offset)[0]
            offset += FRAME_HEADER_BYTES + (word & _LENGTH_MASK)
            if offset > end:
                raise ValueError(f"frame runs past the end at offset {offset}")
            more = bool(word & FRAME_MORE)
    return offset


def decode_frame(buffer: bytes | bytearray, offset: int) -> Record:
    """Decode the record whose first frame is at offset, checking each frame's CRC and the
    record's own hash (not its link).

    Raises:
        ValueError: a frame is cut short or fails its CRC, or the record does not decode or
            its hash does not recompute.
    """
    parts: list[bytes] = []
    position = offset
    more = True
    while more:
        if position + FRAME_HEADER_BYTES > len(buffer):
            raise ValueError(f"no frame header at offset {position}")
        word, stored_crc = _unpack_header(buffer, position)
        length = word & _LENGTH_MASK
        start = position + FRAME_HEADER_BYTES
        payload = bytes(buffer[start : start + length])
        if len(payload) != length or length == 0:
            raise ValueError(f"frame at offset {position} is cut short")
        if _crc(payload, _CRC_SEEDS[word >> 30]) != stored_crc:
            raise ValueError(f"frame at offset {position} fails its CRC")
        parts.append(payload)
        position = start + length
        more = bool(word & FRAME_MORE)
    try:
        record = _decoder.decode(parts[0] if len(parts) == 1 else b"".join(parts))
    except msgspec.DecodeError as exc:
        raise ValueError(f"frame at offset {offset} does not decode: {exc}") from exc
    if recompute_hash(record) != record.hash:
        raise ValueError(f"record at offset {offset} has a hash that does not recompute")
    return record
