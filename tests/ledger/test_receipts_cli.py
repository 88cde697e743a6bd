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
  of another history exits 1; unusable input exits 2, a receipt, checkpoint or proof file that
  is empty or not well formed included (it cannot be checked: no verdict); Ed25519 signing and
  checking, including a key made by openssl.

Randomized tests print their seed; replay with IPX_SEED=<seed> .venv/bin/pytest <this file> -s.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import ProofError
from ledger.file_store import FileJournal
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
                rejected += _rejected(partial(verify_receipt, mutated, checkpoint))
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
            rejected += _rejected(partial(verify_receipt, receipt, mutated))
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
    for _ in range(20):
        one, other = rng.randrange(1, 601), rng.randrange(1, 601)
        pairs.append((min(one, other), max(one, other)))
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
            rejected += _rejected(partial(verify_extension, *case))
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


# --- The `ipx ledger` commands, run for real on a journal on disk. ---

ROOT = Path(__file__).resolve().parents[2]
COMMAND_SECONDS_MAX = 60


def ipx(*arguments: str | Path | int) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ledger", *map(str, arguments)],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS_MAX,
        check=False,
    )


def ipx_to_file(path: Path, *arguments: str | Path | int) -> Path:
    result = ipx(*arguments)
    assert result.returncode == 0, result.stderr
    path.write_text(result.stdout)
    return path


def append_deposits(directory: Path, count: int, account: str = "alice") -> int:
    with FileJournal.open(directory) as journal:
        first = journal.last_seq + 1
        journal.append_bodies([deposit_body(seq, account) for seq in range(first, first + count)])
        return journal.last_seq


