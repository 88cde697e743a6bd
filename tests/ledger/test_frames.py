"""Frames and the one validator, in memory: what is accepted, what is torn, what is damage.

Replay the randomized parts: IPX_SEED=<seed> .venv/bin/pytest tests/ledger/test_frames.py
"""

from __future__ import annotations

import os
import random
import struct

import crc32c
import pytest

from ledger import frames
from ledger.frames import (
    FRAME_FOLLOWS,
    FRAME_HEADER_BYTES,
    FRAME_PAYLOAD_BYTES_MAX,
    Damage,
    SegmentReader,
    decode_frame,
    encode_frame,
    encode_frames,
    frame_crc,
    frame_payload,
    link_error,
    recompute_hash,
    seal_batch,
    seal_frames,
    skip_frames,
)
from ledger.records import (
    GENESIS_HASH,
    Bucket,
    Posting,
    Record,
    RecordBody,
    canonical_bytes,
    encode_record,
    record_hash,
    seal,
)

SEED = int(os.environ.get("IPX_SEED") or random.SystemRandom().randrange(1 << 32))


def random_body(rng: random.Random, seq: int) -> RecordBody:
    postings = tuple(
        Posting(
            rng.choice(["USD", "EUR", "RS-US10123456B2"]),
            rng.randint(1, 1 << rng.choice([8, 16, 40, 63])),
            rng.choice(["@bank", "@issuance", "alice", "bob", "x" * rng.randint(1, 40)]),
            rng.choice(list(Bucket)),
            rng.choice(["alice", "bob", "carol"]),
            rng.choice(list(Bucket)),
        )
        for _ in range(rng.randint(0, 5))
    )
    return RecordBody(
        seq,
        rng.randint(0, 1 << 63),
        rng.choice(["place_order", "deposit", "issue_shares", "k" * rng.randint(0, 300)]),
        rng.randbytes(rng.choice([0, 1, 31, 200, 70_000])),
        postings,
    )


def chain(count: int, seed: int = 7) -> tuple[list[Record], bytes]:
    rng = random.Random(seed)
    return seal_frames(GENESIS_HASH, [random_body(rng, seq) for seq in range(1, count + 1)])


def appends(count: int, seed: int = 7) -> tuple[list[Record], bytes]:
    """The records of chain(), each written by an append of its own (as a journal of many
    batches is): damage in one append is told by the valid appends after it."""
    records, _ = chain(count, seed)
    return records, b"".join(encode_frame(record) for record in records)


def offsets_of(data: bytes) -> list[int]:
    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset = skip_frames(data, offset, 1)
    return offsets


def read(data: bytes | bytearray, *, last: bool = True) -> tuple[list[Record], Damage | None]:
    reader = SegmentReader(data, next_seq=1, prev_hash=GENESIS_HASH, last=last)
    return list(reader), reader.damage


# --- The format ---------------------------------------------------------------------------


def test_crc32c_is_the_castagnoli_crc() -> None:
    # The check value of CRC-32C (iSCSI, RFC 3720) over "123456789".
    assert crc32c.crc32c(b"123456789") == 0xE3069283


def test_a_frame_is_length_then_crc_then_the_encoded_record() -> None:
    record = seal(GENESIS_HASH, RecordBody(1, 5, "deposit", b"cmd", ()))
    payload = encode_record(record)
    frame = encode_frame(record)
    assert frame[:4] == struct.pack("<I", len(payload))
    assert frame[4:8] == struct.pack("<I", crc32c.crc32c(payload))
    assert frame[8:] == payload
    assert frame_payload(payload) == frame


def test_sealing_in_one_pass_equals_seal_then_encode() -> None:
    print(f"IPX_SEED={SEED}")
    rng = random.Random(SEED)
    bodies = [random_body(rng, seq) for seq in range(1, 301)]
    records, data = seal_frames(GENESIS_HASH, bodies)
    prev_hash, expected = GENESIS_HASH, []
    for body in bodies:
        expected.append(seal(prev_hash, body))
        prev_hash = expected[-1].hash
    assert records == expected
    assert data == encode_frames(expected)
    for record in records:
        assert recompute_hash(record) == record_hash(record.prev_hash, record.body())
        body_fields = (record.seq, record.ts_ns, record.kind, record.command, record.postings)
        assert canonical_bytes(record.body())[1:] == encode_record(record)[1:-68]
        assert len(body_fields) == 5


