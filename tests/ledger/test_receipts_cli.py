"""Receipts a holder can check without trusting the operator, and the `ipx ledger` commands.

Rules checked here, first on the pure artifacts (ledger.receipts), then through the real
`ipx` entry point in a subprocess on a real journal written by ledger.file_store.FileJournal:
- A receipt for any record verifies against the checkpoint of its tree size, through JSON.
- Every single-bit mutation of a receipt (seq, index, tree size, record hash, root, each proof
  hash, the embedded record) or of the checkpoint it is checked against (tree size, last seq,
  root, head hash) is rejected. A signed checkpoint's signature covers every field.
- A later checkpoint verifies as an extension of an earlier one exactly when the journal was
  only appended to; a checkpoint from another history is rejected.
- CLI: prove a seq and verify it (exit 0); a tampered receipt exits 1 with the reason; a
  consistency proof between an old and a new checkpoint after appending exits 0; a checkpoint
  of another history exits 1; unusable input exits 2; Ed25519 signing and checking, including
  a key made by openssl.

Randomized tests print their seed; replay with IPX_SEED=<seed> .venv/bin/pytest <this file> -s.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import ProofError
from ledger.merkle import EMPTY_ROOT
from ledger.receipts import (
    Checkpoint,
    ConsistencyProof,
    JournalTree,
    Receipt,
    check_checkpoint,
    signed_message,
    verify_extension,
    verify_receipt,
)
from ledger.records import (
    BANK_ACCOUNT,
    GENESIS_HASH,
    Bucket,
    Posting,
    Record,
    RecordBody,
    encode_record,
    seal,
)


def _base_seed() -> int:
    configured = os.environ.get("IPX_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(1 << 32)


BASE_SEED = _base_seed()


def _rng(offset: int, what: str) -> random.Random:
    seed = BASE_SEED + offset
    print(f"{what}: IPX_SEED={BASE_SEED} (run seed {seed})")
    return random.Random(seed)


def deposit_body(seq: int, account: str = "alice", amount_minor: int = 100) -> RecordBody:
    posting = Posting(
        "USD", amount_minor, BANK_ACCOUNT, Bucket.AVAILABLE, account, Bucket.AVAILABLE
    )
    command = f"deposit {account} {amount_minor}".encode()
    return RecordBody(seq, 1_700_000_000_000_000_000 + seq, "deposit", command, (posting,))


def sealed_journal(count: int, account: str = "alice") -> list[Record]:
    records: list[Record] = []
    prev_hash = GENESIS_HASH
    for seq in range(1, count + 1):
        record = seal(prev_hash, deposit_body(seq, account, 100 + seq))
        records.append(record)
        prev_hash = record.hash
    return records


def _rejected(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofError:
        return True
    return False


def _flips(value: bytes) -> Iterator[bytes]:
    for bit in range(len(value) * 8):
        mutated = bytearray(value)
        mutated[bit // 8] ^= 1 << (bit % 8)
        yield bytes(mutated)


def _int_flips(value: int, bits: int) -> Iterator[int]:
    for bit in range(bits):
        yield value ^ (1 << bit)


# --- Pure artifacts. ---


def test_every_receipt_verifies_against_its_checkpoint_through_json() -> None:
    records = sealed_journal(40)
    tree = JournalTree(records)
    proven = 0
    for size in (1, 2, 3, 7, 8, 9, 31, 40):
        checkpoint = Checkpoint.from_json(tree.checkpoint(size).to_json())
        assert (checkpoint.tree_size, checkpoint.last_seq) == (size, size)
        assert checkpoint.head_hash == records[size - 1].hash
        for record in records[:size]:
            receipt = tree.receipt(record.seq, size, record)
            assert Receipt.from_json(receipt.to_json()) == receipt
            verify_receipt(Receipt.from_json(receipt.to_json()), checkpoint)
            proven += 1
    print(f"{proven} receipts verified")


def test_the_json_forms_use_hex_and_a_type_tag_and_refuse_anything_else() -> None:
    records = sealed_journal(5)
    tree = JournalTree(records)
    checkpoint_json = json.loads(tree.checkpoint().to_json())
    assert checkpoint_json == {
        "type": "ipx.checkpoint.v1",
        "tree_size": 5,
        "root": tree.tree.root().hex(),
        "last_seq": 5,
        "head_hash": records[-1].hash.hex(),
        "head_proof": [node.hex() for node in tree.tree.inclusion_proof(4)],
        "signature": None,
    }
    receipt_json = tree.receipt(3, record=records[2]).to_json()
    assert json.loads(receipt_json)["record"] == encode_record(records[2]).hex()
    with pytest.raises(ProofError, match="not a valid checkpoint"):
        Checkpoint.from_json(receipt_json)
    for bad in (
        {**checkpoint_json, "extra": 1},
        {**checkpoint_json, "root": checkpoint_json["root"].upper()},
        {**checkpoint_json, "root": checkpoint_json["root"][:-2]},
        {**checkpoint_json, "tree_size": -1},
        {key: value for key, value in checkpoint_json.items() if key != "head_hash"},
    ):
        with pytest.raises(ProofError, match="not a valid checkpoint"):
            Checkpoint.from_json(json.dumps(bad))


def test_every_single_bit_mutation_of_a_receipt_is_rejected() -> None:
    rng = _rng(11, "receipt mutations")
    records = sealed_journal(300)
    tree = JournalTree(records)
    tried = rejected = 0
    for size in (1, 2, 5, 64, 257, 300):
        checkpoint = tree.checkpoint(size)
        for seq in sorted({1, size, rng.randrange(1, size + 1)}):
            receipt = tree.receipt(seq, size, records[seq - 1])
            verify_receipt(receipt, checkpoint)
            for mutated in _receipt_mutations(receipt):
                tried += 1
                rejected += _rejected(lambda m=mutated, c=checkpoint: verify_receipt(m, c))
    print(f"receipt mutations: {rejected}/{tried} rejected")
    assert rejected == tried


def _receipt_mutations(receipt: Receipt) -> Iterator[Receipt]:
    replace = msgspec.structs.replace
    int_bits = 12  # Sizes here are below 2**9; higher flips are out of range all the more.
    for seq in _int_flips(receipt.seq, int_bits):
        yield replace(receipt, seq=seq)
    for index in _int_flips(receipt.index, int_bits):
        yield replace(receipt, index=index)
    for size in _int_flips(receipt.tree_size, int_bits):
        yield replace(receipt, tree_size=size)
    for record_hash in _flips(receipt.record_hash):
        yield replace(receipt, record_hash=record_hash)
        yield replace(receipt, record_hash=record_hash, record=None)
    for root in _flips(receipt.root):
        yield replace(receipt, root=root)
    for position, node in enumerate(receipt.proof):
        for mutated in _flips(node):
            yield replace(
                receipt, proof=(*receipt.proof[:position], mutated, *receipt.proof[position + 1 :])
            )
    assert receipt.record is not None
    for record in _flips(receipt.record):
        yield replace(receipt, record=record)


def test_every_single_bit_mutation_of_the_checkpoint_is_rejected() -> None:
    records = sealed_journal(100)
    tree = JournalTree(records)
    tried = rejected = 0
    for size, seq in ((1, 1), (2, 1), (6, 4), (77, 77), (100, 37)):
        checkpoint = tree.checkpoint(size)
        receipt = tree.receipt(seq, size)
        for mutated in _checkpoint_mutations(checkpoint):
            tried += 1
            rejected += _rejected(lambda c=mutated, r=receipt: verify_receipt(r, c))
    print(f"checkpoint mutations: {rejected}/{tried} rejected")
    assert rejected == tried


def _checkpoint_mutations(checkpoint: Checkpoint) -> Iterator[Checkpoint]:
    replace = msgspec.structs.replace
    for size in _int_flips(checkpoint.tree_size, 10):
        yield replace(checkpoint, tree_size=size)
    for seq in _int_flips(checkpoint.last_seq, 10):
        yield replace(checkpoint, last_seq=seq)
    for root in _flips(checkpoint.root):
        yield replace(checkpoint, root=root)
    for head in _flips(checkpoint.head_hash):
        yield replace(checkpoint, head_hash=head)
    for position, node in enumerate(checkpoint.head_proof):
        for mutated in _flips(node):
            proof = (
                *checkpoint.head_proof[:position],
                mutated,
                *checkpoint.head_proof[position + 1 :],
            )
            yield replace(checkpoint, head_proof=proof)


def test_a_signature_covers_every_field_of_the_checkpoint() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = JournalTree(sealed_journal(9)).checkpoint()
    signature = key.sign(signed_message(checkpoint))
    key.public_key().verify(signature, signed_message(checkpoint))
    # The head proof is not signed: it is checked against the signed root (check_checkpoint).
    mutations = [
        mutated
        for mutated in _checkpoint_mutations(checkpoint)
        if mutated.head_proof == checkpoint.head_proof
    ]
    # Even a change that leaves the checkpoint self-consistent (size and last seq together).
    mutations.append(msgspec.structs.replace(checkpoint, tree_size=8, last_seq=8))
    for mutated in mutations:
        with pytest.raises(InvalidSignature):
            key.public_key().verify(signature, signed_message(mutated))
    print(f"signature: {len(mutations)} checkpoint mutations all break it")


def test_a_checkpoint_must_be_consistent_on_its_own() -> None:
    empty = JournalTree().checkpoint()
    assert (empty.tree_size, empty.root, empty.head_hash) == (0, EMPTY_ROOT, GENESIS_HASH)
    check_checkpoint(empty)
    replace = msgspec.structs.replace
    for bad, reason in (
        (replace(empty, root=bytes(32)), "empty root"),
        (replace(empty, head_hash=b"\x01" * 32), "genesis head"),
        (replace(empty, head_proof=(EMPTY_ROOT,)), "no head to prove"),
        (replace(empty, last_seq=1), "differs from last_seq"),
        (replace(empty, root=EMPTY_ROOT[:31]), "32 bytes"),
        (replace(empty, signature=b"short"), "signature must be 64 bytes"),
    ):
        with pytest.raises(ProofError, match=reason):
            check_checkpoint(bad)
    full = JournalTree(sealed_journal(6)).checkpoint()
    check_checkpoint(full)
    for bad_proof in (full.head_proof[:-1], (*full.head_proof, EMPTY_ROOT), (EMPTY_ROOT,)):
        with pytest.raises(ProofError, match="head is not the last leaf of its root"):
            check_checkpoint(replace(full, head_proof=bad_proof))


def test_a_later_checkpoint_extends_an_earlier_one() -> None:
    rng = _rng(12, "checkpoint extensions")
    records = sealed_journal(600)
    tree = JournalTree(records)
    pairs = [(0, 0), (0, 600), (1, 1), (1, 2), (4, 8), (5, 600), (600, 600)]
    pairs += [tuple(sorted((rng.randrange(1, 601), rng.randrange(1, 601)))) for _ in range(20)]
    tried = rejected = 0
    for old_size, new_size in pairs:
        old, new = tree.checkpoint(old_size), tree.checkpoint(new_size)
        proof = ConsistencyProof.from_json(tree.consistency(old_size, new_size).to_json())
        verify_extension(old, new, proof)
        cases = [(old, new, mutated) for mutated in _consistency_mutations(proof)]
        cases += [(mutated, new, proof) for mutated in _checkpoint_mutations(old)]
        cases += [(old, mutated, proof) for mutated in _checkpoint_mutations(new)]
        for case in cases:
            tried += 1
            rejected += _rejected(lambda c=case: verify_extension(*c))
    print(f"{len(pairs)} extensions verified; mutations: {rejected}/{tried} rejected")
    assert rejected == tried


def _consistency_mutations(proof: ConsistencyProof) -> Iterator[ConsistencyProof]:
    replace = msgspec.structs.replace
    for size in _int_flips(proof.old_size, 11):
        yield replace(proof, old_size=size)
    for size in _int_flips(proof.new_size, 11):
        yield replace(proof, new_size=size)
    for position, node in enumerate(proof.proof):
        for mutated in _flips(node):
            yield replace(
                proof, proof=(*proof.proof[:position], mutated, *proof.proof[position + 1 :])
            )


def test_a_checkpoint_of_another_history_does_not_extend() -> None:
    records = sealed_journal(50)
    tree = JournalTree(records)
    # Another history: the same first 20 records, then different ones, properly chained.
    other_records = records[:20]
    for seq in range(21, 51):
        other_records.append(seal(other_records[-1].hash, deposit_body(seq, "mallory")))
    rewritten = JournalTree(other_records)
    old = tree.checkpoint(30)
    for new_size in (30, 31, 50):
        forged = rewritten.checkpoint(new_size)
        proof = rewritten.consistency(30, new_size)
        with pytest.raises(ProofError):
            verify_extension(old, forged, proof)
    # Before the rewrite point both histories agree, and say so.
    verify_extension(tree.checkpoint(20), rewritten.checkpoint(50), rewritten.consistency(20, 50))
    # The empty journal is extended by every journal.
    verify_extension(tree.checkpoint(0), rewritten.checkpoint(50), rewritten.consistency(0, 50))
