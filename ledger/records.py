"""Journal records and postings, and the one canonical encoding that the hash chain covers.

Invariants:
- A record's `hash` is sha256(prev_hash || canonical_bytes(record body)); the first record's
  `prev_hash` is GENESIS_HASH. Changing any byte of any earlier record changes every later hash.
- Canonical bytes come from one msgpack encoder over array-like structs: field order is fixed,
  there are no maps, so equal records encode to equal bytes in any process.
- `seq` is gapless and starts at 1.
- A posting moves a positive integer amount of one asset from (debit_account, debit_bucket) to
  (credit_account, credit_bucket); debit means "taken from", as in a bank statement and in
  TigerBeetle. A posting is balanced by construction: what leaves one place arrives at another.
- Accounts whose id starts with WORLD_PREFIX stand for the outside world (the bank, the act of
  issuance); only they may go negative, and only records of the kinds in WORLD_FLOWS may touch
  them. This is what makes conservation checkable from the journal alone.
- The command is opaque bytes here: this package never needs the exchange to check the chain.
"""

from __future__ import annotations

import enum
import hashlib

import msgspec

HASH_BYTES = 32
GENESIS_HASH = bytes(HASH_BYTES)

WORLD_PREFIX = "@"
BANK_ACCOUNT = "@bank"  # Cash enters by deposit and leaves by withdrawal through here.
ISSUANCE_ACCOUNT = "@issuance"  # Units come into existence only through here.

# The most of one asset that may be inside the exchange at once: 2**62, about 4.6e18 minor
# units. Records, snapshots and the state hash encode integers as msgpack int64 (uint64 at
# most): a world account's balance is minus everything that came in through it, and past
# -2**63 it could not be encoded at all. Bounding what flowed in bounds every balance too (the
# internal ones sum to it) and so every posting (none moves more than its debit holds), with
# a factor of 2 to spare for sums such as available + held or a notional plus its fee. The
# exchange refuses the deposit that would go past it; the verifier fails a journal that does.
BALANCE_MAX = 1 << 62

# Record kinds allowed to move value across the boundary of the exchange, per world account.
WORLD_FLOWS: dict[str, frozenset[str]] = {
    BANK_ACCOUNT: frozenset({"deposit", "withdraw"}),
    ISSUANCE_ACCOUNT: frozenset({"issue_shares"}),
}


class Bucket(enum.Enum):
    AVAILABLE = "available"
    HELD = "held"  # Reserved for open orders; not spendable until released.


class Posting(msgspec.Struct, frozen=True, array_like=True, gc=False):
    asset: str  # A currency code ("USD") or an instrument symbol ("RS-US10123456B2").
    amount: int  # Minor units of cash or units of shares; always > 0.
    debit_account: str
    debit_bucket: Bucket
    credit_account: str
    credit_bucket: Bucket


class RecordBody(msgspec.Struct, frozen=True, array_like=True):
    """What the exchange hands the journal: everything but the chain links."""

    seq: int
    ts_ns: int
    kind: str  # The command's tag, e.g. "place_order", "deposit", "issue_shares".
    command: bytes  # The command, msgspec-encoded by the exchange; opaque here.
    postings: tuple[Posting, ...]


class Record(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    ts_ns: int
    kind: str
    command: bytes
    postings: tuple[Posting, ...]
    prev_hash: bytes
    hash: bytes

    def body(self) -> RecordBody:
        return RecordBody(self.seq, self.ts_ns, self.kind, self.command, self.postings)


_canonical_encoder = msgspec.msgpack.Encoder(order="deterministic")
_record_encoder = msgspec.msgpack.Encoder(order="deterministic")
_record_decoder = msgspec.msgpack.Decoder(Record)


def canonical_bytes(body: RecordBody) -> bytes:
    """Return the bytes the hash chain covers for this record body."""
    return _canonical_encoder.encode(body)


def record_hash(prev_hash: bytes, body: RecordBody) -> bytes:
    """Return sha256(prev_hash || canonical bytes of body)."""
    digest = hashlib.sha256(prev_hash)
    digest.update(canonical_bytes(body))
    return digest.digest()


def seal(prev_hash: bytes, body: RecordBody) -> Record:
    """Link a record body to the chain after the record whose hash is prev_hash."""
    return Record(
        body.seq,
        body.ts_ns,
        body.kind,
        body.command,
        body.postings,
        prev_hash,
        record_hash(prev_hash, body),
    )


def encode_record(record: Record) -> bytes:
    """Encode a whole record (chain links included) for storage."""
    return _record_encoder.encode(record)


def decode_record(data: bytes | memoryview) -> Record:
    """Decode a stored record; raises msgspec.DecodeError on malformed bytes."""
    return _record_decoder.decode(data)
