"""Every public RFC 6962 proof vector gives its expected result.

The vectors in testdata/rfc6962/ are transparency-dev/merkle's (Apache License 2.0, notice and
provenance in LICENSE and README.md beside them). Each says whether verifying it must fail
(`wantErr`); the negative ones are the happy paths with one thing changed (a flipped bit, a
swapped root, a size doubled or halved, garbage before or after the proof, ...).

Rules checked here:
- Each of the 98 inclusion and 98 consistency vectors verifies exactly when wantErr is false.
- The tree builds, from the eight reference leaves, exactly the proofs and roots of every
  happy-path vector: the generator agrees with the vectors, not just the verifier.

One vector encodes a choice the RFC leaves open: consistency/additional/
sizes-are-equal-zero-and-proof-is-empty expects an error for size1 = size2 = 0. RFC 6962 §2.1.2
defines consistency proofs only for 0 < size1, and transparency-dev/merkle rejects every
size1 = 0 (its PR #236); ledger.merkle does the same.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import ProofError
from ledger.merkle import MerkleTree, leaf_hash, verify_consistency, verify_inclusion

VECTORS = Path(__file__).parent / "testdata" / "rfc6962"
INCLUSION = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((VECTORS / "consistency").rglob("*.json"))

# The eight leaves the vectors' trees are built from (Certificate Transparency's test leaves).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]


def _load(path: Path) -> dict[str, Any]:
    vector: dict[str, Any] = json.loads(path.read_text())
    return vector


def _hashes(values: list[str] | None) -> list[bytes]:
    # Go's JSON encoder writes a nil proof as null.
    return [base64.b64decode(value) for value in values or []]


def _inclusion_fails(vector: dict[str, Any]) -> bool:
    try:
        verify_inclusion(
            base64.b64decode(vector["leafHash"]),
            vector["leafIdx"],
            vector["treeSize"],
            _hashes(vector["proof"]),
            base64.b64decode(vector["root"]),
        )
    except ProofError:
        return True
    return False


def _consistency_fails(vector: dict[str, Any]) -> bool:
    try:
        verify_consistency(
            vector["size1"],
            vector["size2"],
            base64.b64decode(vector["root1"]),
            base64.b64decode(vector["root2"]),
            _hashes(vector["proof"]),
        )
    except ProofError:
        return True
    return False


def _name(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def test_the_vectors_and_their_license_notice_are_all_there() -> None:
    assert (len(INCLUSION), len(CONSISTENCY)) == (98, 98)
    assert "Apache License" in (VECTORS / "LICENSE").read_text()
    assert "transparency-dev/merkle" in (VECTORS / "README.md").read_text()


@pytest.mark.parametrize("path", INCLUSION, ids=_name)
def test_inclusion_vector(path: Path) -> None:
    vector = _load(path)
    assert _inclusion_fails(vector) == vector["wantErr"], vector["desc"]


@pytest.mark.parametrize("path", CONSISTENCY, ids=_name)
def test_consistency_vector(path: Path) -> None:
    vector = _load(path)
    assert _consistency_fails(vector) == vector["wantErr"], vector["desc"]


def test_vector_tally() -> None:
    passed = rejected = 0
    for path in INCLUSION + CONSISTENCY:
        vector = _load(path)
        fails = _inclusion_fails(vector) if path in INCLUSION else _consistency_fails(vector)
        assert fails == vector["wantErr"], _name(path)
        if fails:
            rejected += 1
        else:
            passed += 1
    print(f"RFC 6962 vectors: {passed} positive verified, {rejected} negative rejected")
    assert (passed, rejected) == (12, 184)


def test_the_tree_generates_the_happy_path_proofs() -> None:
    tree = MerkleTree(CT_LEAVES)
    checked = 0
    for path in INCLUSION:
        vector = _load(path)
        if path.name != "happy-path.json":
            continue
        index, size = vector["leafIdx"], vector["treeSize"]
        assert leaf_hash(CT_LEAVES[index]) == base64.b64decode(vector["leafHash"])
        assert tree.root(size) == base64.b64decode(vector["root"])
        assert tree.inclusion_proof(index, size) == _hashes(vector["proof"])
        checked += 1
    for path in CONSISTENCY:
        vector = _load(path)
        if path.name != "happy-path.json":
            continue
        size1, size2 = vector["size1"], vector["size2"]
        assert tree.root(size1) == base64.b64decode(vector["root1"])
        assert tree.root(size2) == base64.b64decode(vector["root2"])
        assert tree.consistency_proof(size1, size2) == _hashes(vector["proof"])
        checked += 1
    assert checked == 10