def test_sealing_refuses_a_prev_hash_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="31 bytes"):
        seal_frames(bytes(31), [RecordBody(1, 0, "k", b"", ())])


def test_link_error_names_what_breaks_the_chain() -> None:
    records, _ = chain(3)
    assert link_error(records[1], 2, records[0].hash) is None
    assert "seq 2 where seq 3" in (link_error(records[1], 3, records[0].hash) or "")
    assert "prev_hash" in (link_error(records[1], 2, GENESIS_HASH) or "")
    forged = Record(2, 0, "x", b"", (), records[0].hash, records[1].hash)
    assert "recompute" in (link_error(forged, 2, records[0].hash) or "")


# --- Clean reads --------------------------------------------------------------------------


def test_a_clean_segment_yields_every_record_and_no_damage() -> None:
    records, data = chain(50)
    got, damage = read(data)
    assert got == records
    assert damage is None


def test_an_empty_segment_is_clean() -> None:
    assert read(b"") == ([], None)


def test_reading_can_start_at_a_validated_frame_boundary() -> None:
    records, data = chain(20)
    offsets = offsets_of(data)
    reader = SegmentReader(
        data, next_seq=11, prev_hash=records[9].hash, last=True, offset=offsets[10]
    )
    assert list(reader) == records[10:]
    assert (reader.offset, reader.next_seq, reader.prev_hash) == (
        len(data),
        21,
        records[-1].hash,
    )


def test_a_reader_left_early_describes_the_chain_after_the_last_record_it_gave() -> None:
    records, data = chain(10)
    reader = SegmentReader(data, next_seq=1, prev_hash=GENESIS_HASH, last=True)
    iterator = iter(reader)
    for _ in range(4):
        next(iterator)
    del iterator
    assert reader.next_seq == 5
    assert reader.prev_hash == records[3].hash
    assert reader.offset == offsets_of(data)[4]


def test_skip_and_decode_one_frame() -> None:
    records, data = chain(5)
    offset = skip_frames(data, 0, 3)
    assert decode_frame(data, offset) == records[3]
    with pytest.raises(ValueError, match="runs past"):
        skip_frames(data[:-1], 0, 5)
    broken = bytearray(data)
    broken[offset + FRAME_HEADER_BYTES + 3] ^= 1
    with pytest.raises(ValueError, match="CRC"):
        decode_frame(bytes(broken), offset)


# --- Torn tails: what power loss leaves, and recovery may cut ---------------------------


def test_zeros_after_the_last_frame_are_a_torn_tail() -> None:
    records, data = chain(5)
    got, damage = read(data + bytes(4096))
    assert got == records
    assert damage == Damage(6, len(data), "torn tail: 4096 zero bytes", torn=True)


@pytest.mark.parametrize("kept", [1, 4, 7])
def test_a_header_cut_short_at_the_end_is_a_torn_tail(kept: int) -> None:
    records, data = chain(5)
    cut = offsets_of(data)[4] + kept
    got, damage = read(data[:cut])
    assert got == records[:4]
    assert damage is not None and damage.torn and (damage.seq, damage.offset) == (5, cut - kept)
    assert "header cut short" in damage.reason


@pytest.mark.parametrize("kept_payload", [0, 1, 2, 40, -1])
def test_a_frame_cut_short_at_the_end_is_a_torn_tail(kept_payload: int) -> None:
    records, data = chain(5)
    start = offsets_of(data)[4]
    cut = len(data) - 1 if kept_payload == -1 else start + FRAME_HEADER_BYTES + kept_payload
    got, damage = read(data[:cut])
    assert got == records[:4]
    assert damage is not None and damage.torn and (damage.seq, damage.offset) == (5, start)


def test_a_cut_frame_whose_missing_sectors_read_as_zeros_is_a_torn_tail() -> None:
    records, data = chain(5)
    start = offsets_of(data)[4]
    cut = start + FRAME_HEADER_BYTES + 30
    torn = data[:cut] + bytes(len(data) - cut - 10)
    got, damage = read(torn)
    assert got == records[:4]
    assert damage is not None and damage.torn and damage.seq == 5