def assert_not_verified(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("NOT VERIFIED: "), result.stderr
    assert reason in result.stderr, result.stderr
    assert "VERIFIED:" not in result.stdout


def test_cli_proves_a_record_and_verifies_the_receipt(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    assert append_deposits(journal, 25) == 25
    checkpoint = ipx_to_file(tmp_path / "checkpoint.json", "checkpoint", journal)
    assert json.loads(checkpoint.read_text())["tree_size"] == 25
    for seq in (1, 7, 25):
        receipt = ipx_to_file(tmp_path / f"receipt-{seq}.json", "prove", journal, seq)
        result = ipx("verify-proof", receipt, "--checkpoint", checkpoint)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"VERIFIED: record seq {seq} ")
        assert "checkpoint unsigned" in result.stdout


def _edited(source: Path, target: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    document = json.loads(source.read_text())
    edit(document)
    target.write_text(json.dumps(document))
    return target


def _flip_hex_digit(text: str, position: int = 0) -> str:
    flipped = format(int(text[position], 16) ^ 1, "x")
    return text[:position] + flipped + text[position + 1 :]


def test_cli_rejects_a_tampered_receipt_with_the_reason(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    append_deposits(journal, 25)
    checkpoint = ipx_to_file(tmp_path / "checkpoint.json", "checkpoint", journal)
    receipt = ipx_to_file(tmp_path / "receipt.json", "prove", journal, 7)

    def proof_hash(document: dict[str, Any]) -> None:
        document["proof"][2] = _flip_hex_digit(document["proof"][2], 17)

    def record_hash_only(document: dict[str, Any]) -> None:
        document["record_hash"] = _flip_hex_digit(document["record_hash"])
        document["record"] = None

    def record_content(document: dict[str, Any]) -> None:
        document["record"] = _flip_hex_digit(document["record"], len(document["record"]) - 80)

    def seq(document: dict[str, Any]) -> None:
        document["seq"] = 6

    def tree_size(document: dict[str, Any]) -> None:
        document["tree_size"] = 24

    for edit, reason in (
        (proof_hash, "the inclusion proof does not verify"),
        (record_hash_only, "the inclusion proof does not verify"),
        (record_content, "the receipt's record"),
        (seq, "must be leaf 5"),
        (tree_size, "the receipt is for a tree of 24 records but the checkpoint has 25"),
    ):
        tampered = _edited(receipt, tmp_path / f"{edit.__name__}.json", edit)
        assert_not_verified(ipx("verify-proof", tampered, "--checkpoint", checkpoint), reason)


def test_cli_shows_the_journal_was_only_appended_to(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    append_deposits(journal, 10)
    old = ipx_to_file(tmp_path / "old.json", "checkpoint", journal)
    old_receipt = ipx_to_file(tmp_path / "old-receipt.json", "prove", journal, 3)
    assert append_deposits(journal, 13) == 23
    new = ipx_to_file(tmp_path / "new.json", "checkpoint", journal)
    proof = ipx_to_file(tmp_path / "consistency.json", "prove-consistency", journal, 10)
    result = ipx("verify-consistency", old, new, proof)
    assert result.returncode == 0, result.stderr
    assert "extends the journal of 10 records" in result.stdout
    # Receipts stay checkable against the checkpoint of their size, old or new.
    assert ipx("verify-proof", old_receipt, "--checkpoint", old).returncode == 0
    at_old_size = ipx_to_file(tmp_path / "r.json", "prove", journal, 3, "--tree-size", 10)
    assert ipx("verify-proof", at_old_size, "--checkpoint", old).returncode == 0
    assert_not_verified(
        ipx("verify-proof", old_receipt, "--checkpoint", new), "get a receipt at the checkpoint's"
    )
    # A proof made for other sizes is refused, not stretched.
    other = ipx_to_file(tmp_path / "c9.json", "prove-consistency", journal, 9)
    assert_not_verified(ipx("verify-consistency", old, new, other), "the proof is from size 9")


def test_cli_rejects_a_checkpoint_of_another_history(tmp_path: Path) -> None:
    honest, forked, stranger = tmp_path / "honest", tmp_path / "forked", tmp_path / "stranger"
    append_deposits(honest, 20)
    append_deposits(forked, 10)  # The same first ten records ...
    append_deposits(forked, 12, account="mallory")  # ... then another history.
    append_deposits(stranger, 30, account="bob")
    old = ipx_to_file(tmp_path / "honest-15.json", "checkpoint", honest, "--tree-size", 15)
    forked_head = ipx_to_file(tmp_path / "forked.json", "checkpoint", forked)
    forked_proof = ipx_to_file(tmp_path / "forked-proof.json", "prove-consistency", forked, 15)
    assert_not_verified(
        ipx("verify-consistency", old, forked_head, forked_proof), "does not extend the earlier"
    )
    stranger_head = ipx_to_file(tmp_path / "stranger.json", "checkpoint", stranger)
    stranger_proof = ipx_to_file(
        tmp_path / "stranger-proof.json", "prove-consistency", stranger, 15
    )
    assert_not_verified(
        ipx("verify-consistency", old, stranger_head, stranger_proof), "does not extend the earlier"
    )
    # Where the histories still agree, the fork is a faithful extension: the check can pass.
    before_fork = ipx_to_file(tmp_path / "honest-10.json", "checkpoint", honest, "--tree-size", 10)
    fork_from_10 = ipx_to_file(tmp_path / "fork-10.json", "prove-consistency", forked, 10)
    assert ipx("verify-consistency", before_fork, forked_head, fork_from_10).returncode == 0


def test_cli_signs_checkpoints_and_checks_the_signature(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    append_deposits(journal, 12)
    private, public = tmp_path / "key.pem", tmp_path / "key.pub.pem"
    assert ipx("keygen", private, public).returncode == 0
    assert private.stat().st_mode & 0o777 == 0o600
    signed = ipx_to_file(tmp_path / "signed.json", "checkpoint", journal, "--signing-key", private)
    unsigned = ipx_to_file(tmp_path / "unsigned.json", "checkpoint", journal)
    receipt = ipx_to_file(tmp_path / "receipt.json", "prove", journal, 5)
    result = ipx("verify-proof", receipt, "--checkpoint", signed, "--public-key", public)
    assert result.returncode == 0, result.stderr
    assert "checkpoint signature verified" in result.stdout
    assert "signature NOT checked" in ipx("verify-proof", receipt, "--checkpoint", signed).stdout

    def signature(document: dict[str, Any]) -> None:
        document["signature"] = _flip_hex_digit(document["signature"], 40)

    forged = _edited(signed, tmp_path / "forged.json", signature)
    assert_not_verified(
        ipx("verify-proof", receipt, "--checkpoint", forged, "--public-key", public),
        "signature does not verify",
    )
    assert_not_verified(
        ipx("verify-proof", receipt, "--checkpoint", unsigned, "--public-key", public),
        "not signed",
    )
    other_private, other_public = tmp_path / "other.pem", tmp_path / "other.pub.pem"
    assert ipx("keygen", other_private, other_public).returncode == 0
    assert_not_verified(
        ipx("verify-proof", receipt, "--checkpoint", signed, "--public-key", other_public),
        "signature does not verify",
    )
    # Consistency between two signed checkpoints, both signatures checked.
    append_deposits(journal, 3)
    signed_new = ipx_to_file(tmp_path / "new.json", "checkpoint", journal, "--signing-key", private)
    proof = ipx_to_file(tmp_path / "proof.json", "prove-consistency", journal, 12)
    result = ipx("verify-consistency", signed, signed_new, proof, "--public-key", public)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("signature verified") == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_cli_accepts_keys_made_by_openssl(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    append_deposits(journal, 4)
    private, public = tmp_path / "key.pem", tmp_path / "key.pub.pem"
    for command in (
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)],
        ["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)],
    ):
        subprocess.run(command, check=True, capture_output=True, timeout=COMMAND_SECONDS_MAX)
    signed = ipx_to_file(tmp_path / "signed.json", "checkpoint", journal, "--signing-key", private)
    receipt = ipx_to_file(tmp_path / "receipt.json", "prove", journal, 4)
    result = ipx("verify-proof", receipt, "--checkpoint", signed, "--public-key", public)
    assert result.returncode == 0, result.stderr


def test_cli_exits_2_on_input_it_cannot_use(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    append_deposits(journal, 5)
    checkpoint = ipx_to_file(tmp_path / "checkpoint.json", "checkpoint", journal)
    for arguments, message in (
        (("prove", journal, 6), "seq 6 is not among records 1..5"),
        (("prove", journal, 0), "seq 0 is not among records 1..5"),
        (("prove", journal, 6, "--tree-size", 7), "tree size 7 is outside 0..5"),
        (("checkpoint", journal, "--tree-size", 6), "tree size 6 is outside 0..5"),
        (("prove-consistency", journal, 0, 9), "outside 0..5"),
        (("prove", tmp_path / "missing", 1), "no journal at"),
        (("verify-proof", tmp_path / "missing.json", "--checkpoint", checkpoint), "cannot read"),
        (("checkpoint", journal, "--signing-key", checkpoint), "not an unencrypted PEM"),
        (("keygen", checkpoint, tmp_path / "pub.pem"), "already exists"),
    ):
        result = ipx(*arguments)
        assert result.returncode == 2, (arguments, result.stderr)
        assert message in result.stderr, (arguments, result.stderr)
    assert not (tmp_path / "pub.pem").exists()


def test_cli_exits_2_on_a_receipt_checkpoint_or_proof_that_is_not_well_formed(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal"
    append_deposits(journal, 5)
    checkpoint = ipx_to_file(tmp_path / "checkpoint.json", "checkpoint", journal)
    receipt = ipx_to_file(tmp_path / "receipt.json", "prove", journal, 3)
    proof = ipx_to_file(tmp_path / "proof.json", "prove-consistency", journal, 2)
    old = ipx_to_file(tmp_path / "old.json", "checkpoint", journal, "--tree-size", 2)
    not_hex = _edited(receipt, tmp_path / "not-hex.json", lambda d: d.update(root="zz" * 32))
    for name, text in (("empty", ""), ("object", "{}"), ("junk", "]["), ("list", "[1, 2]")):
        bad = tmp_path / f"{name}.json"
        bad.write_text(text)
        for arguments, what in (
            (("verify-proof", bad, "--checkpoint", checkpoint), "receipt"),
            (("verify-proof", receipt, "--checkpoint", bad), "checkpoint"),
            (("verify-consistency", bad, checkpoint, proof), "checkpoint"),
            (("verify-consistency", old, checkpoint, bad), "consistency proof"),
        ):
            result = ipx(*arguments)
            assert result.returncode == 2, (name, arguments, result.stdout, result.stderr)
            assert f"{bad}: not a valid {what}" in result.stderr, (name, result.stderr)
            assert "VERIFIED" not in result.stdout + result.stderr
    result = ipx("verify-proof", not_hex, "--checkpoint", checkpoint)
    assert result.returncode == 2 and "not a valid receipt" in result.stderr, result.stderr
    assert ipx("verify-consistency", old, checkpoint, proof).returncode == 0  # As made.


def test_cli_refuses_a_damaged_journal(tmp_path: Path) -> None:
    journal = tmp_path / "journal"
    append_deposits(journal, 5)
    (segment,) = (journal / "journal").glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[len(data) // 3] ^= 0x40  # Inside an early frame: damage, not a torn tail.
    segment.write_bytes(bytes(data))
    result = ipx("checkpoint", journal)
    assert result.returncode == 2
    assert "journal corrupt at seq" in result.stderr
