"""Journal frames: how records sit in a segment, and the one validator every reader uses.

Layout of a segment: frames back to back, nothing else.
    frame = u32 LE payload length | u32 LE CRC32C(payload) | payload (= encode_record(record))

Invariants:
- A frame is accepted only when all of these hold, checked in this order: the header is complete,
  the length is positive and at most FRAME_PAYLOAD_BYTES_MAX and fits the buffer, the CRC32C
  matches, the payload decodes to a Record, its seq is the next one, its prev_hash is the
  previous record's hash, and its hash recomputes from prev_hash and the canonical body bytes.
- Validation stops at the first frame that fails; nothing after it is ever yielded. Every
  failure names the seq expected at that place and the byte offset of the frame.
- A failure is a torn tail (a write cut short by power loss: the journal may drop it) only when
  everything from the failing frame to the end of the LAST segment is consistent with an
  unfinished append, that is:
    * the remaining bytes are all zero (a preallocated or sector-zeroed end), or
    * the header itself is cut short by the end of the buffer, or
    * the frame runs past the end, its present bytes start like the expected record (or are
      zeros), they do not already satisfy the CRC (that would be a damaged length field), and no
      CRC-valid frame starts anywhere after it, or
    * the frame is complete but fails its CRC, only zeros follow it, and no CRC-valid frame
      starts anywhere inside or after it.
  A frame whose CRC holds but whose content is wrong (decode, seq, link, hash) is never torn:
  a torn write does not produce a matching CRC. Anything followed by a valid frame, and any
  failure in a segment that is not the last, is damage.
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
# A record is a few hundred bytes; a length above this is a damaged header, not a big record.
FRAME_PAYLOAD_BYTES_MAX = 1 << 24

# The msgpack bytes that bracket a record: a 7-element fixarray in front (a body is the same
# with a 5-element one) and two bin8 fields of HASH_BYTES (prev_hash, hash) at the end.
_RECORD_ARRAY = b"\x97"
_HASH_FIELD = b"\xc4" + bytes([HASH_BYTES])

# Same configuration as the canonical encoder in ledger/records.py, built once here so the hot
# loops below avoid a function layer; tests/ledger/test_frames.py checks the bytes agree.
_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoder = msgspec.msgpack.Decoder(Record)
_crc = crc32c.crc32c
_sha256 = hashlib.sha256
_pack_header = FRAME_HEADER.pack
_unpack_header = FRAME_HEADER.unpack_from

_ZERO_PROBE_BYTES = 4096


def frame_crc(payload: bytes | bytearray | memoryview) -> int:
    """Return the CRC32C that a frame stores for this payload."""
    return _crc(payload)


def frame_payload(payload: bytes) -> bytes:
    """Wrap an already encoded payload in a frame header.

    Raises:
        ValueError: the payload is empty or longer than FRAME_PAYLOAD_BYTES_MAX, so no reader
            would accept the frame.
    """
    if not 0 < len(payload) <= FRAME_PAYLOAD_BYTES_MAX:
        raise ValueError(f"a frame payload of {len(payload)} bytes cannot be stored")
    return _pack_header(len(payload), _crc(payload)) + payload


def encode_frame(record: Record) -> bytes:
    """Return the frame that stores this record."""
    return frame_payload(_encoder.encode(record))


def encode_frames(records: Sequence[Record]) -> bytes:
    """Return the frames of these records back to back: the bytes of one write."""
    return b"".join([frame_payload(_encoder.encode(record)) for record in records])


def seal_frames(prev_hash: bytes, bodies: Sequence[RecordBody]) -> tuple[list[Record], bytes]:
    """Seal bodies onto the chain after prev_hash and frame them in one pass.

    Equal to [seal(...)] and encode_frames(...) but encodes each body once: a record's
    encoding is its body's encoding with the array header widened and the two hashes appended.

    Raises:
        ValueError: prev_hash is not HASH_BYTES long (every hash in a chain is), the seqs of
            the bodies are not consecutive, or a record is longer than FRAME_PAYLOAD_BYTES_MAX.
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
        if len(payload) > FRAME_PAYLOAD_BYTES_MAX:
            raise ValueError(f"record {body.seq} is {len(payload)} bytes, more than a frame holds")
        parts.append(_pack_header(len(payload), _crc(payload)))
        parts.append(payload)
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
                    self._fail(offset, seq, "header")
                    return
                length, stored_crc = unpack(buffer, offset)
                stop = start + length
                if length == 0 or length > FRAME_PAYLOAD_BYTES_MAX or stop > end:
                    self._fail(offset, seq, "length")
                    return
                payload = view[start:stop]
                if crc(payload) != stored_crc:
                    self._fail(offset, seq, "crc")
                    return
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

    def _set_damage(self, offset: int, seq: int, reason: str, *, torn: bool = False) -> None:
        self.damage = Damage(seq, offset, reason, torn)

    def _fail(self, offset: int, seq: int, failure: str) -> None:
        # Decide between a torn tail and damage for a frame that failed before its content
        # could be trusted (header, length or CRC); see the module docstring for the rules.
        buffer = self._buffer
        end = len(buffer)
        remaining = end - offset
        if self.last and _all_zero(buffer, offset, end):
            self._set_damage(offset, seq, f"torn tail: {remaining} zero bytes", torn=True)
            return
        if failure == "header":
            if self.last:
                reason = f"torn tail: frame header cut short ({remaining} of 8 bytes)"
                self._set_damage(offset, seq, reason, torn=True)
            else:
                self._set_damage(offset, seq, f"{remaining} stray bytes end the segment")
            return
        length, stored_crc = _unpack_header(buffer, offset)
        if failure == "length":
            self._fail_length(offset, seq, length, stored_crc)
        else:
            self._fail_crc(offset, seq, length, stored_crc)

    def _fail_length(self, offset: int, seq: int, length: int, stored_crc: int) -> None:
        buffer = self._buffer
        start = offset + FRAME_HEADER_BYTES
        present = len(buffer) - start
        if length == 0:
            # An all-zero tail of the last segment was already taken as torn.
            where = (
                "followed by nonzero bytes" if self.last else "in a segment that is not the last"
            )
            self._set_damage(offset, seq, f"zero-length frame {where}")
            return
        if length > FRAME_PAYLOAD_BYTES_MAX:
            reason = f"frame length {length} exceeds the maximum {FRAME_PAYLOAD_BYTES_MAX}"
            self._set_damage(offset, seq, reason)
            return
        where = f"frame length {length} runs past the end ({present} payload bytes present)"
        if not self.last:
            self._set_damage(offset, seq, f"{where} in a segment that is not the last")
            return
        if not _starts_like_record(buffer, start, seq):
            self._set_damage(offset, seq, f"{where} and its bytes do not start record {seq}")
            return
        if present > 0 and _crc(memoryview(buffer)[start:]) == stored_crc:
            reason = f"{where} but the present bytes match its CRC: damaged length field"
            self._set_damage(offset, seq, reason)
            return
        follower = _valid_frame_after(buffer, start)
        if follower is not None:
            self._set_damage(offset, seq, f"{where} but a valid frame follows at {follower}")
            return
        self._set_damage(offset, seq, f"torn tail: {where}", torn=True)

    def _fail_crc(self, offset: int, seq: int, length: int, stored_crc: int) -> None:
        buffer = self._buffer
        stop = offset + FRAME_HEADER_BYTES + length
        computed = _crc(memoryview(buffer)[offset + FRAME_HEADER_BYTES : stop])
        mismatch = f"CRC mismatch (stored {stored_crc:08x}, computed {computed:08x})"
        if not self.last:
            self._set_damage(offset, seq, mismatch)
            return
        if not _all_zero(buffer, stop, len(buffer)):
            self._set_damage(offset, seq, f"{mismatch} and nonzero bytes follow at {stop}")
            return
        follower = _valid_frame_after(buffer, offset + FRAME_HEADER_BYTES)
        if follower is not None:
            self._set_damage(offset, seq, f"{mismatch} and a valid frame starts at {follower}")
            return
        self._set_damage(offset, seq, f"torn tail: last frame {mismatch}", torn=True)


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