def test_a_complete_last_frame_that_fails_its_crc_with_nothing_after_is_a_torn_tail() -> None:
    records, data = chain(5)
    broken = bytearray(data)
    broken[-5] ^= 0xFF
    for tail in (b"", bytes(100)):
        got, damage = read(bytes(broken) + tail)
        assert got == records[:4]
        assert damage is not None and damage.torn and damage.seq == 5
        assert "CRC mismatch" in damage.reason


# --- Damage: never truncated, always named -----------------------------------------------


def test_any_failure_in_a_segment_that_is_not_the_last_is_damage() -> None:
    _, data = chain(5)
    for bad in (data + bytes(10), data[:-3], data[:-200] + bytes(200), data + b"\x01"):
        got, damage = read(bad, last=False)
        assert damage is not None and not damage.torn
        assert damage.seq == len(got) + 1


def test_a_bad_crc_followed_by_more_data_is_damage() -> None:
    records, data = appends(5)
    offsets = offsets_of(data)
    broken = bytearray(data)
    broken[offsets[2] + 20] ^= 0x01
    got, damage = read(bytes(broken))
    assert got == records[:2]
    assert damage is not None and not damage.torn and (damage.seq, damage.offset) == (3, offsets[2])
    assert "CRC mismatch" in damage.reason


def test_a_bad_crc_inside_the_last_append_is_torn_whatever_of_it_follows() -> None:
    # Its pages land in any order, and a sector cut short need not read back as zeros: frames
    # of the same append after a bad one, or stray bytes, do not prove it was ever finished.
    records, data = chain(5)  # One append.
    offsets = offsets_of(data)
    for tail in (b"", b"\x00\x00\x07"):
        broken = bytearray(data + tail)
        broken[offsets[2] + 12] ^= 0x10
        got, damage = read(bytes(broken))
        assert got == records[:2]
        assert damage is not None and damage.torn and (damage.seq, damage.offset) == (3, offsets[2])


def test_a_zeroed_header_inside_the_last_append_is_torn_though_later_frames_landed() -> None:
    records, data = chain(5)  # One append: its first page never landed, the later ones did.
    offsets = offsets_of(data)
    broken = bytearray(data)
    broken[offsets[3] : offsets[3] + FRAME_HEADER_BYTES] = bytes(FRAME_HEADER_BYTES)
    got, damage = read(bytes(broken))
    assert got == records[:3]
    assert damage is not None and damage.torn and (damage.seq, damage.offset) == (4, offsets[3])


def test_a_length_field_running_past_the_end_with_a_valid_frame_after_it_is_damage() -> None:
    records, data = appends(5)
    offsets = offsets_of(data)
    broken = bytearray(data)
    struct.pack_into("<I", broken, offsets[2], len(data))  # Far past the end.
    got, damage = read(bytes(broken))
    assert got == records[:2]
    assert damage is not None and not damage.torn and (damage.seq, damage.offset) == (3, offsets[2])
    assert f"valid frame follows at {offsets[3]}" in damage.reason


def test_a_damaged_length_on_the_last_frame_is_caught_by_its_crc() -> None:
    _, data = chain(5)
    offsets = offsets_of(data)
    broken = bytearray(data)
    struct.pack_into("<I", broken, offsets[4], len(data) - offsets[4])
    _, damage = read(bytes(broken))
    assert damage is not None and not damage.torn and damage.seq == 5
    assert "damaged length field" in damage.reason


def test_a_cut_frame_that_does_not_start_like_the_next_record_is_damage() -> None:
    _, data = chain(5)
    start = offsets_of(data)[4]
    broken = bytearray(data[: start + 40])
    broken[start + FRAME_HEADER_BYTES + 1] ^= 0x01  # The seq byte of record 5.
    _, damage = read(bytes(broken))
    assert damage is not None and not damage.torn and "do not start record 5" in damage.reason


