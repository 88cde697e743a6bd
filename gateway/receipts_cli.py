"""`ipx ledger` subcommands for Merkle receipts: checkpoints, inclusion and consistency proofs.

    ipx ledger checkpoint DIR [--tree-size N] [--signing-key KEY.pem]     > checkpoint.json
    ipx ledger prove DIR SEQ [--tree-size N]                              > receipt.json
    ipx ledger verify-proof receipt.json --checkpoint checkpoint.json [--public-key PUB.pem]
    ipx ledger prove-consistency DIR OLD_SIZE [NEW_SIZE]                  > consistency.json
    ipx ledger verify-consistency old.json new.json consistency.json [--public-key PUB.pem]
    ipx ledger keygen KEY.pem PUB.pem

The same keys from OpenSSL: `openssl genpkey -algorithm ed25519 -out KEY.pem` and
`openssl pkey -in KEY.pem -pubout -out PUB.pem`.

Exit codes: 0 done or verified; 1 a proof, receipt, checkpoint or signature does not verify;
2 the input cannot be used (missing or malformed file, damaged journal, seq or size out of
range). Verdicts go to stdout, JSON artifacts to stdout, problems to stderr.

This module is the thin edge: ledger.file_store reads the journal, ledger.receipts builds and
checks every artifact, and only the Ed25519 signing lives here (ledger/ stays free of the
`cryptography` dependency).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import JournalError, ProofError
from ledger.file_store import read_journal
from ledger.receipts import (
    Checkpoint,
    ConsistencyProof,
    JournalTree,
    Receipt,
    signed_message,
    verify_extension,
    verify_receipt,
)
from ledger.records import Record

EXIT_OK = 0
EXIT_NOT_VERIFIED = 1
EXIT_UNUSABLE_INPUT = 2


class UnusableInput(Exception):
    """An input file or argument cannot be used at all (as opposed to: it does not verify)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the receipt subcommands to the `ipx ledger` group."""
    checkpoint = subparsers.add_parser(
        "checkpoint", help="print the journal's head: tree size, Merkle root, last seq, hash"
    )
    checkpoint.add_argument("directory", type=Path, help="journal directory")
    checkpoint.add_argument("--tree-size", type=int, help="an earlier size (default: all)")
    checkpoint.add_argument("--signing-key", type=Path, help="Ed25519 private key (PEM)")
    checkpoint.set_defaults(handler=_guarded(_checkpoint))

    prove = subparsers.add_parser("prove", help="print a receipt proving record SEQ is included")
    prove.add_argument("directory", type=Path, help="journal directory")
    prove.add_argument("seq", type=int, help="the record's seq")
    prove.add_argument("--tree-size", type=int, help="the checkpoint's size (default: all)")
    prove.set_defaults(handler=_guarded(_prove))

    verify_proof = subparsers.add_parser("verify-proof", help="check a receipt")
    verify_proof.add_argument("receipt", type=Path, help="receipt JSON from `ipx ledger prove`")
    verify_proof.add_argument(
        "--checkpoint", type=Path, required=True, help="the checkpoint you trust (JSON)"
    )
    verify_proof.add_argument("--public-key", type=Path, help="Ed25519 public key (PEM)")
    verify_proof.set_defaults(handler=_guarded(_verify_proof))

    prove_consistency = subparsers.add_parser(
        "prove-consistency", help="print a proof that the journal only grew since OLD_SIZE"
    )
    prove_consistency.add_argument("directory", type=Path, help="journal directory")
    prove_consistency.add_argument("old_size", type=int, help="the earlier checkpoint's size")
    prove_consistency.add_argument("new_size", type=int, nargs="?", help="default: all")
    prove_consistency.set_defaults(handler=_guarded(_prove_consistency))

    verify_consistency = subparsers.add_parser(
        "verify-consistency", help="check that a later checkpoint extends an earlier one"
    )
    verify_consistency.add_argument("old_checkpoint", type=Path)
    verify_consistency.add_argument("new_checkpoint", type=Path)
    verify_consistency.add_argument("proof", type=Path, help="from `ipx ledger prove-consistency`")
    verify_consistency.add_argument("--public-key", type=Path, help="Ed25519 public key (PEM)")
    verify_consistency.set_defaults(handler=_guarded(_verify_consistency))

    keygen = subparsers.add_parser("keygen", help="write an Ed25519 key pair for checkpoints")
    keygen.add_argument("private_key", type=Path, help="where to write the private key (PEM)")
    keygen.add_argument("public_key", type=Path, help="where to write the public key (PEM)")
    keygen.set_defaults(handler=_guarded(_keygen))


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    # One place maps the three kinds of outcome to exit codes and messages.
    def run(arguments: argparse.Namespace) -> int:
        try:
            return handler(arguments)
        except ProofError as error:
            print(f"NOT VERIFIED: {error.reason}", file=sys.stderr)
            return EXIT_NOT_VERIFIED
        except (UnusableInput, JournalError, ValueError, OSError) as error:
            print(f"ipx ledger {arguments.ledger_command}: {error}", file=sys.stderr)
            return EXIT_UNUSABLE_INPUT

    return run


# --- Building artifacts from the journal. ---


def _read_tree(directory: Path, wanted_seq: int | None = None) -> tuple[JournalTree, Record | None]:
    tree = JournalTree()
    wanted: Record | None = None
    for record in read_journal(directory):
        tree.add(record)
        if record.seq == wanted_seq:
            wanted = record
    return tree, wanted


def _checkpoint(arguments: argparse.Namespace) -> int:
    tree, _ = _read_tree(arguments.directory)
    checkpoint = tree.checkpoint(arguments.tree_size)
    if arguments.signing_key is not None:
        signature = _load_private_key(arguments.signing_key).sign(signed_message(checkpoint))
        checkpoint = msgspec.structs.replace(checkpoint, signature=signature)
    sys.stdout.buffer.write(checkpoint.to_json())
    return EXIT_OK


def _prove(arguments: argparse.Namespace) -> int:
    tree, record = _read_tree(arguments.directory, arguments.seq)
    receipt = tree.receipt(arguments.seq, arguments.tree_size, record)
    sys.stdout.buffer.write(receipt.to_json())
    return EXIT_OK


def _prove_consistency(arguments: argparse.Namespace) -> int:
    tree, _ = _read_tree(arguments.directory)
    proof = tree.consistency(arguments.old_size, arguments.new_size)
    sys.stdout.buffer.write(proof.to_json())
    return EXIT_OK


# --- Checking artifacts: no journal needed. ---


def _verify_proof(arguments: argparse.Namespace) -> int:
    receipt = _load(Receipt, arguments.receipt)
    checkpoint = _load(Checkpoint, arguments.checkpoint)
    signature_note = _check_signature(checkpoint, arguments.public_key)
    verify_receipt(receipt, checkpoint)
    print(
        f"VERIFIED: record seq {receipt.seq} (hash {receipt.record_hash.hex()}) is in the "
        f"journal of {checkpoint.tree_size} records with root {checkpoint.root.hex()}; "
        f"checkpoint {signature_note}"
    )
    return EXIT_OK


def _verify_consistency(arguments: argparse.Namespace) -> int:
    old = _load(Checkpoint, arguments.old_checkpoint)
    new = _load(Checkpoint, arguments.new_checkpoint)
    proof = _load(ConsistencyProof, arguments.proof)
    old_note = _check_signature(old, arguments.public_key)
    new_note = _check_signature(new, arguments.public_key)
    verify_extension(old, new, proof)
    print(
        f"VERIFIED: the journal of {new.tree_size} records (root {new.root.hex()}) extends the "
        f"journal of {old.tree_size} records (root {old.root.hex()}): it was only appended to; "
        f"earlier checkpoint {old_note}; later checkpoint {new_note}"
    )
    return EXIT_OK


def _check_signature(checkpoint: Checkpoint, public_key_path: Path | None) -> str:
    # Returns a note for the verdict line, or raises ProofError.
    if public_key_path is None:
        if checkpoint.signature is None:
            return "unsigned (trust it only as far as the place you got it from)"
        return "signature NOT checked (no --public-key given)"
    if checkpoint.signature is None:
        raise ProofError("the checkpoint is not signed, but a public key was given to check it")
    try:
        _load_public_key(public_key_path).verify(checkpoint.signature, signed_message(checkpoint))
    except InvalidSignature:
        raise ProofError("the checkpoint's signature does not verify with the public key") from None
    return "signature verified"


_Artifact = TypeVar("_Artifact", Receipt, Checkpoint, ConsistencyProof)


def _load(kind: type[_Artifact], path: Path) -> _Artifact:
    # ledger.receipts refuses a malformed artifact with a ProofError; here that is input the
    # command cannot use (exit 2), not a proof that failed (exit 1): no verdict was reached.
    data = _read_file(path)
    try:
        return kind.from_json(data)
    except ProofError as error:
        raise UnusableInput(f"{path}: {error.reason}") from error


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UnusableInput(f"cannot read {path}: {error.strerror}") from error


# --- Keys. ---


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_file(path), password=None)
    except (ValueError, TypeError) as error:
        raise UnusableInput(f"{path} is not an unencrypted PEM private key: {error}") from error
    if not isinstance(key, Ed25519PrivateKey):
        raise UnusableInput(f"{path} is not an Ed25519 private key")
    return key


def _load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(_read_file(path))
    except (ValueError, TypeError) as error:
        raise UnusableInput(f"{path} is not a PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise UnusableInput(f"{path} is not an Ed25519 public key")
    return key


def _keygen(arguments: argparse.Namespace) -> int:
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    # Never overwrite a key; the private one is readable by its owner only.
    for path in (arguments.private_key, arguments.public_key):
        if path.exists():
            raise UnusableInput(f"{path} already exists; not overwriting a key")
    _write_new(arguments.private_key, private_pem, 0o600)
    _write_new(arguments.public_key, public_pem, 0o644)
    print(f"wrote {arguments.private_key} (keep secret) and {arguments.public_key} (publish)")
    return EXIT_OK


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as error:
        raise UnusableInput(f"{path} already exists; not overwriting a key") from error
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
