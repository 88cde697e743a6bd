"""Checkpoints, receipts and consistency proofs: what a holder keeps to check the operator.

A checkpoint is a published head of the journal (tree size, Merkle root, last seq, head hash),
optionally signed. A receipt proves that one record is in the tree of a checkpoint. A
consistency proof shows that a later checkpoint's tree extends an earlier one's, i.e. that the
journal was only appended to between them.

Invariants:
- Leaf i of the tree is the record with seq i + 1, and its leaf data is that record's 32-byte
  hash. So a checkpoint's tree_size equals its last_seq, a receipt's index equals its seq - 1,
  and the empty journal's checkpoint has the empty root and GENESIS_HASH as head.
- A receipt is only as good as the checkpoint it is checked against: (tree_size, root) must
  come from a checkpoint the holder trusts (published, or signed by a key the holder trusts),
  never from the receipt itself. RFC 6962 inclusion proofs do not pin the tree size; the
  checkpoint does.
- A checkpoint proves its own head: `head_proof` shows head_hash is the last leaf of root,
  so a checkpoint whose head, root, size or last seq was altered alone fails check_checkpoint.
- The signature (Ed25519, made and checked at the edge in gateway/, since this package keeps
  to msgspec) covers `signed_message(checkpoint)`: tree size, root, last seq and head hash (the
  head proof is derived from those and checked against the root), in one fixed text layout
  with a domain-separating first line.
- JSON forms carry hashes, signatures and encoded records as lowercase hex, and a `type` tag so
  that a receipt is never mistaken for a checkpoint. Unknown fields are rejected.
- Everything here is pure; failures to verify raise ProofError with a reason a person can act on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, TypeVar

import msgspec

from ledger.errors import ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_BYTES,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from ledger.records import GENESIS_HASH, Record, decode_record, encode_record, record_hash

SIGNATURE_BYTES = 64  # Ed25519.
SIGNED_MESSAGE_HEADER = b"ipx ledger checkpoint v1\n"

_HexHash = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
_HexSignature = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{128}$")]
_HexBytes = Annotated[str, msgspec.Meta(pattern="^([0-9a-f]{2})*$")]
_Count = Annotated[int, msgspec.Meta(ge=0)]


class Checkpoint(msgspec.Struct, frozen=True):
    """A head of the journal: the tree over records 1..last_seq and the last record's hash.

    `head_proof` is the inclusion proof of `head_hash` as the last leaf, so the head is bound
    to the root by the tree itself and not only by a signature.
    """

    tree_size: int
    root: bytes
    last_seq: int
    head_hash: bytes
    head_proof: tuple[bytes, ...]
    signature: bytes | None = None

    def to_json(self) -> bytes:
        """Return the JSON form (hex hashes)."""
        signature = None if self.signature is None else self.signature.hex()
        wire = _CheckpointJSON(
            self.tree_size,
            self.root.hex(),
            self.last_seq,
            self.head_hash.hex(),
            [node.hex() for node in self.head_proof],
            signature,
        )
        return _encode_json(wire)

    @classmethod
    def from_json(cls, data: bytes | str) -> Checkpoint:
        """Parse the JSON form; raises ProofError when it is not a well-formed checkpoint."""
        wire = _decode_json(data, _CheckpointJSON, "checkpoint")
        signature = None if wire.signature is None else bytes.fromhex(wire.signature)
        return cls(
            wire.tree_size,
            bytes.fromhex(wire.root),
            wire.last_seq,
            bytes.fromhex(wire.head_hash),
            tuple(bytes.fromhex(node) for node in wire.head_proof),
            signature,
        )


class Receipt(msgspec.Struct, frozen=True):
    """Proof that the record `seq` (hash `record_hash`) is leaf `index` of the tree `root`."""

    seq: int
    record_hash: bytes
    index: int
    tree_size: int
    root: bytes
    proof: tuple[bytes, ...]
    record: bytes | None = None  # encode_record(record), so a holder can see what was proven.

    def to_json(self) -> bytes:
        """Return the JSON form (hex hashes)."""
        wire = _ReceiptJSON(
            self.seq,
            self.record_hash.hex(),
            self.index,
            self.tree_size,
            self.root.hex(),
            [node.hex() for node in self.proof],
            None if self.record is None else self.record.hex(),
        )
        return _encode_json(wire)

    @classmethod
    def from_json(cls, data: bytes | str) -> Receipt:
        """Parse the JSON form; raises ProofError when it is not a well-formed receipt."""
        wire = _decode_json(data, _ReceiptJSON, "receipt")
        return cls(
            wire.seq,
            bytes.fromhex(wire.record_hash),
            wire.index,
            wire.tree_size,
            bytes.fromhex(wire.root),
            tuple(bytes.fromhex(node) for node in wire.proof),
            None if wire.record is None else bytes.fromhex(wire.record),
        )


class ConsistencyProof(msgspec.Struct, frozen=True):
    """Proof that the tree of new_size extends the tree of old_size (RFC 6962 §2.1.2)."""

    old_size: int
    new_size: int
    proof: tuple[bytes, ...]

    def to_json(self) -> bytes:
        """Return the JSON form (hex hashes)."""
        wire = _ConsistencyJSON(self.old_size, self.new_size, [node.hex() for node in self.proof])
        return _encode_json(wire)

    @classmethod
    def from_json(cls, data: bytes | str) -> ConsistencyProof:
        """Parse the JSON form; raises ProofError when it is not a well-formed proof."""
        wire = _decode_json(data, _ConsistencyJSON, "consistency proof")
        return cls(wire.old_size, wire.new_size, tuple(bytes.fromhex(n) for n in wire.proof))


# The JSON forms. Field order is the order a person reads them in.
class _CheckpointJSON(
    msgspec.Struct,
    frozen=True,
    tag="ipx.checkpoint.v1",
    tag_field="type",
    forbid_unknown_fields=True,
):
    tree_size: _Count
    root: _HexHash
    last_seq: _Count
    head_hash: _HexHash
    head_proof: list[_HexHash]
    signature: _HexSignature | None = None


class _ReceiptJSON(
    msgspec.Struct, frozen=True, tag="ipx.receipt.v1", tag_field="type", forbid_unknown_fields=True
):
    seq: _Count
    record_hash: _HexHash
    index: _Count
    tree_size: _Count
    root: _HexHash
    proof: list[_HexHash]
    record: _HexBytes | None = None


class _ConsistencyJSON(
    msgspec.Struct,
    frozen=True,
    tag="ipx.consistency.v1",
    tag_field="type",
    forbid_unknown_fields=True,
):
    old_size: _Count
    new_size: _Count
    proof: list[_HexHash]


_json_encoder = msgspec.json.Encoder()
_Wire = TypeVar("_Wire")


def _encode_json(wire: msgspec.Struct) -> bytes:
    return msgspec.json.format(_json_encoder.encode(wire), indent=2) + b"\n"


def _decode_json(data: bytes | str, kind: type[_Wire], name: str) -> _Wire:
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.DecodeError as error:  # ValidationError is a DecodeError.
        raise ProofError(f"not a valid {name}: {error}") from error


def signed_message(checkpoint: Checkpoint) -> bytes:
    """Return the bytes a checkpoint signature covers: every field but the signature."""
    return SIGNED_MESSAGE_HEADER + (
        f"tree_size {checkpoint.tree_size}\n"
        f"root {checkpoint.root.hex()}\n"
        f"last_seq {checkpoint.last_seq}\n"
        f"head_hash {checkpoint.head_hash.hex()}\n"
    ).encode("ascii")


def check_checkpoint(checkpoint: Checkpoint) -> None:
    """Check what a checkpoint must satisfy on its own; raises ProofError if it does not."""
    if len(checkpoint.root) != HASH_BYTES or len(checkpoint.head_hash) != HASH_BYTES:
        raise ProofError("checkpoint hashes must be 32 bytes")
    if checkpoint.signature is not None and len(checkpoint.signature) != SIGNATURE_BYTES:
        raise ProofError(f"checkpoint signature must be {SIGNATURE_BYTES} bytes")
    if checkpoint.tree_size < 0 or checkpoint.tree_size != checkpoint.last_seq:
        raise ProofError(
            f"checkpoint tree_size {checkpoint.tree_size} differs from last_seq "
            f"{checkpoint.last_seq}: the tree has one leaf per record"
        )
    if checkpoint.tree_size == 0:
        if checkpoint.root != EMPTY_ROOT or checkpoint.head_hash != GENESIS_HASH:
            raise ProofError("an empty checkpoint must have the empty root and the genesis head")
        if checkpoint.head_proof:
            raise ProofError("an empty checkpoint has no head to prove")
        return
    try:
        verify_inclusion(
            leaf_hash(checkpoint.head_hash),
            checkpoint.tree_size - 1,
            checkpoint.tree_size,
            checkpoint.head_proof,
            checkpoint.root,
        )
    except ProofError as error:
        raise ProofError(
            f"the checkpoint's head is not the last leaf of its root: {error}"
        ) from error


def verify_receipt(receipt: Receipt, checkpoint: Checkpoint) -> None:
    """Check that the receipt proves its record is in the checkpoint's tree.

    The checkpoint must be one the caller trusts (its signature is checked by the caller).
    Raises ProofError naming the first thing that does not hold.
    """
    check_checkpoint(checkpoint)
    if receipt.tree_size != checkpoint.tree_size:
        raise ProofError(
            f"the receipt is for a tree of {receipt.tree_size} records but the checkpoint has "
            f"{checkpoint.tree_size}: get a receipt at the checkpoint's size"
        )
    if receipt.root != checkpoint.root:
        raise ProofError("the receipt's root is not the checkpoint's root")
    if not 1 <= receipt.seq <= checkpoint.last_seq:
        raise ProofError(
            f"seq {receipt.seq} is not among the checkpoint's records 1..{checkpoint.last_seq}"
        )
    if receipt.index != receipt.seq - 1:
        raise ProofError(f"record seq {receipt.seq} must be leaf {receipt.seq - 1}")
    if receipt.seq == checkpoint.last_seq and receipt.record_hash != checkpoint.head_hash:
        raise ProofError("the receipt's record is the checkpoint's last but has another hash")
    if receipt.record is not None:
        _check_record(receipt, receipt.record)
    try:
        verify_inclusion(
            leaf_hash(receipt.record_hash),
            receipt.index,
            receipt.tree_size,
            receipt.proof,
            checkpoint.root,
        )
    except ProofError as error:
        raise ProofError(f"the inclusion proof does not verify: {error.reason}") from error


def _check_record(receipt: Receipt, encoded: bytes) -> None:
    # The record shown must be the one whose hash the proof covers, recomputed from its body.
    try:
        record = decode_record(encoded)
    # Invalid UTF-8 in a text field surfaces as UnicodeDecodeError, a ValueError.
    except (msgspec.DecodeError, ValueError) as error:
        raise ProofError(f"the receipt's record does not decode: {error}") from error
    if record.seq != receipt.seq:
        raise ProofError(f"the receipt's record has seq {record.seq}, not {receipt.seq}")
    if record.hash != receipt.record_hash:
        raise ProofError("the receipt's record carries another hash than the one proven")
    if record_hash(record.prev_hash, record.body()) != record.hash:
        raise ProofError("the receipt's record does not hash to its own hash: it was altered")


def verify_extension(old: Checkpoint, new: Checkpoint, proof: ConsistencyProof) -> None:
    """Check that `new` extends `old`: the journal was only appended to between them.

    Both checkpoints must be ones the caller trusts. Raises ProofError if they diverge.
    """
    check_checkpoint(old)
    check_checkpoint(new)
    if (proof.old_size, proof.new_size) != (old.tree_size, new.tree_size):
        raise ProofError(
            f"the proof is from size {proof.old_size} to {proof.new_size}, but the checkpoints "
            f"have sizes {old.tree_size} and {new.tree_size}"
        )
    if old.tree_size == 0:
        # Any journal extends the empty one, and check_checkpoint pinned the empty root.
        if proof.proof:
            raise ProofError("a proof from the empty journal must be empty")
        return
    if old.tree_size == new.tree_size and old.head_hash != new.head_hash:
        raise ProofError("the checkpoints have the same size but different head hashes")
    try:
        verify_consistency(old.tree_size, new.tree_size, old.root, new.root, proof.proof)
    except ProofError as error:
        raise ProofError(f"the later checkpoint does not extend the earlier: {error}") from error


class JournalTree:
    """The Merkle tree of a journal, fed record by record, that issues the three artifacts."""

    __slots__ = ("_record_hashes", "tree")

    def __init__(self, records: Sequence[Record] = ()) -> None:
        self.tree = MerkleTree()
        self._record_hashes: list[bytes] = []
        for record in records:
            self.add(record)

    @property
    def last_seq(self) -> int:
        """Return the seq of the last record added (0 when empty)."""
        return len(self._record_hashes)

    def add(self, record: Record) -> None:
        """Append the next record; its seq must follow the last one's."""
        if record.seq != self.last_seq + 1:
            raise ValueError(f"record seq {record.seq} does not follow seq {self.last_seq}")
        self.tree.append(record.hash)
        self._record_hashes.append(record.hash)

    def checkpoint(self, tree_size: int | None = None) -> Checkpoint:
        """Return the (unsigned) checkpoint of the first `tree_size` records (all by default)."""
        size = self.last_seq if tree_size is None else tree_size
        root = self.tree.root(size)
        if size == 0:
            return Checkpoint(0, root, 0, GENESIS_HASH, ())
        head_proof = tuple(self.tree.inclusion_proof(size - 1, size))
        return Checkpoint(size, root, size, self._record_hashes[size - 1], head_proof)

    def receipt(
        self, seq: int, tree_size: int | None = None, record: Record | None = None
    ) -> Receipt:
        """Return the receipt of record `seq` in the tree of `tree_size` records.

        Pass the record itself to embed it, so the holder can see what the receipt proves.
        """
        size = self.last_seq if tree_size is None else tree_size
        if not 0 <= size <= self.last_seq:
            raise ValueError(f"tree size {size} is outside 0..{self.last_seq}")
        if not 1 <= seq <= size:
            raise ValueError(f"seq {seq} is not among records 1..{size}")
        record_hash_at = self._record_hashes[seq - 1]
        if record is not None and (record.seq != seq or record.hash != record_hash_at):
            raise ValueError(f"the record given is not the journal's record {seq}")
        proof = tuple(self.tree.inclusion_proof(seq - 1, size))
        encoded = None if record is None else encode_record(record)
        return Receipt(seq, record_hash_at, seq - 1, size, self.tree.root(size), proof, encoded)

    def consistency(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Return the proof that the tree of `new_size` records extends that of `old_size`."""
        size = self.last_seq if new_size is None else new_size
        if old_size == 0 and 0 <= size <= self.last_seq:
            return ConsistencyProof(0, size, ())
        return ConsistencyProof(old_size, size, tuple(self.tree.consistency_proof(old_size, size)))