def _valid_frame_after(buffer: bytes | bytearray, start: int) -> int | None:
    # Every record payload opens with the 7-element array byte; try each such byte as the
    # start of a payload whose header sits just before it. Return the first CRC-valid frame.
    end = len(buffer)
    view = memoryview(buffer)
    try:
        position = buffer.find(_RECORD_ARRAY, start + FRAME_HEADER_BYTES)
        while position != -1:
            length, stored_crc = _unpack_header(buffer, position - FRAME_HEADER_BYTES)
            if 0 < length <= end - position and _crc(view[position : position + length]) == (
                stored_crc
            ):
                return position - FRAME_HEADER_BYTES
            position = buffer.find(_RECORD_ARRAY, position + 1)
        return None
    finally:
        view.release()


def skip_frames(buffer: bytes | bytearray, offset: int, count: int) -> int:
    """Return the offset `count` frames after `offset`, reading only headers.

    For bytes that were validated before (an open journal's own segments): nothing is checked
    but that each header fits; use SegmentReader for anything else.

    Raises:
        ValueError: a header or frame runs past the end of the buffer.
    """
    end = len(buffer)
    for _ in range(count):
        if offset + FRAME_HEADER_BYTES > end:
            raise ValueError(f"no frame header at offset {offset}")
        length = _unpack_header(buffer, offset)[0]
        offset += FRAME_HEADER_BYTES + length
        if offset > end:
            raise ValueError(f"frame runs past the end at offset {offset}")
    return offset


def decode_frame(buffer: bytes | bytearray, offset: int) -> Record:
    """Decode the frame at offset, checking its CRC and its own hash (not its link).

    Raises:
        ValueError: the frame is cut short, fails its CRC, does not decode or its hash does
            not recompute.
    """
    if offset + FRAME_HEADER_BYTES > len(buffer):
        raise ValueError(f"no frame header at offset {offset}")
    length, stored_crc = _unpack_header(buffer, offset)
    start = offset + FRAME_HEADER_BYTES
    payload = bytes(buffer[start : start + length])
    if len(payload) != length or length == 0:
        raise ValueError(f"frame at offset {offset} is cut short")
    if _crc(payload) != stored_crc:
        raise ValueError(f"frame at offset {offset} fails its CRC")
    try:
        record = _decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"frame at offset {offset} does not decode: {exc}") from exc
    if recompute_hash(record) != record.hash:
        raise ValueError(f"record at offset {offset} has a hash that does not recompute")
    return record