def test_a_zero_length_header_followed_by_data_is_damage() -> None:
    _, data = appends(5)
    start = offsets_of(data)[3]
    broken = bytearray(data)
    broken[start : start + FRAME_HEADER_BYTES] = bytes(FRAME_HEADER_BYTES)
    _, damage = read(bytes(broken))
    assert damage is not None and not damage.torn and (damage.seq, damage.offset) == (4, start)


def test_an_absurd_length_is_damage_even_at_the_end() -> None:
    _, data = chain(5)
    start = offsets_of(data)[4]
    broken = bytearray(data)
    struct.pack_into("<I", broken, start, FRAME_PAYLOAD_BYTES_MAX + 1)
    _, damage = read(bytes(broken))
    assert damage is not None and not damage.torn and "exceeds the maximum" in damage.reason


def test_a_zeroed_sector_before_the_end_is_damage() -> None:
    records, data = appends(40)
    offsets = offsets_of(data)
    assert len(data) > 4096
    broken = bytearray(data)
    broken[512:1024] = bytes(512)
    first_hit = max(index for index, offset in enumerate(offsets) if offset <= 512)
    got, damage = read(bytes(broken))
    assert got == records[:first_hit]
    assert damage is not None and not damage.torn and damage.seq == first_hit + 1


def test_a_crc_valid_frame_with_wrong_content_is_never_torn() -> None:
    # A torn write cannot produce a matching CRC: these are real frames in the wrong place.
    records, data = chain(5)
    offsets = offsets_of(data)
    stranger = seal(GENESIS_HASH, RecordBody(5, 1, "deposit", b"", ()))
    cases = {
        "seq 4 where seq 6": data + encode_frame(records[3]),
        "prev_hash": data[: offsets[4]] + encode_frame(stranger),
        "does not recompute": data[: offsets[4]]
        + encode_frame(
            Record(5, 1, "x", b"", (), records[3].hash, records[4].hash)  # Wrong hash.
        ),
        "does not decode": data + frame_payload(b"\x93\x01\x02\x03"),
    }
    for expected_reason, journal in cases.items():
        _, damage = read(journal)
        assert damage is not None and not damage.torn, expected_reason
        assert expected_reason in damage.reason


def test_a_header_whose_length_sector_was_lost_but_flag_byte_landed_is_torn() -> None:
    # A header split across two sectors: the length bytes in one that never landed (zeros),
    # the flag byte (FOLLOWS) in the next, which did.
    records, data = chain(5)  # One append.
    offsets = offsets_of(data)
    broken = bytearray(data)
    broken[offsets[3] : offsets[3] + 3] = bytes(3)
    assert struct.unpack_from("<I", broken, offsets[3])[0] == FRAME_FOLLOWS
    got, damage = read(bytes(broken))
    assert got == records[:3]
    assert damage is not None and damage.torn and (damage.seq, damage.offset) == (4, offsets[3])


def test_a_record_larger_than_a_frame_spans_frames_and_reads_back_whole() -> None:
    # A delisting cancels a whole book in one record; a royalty pays every holder in one.
    rng = random.Random(SEED)
    bodies = [
        random_body(rng, 1),
        RecordBody(2, 0, "deposit", rng.randbytes(2 * FRAME_PAYLOAD_BYTES_MAX + 5), ()),
        random_body(rng, 3),
    ]
    records, data = seal_frames(GENESIS_HASH, bodies)
    assert data == encode_frames(records)
    offsets = offsets_of(data)  # Records, not frames.
    assert len(offsets) == 3 and offsets[2] - offsets[1] > 2 * FRAME_PAYLOAD_BYTES_MAX
    assert decode_frame(data, offsets[1]) == records[1]
    assert read(data) == (records, None)
    assert read(encode_frame(records[0]) + encode_frame(records[1])) == (records[:2], None)
    with pytest.raises(ValueError, match="cannot be stored"):
        frame_payload(b"")


def test_a_large_record_cut_anywhere_is_torn_from_its_first_frame() -> None:
    rng = random.Random(SEED)
    big = RecordBody(2, 0, "deposit", rng.randbytes(FRAME_PAYLOAD_BYTES_MAX + 100), ())
    records, data = seal_frames(GENESIS_HASH, [random_body(rng, 1), big])
    start = offsets_of(data)[1]
    second_frame = start + FRAME_HEADER_BYTES + FRAME_PAYLOAD_BYTES_MAX
    for cut in (start + 3, second_frame - 1, second_frame + 4, second_frame + 50, len(data) - 1):
        for torn in (data[:cut], data[:cut] + bytes(len(data) - cut)):
            got, damage = read(torn)
            assert got == records[:1], cut
            assert damage is not None and damage.torn and (damage.seq, damage.offset) == (2, start)


def test_a_torn_large_record_is_judged_without_a_crc_per_candidate_byte(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Recovery looks for a valid append start after a failing frame. A torn record of tens of
    # MiB holds a record-array byte every ~256 bytes; a CRC over each candidate made recovery
    # quadratic in the torn tail's size (6.5 s for 64 MiB). Only frames shaped like a record's
    # first are CRC-checked.
    rng = random.Random(SEED)
    big = RecordBody(2, 0, "deposit", rng.randbytes(2 * FRAME_PAYLOAD_BYTES_MAX + 100), ())
    records, data = seal_frames(GENESIS_HASH, [random_body(rng, 1), big])
    start = offsets_of(data)[1]
    torn = bytearray(data)
    torn[start : start + FRAME_HEADER_BYTES] = bytes(FRAME_HEADER_BYTES)  # Its sector lost.
    crcs: list[int] = []

    def counting_crc(data: bytes | memoryview, seed: int = 0) -> int:
        crcs.append(len(data))
        return crc32c.crc32c(data, seed)

    monkeypatch.setattr(frames, "_crc", counting_crc)
    got, damage = read(torn)
    assert got == records[:1]
    assert damage is not None and damage.torn and (damage.seq, damage.offset) == (2, start)
    assert sum(crcs) < 2 * len(data), f"{len(crcs)} CRCs over {sum(crcs)} bytes"
    # A later append still makes it damage: the check lets every real record start through.
    after = encode_frame(seal(records[1].hash, random_body(rng, 3)))
    got, damage = read(bytes(torn) + after)
    assert damage is not None and not damage.torn and "valid frame follows" in damage.reason


def test_damage_in_a_later_frame_of_a_large_record_is_placed_at_its_first() -> None:
    rng = random.Random(SEED)
    big = RecordBody(2, 0, "deposit", rng.randbytes(FRAME_PAYLOAD_BYTES_MAX + 100), ())
    records, data = seal_frames(GENESIS_HASH, [random_body(rng, 1), big])
    start = offsets_of(data)[1]
    second_frame = start + FRAME_HEADER_BYTES + FRAME_PAYLOAD_BYTES_MAX
    broken = bytearray(data + encode_frame(seal(records[1].hash, random_body(rng, 3))))
    broken[second_frame + 20] ^= 0x01  # A later append follows: damage, not torn.
    got, damage = read(bytes(broken))
    assert got == records[:1]
    assert damage is not None and not damage.torn and (damage.seq, damage.offset) == (2, start)
    # A frame that continues a record must come from the same append as its first.
    word = struct.unpack_from("<I", data, second_frame)[0] & ~FRAME_FOLLOWS
    payload = data[second_frame + FRAME_HEADER_BYTES :]
    unchained = data[:second_frame] + struct.pack("<II", word, frame_crc(payload, word)) + payload
    got, damage = read(unchained)
    assert damage is not None and not damage.torn and "starts an append" in damage.reason


def test_a_sealed_batch_is_a_run_of_consecutive_records_and_their_frames() -> None:
    rng = random.Random(3)
    bodies = [random_body(rng, seq) for seq in range(5, 9)]
    batch = seal_batch(GENESIS_HASH, bodies)
    assert (batch.first_seq, batch.last_seq) == (5, 8)
    assert batch.last_hash == batch.records[-1].hash
    assert batch.data == encode_frames(batch.records)
    with pytest.raises(ValueError, match="at least one record"):
        seal_batch(GENESIS_HASH, [])
    with pytest.raises(ValueError, match="body seq 8 where seq 7 was expected"):
        seal_batch(GENESIS_HASH, [*bodies[:2], bodies[3]])
