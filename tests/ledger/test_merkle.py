"""The Merkle tree over the journal: RFC 6962 hashes, proofs that verify, and tampering that fails.

Rules checked here:
- Roots and proofs equal those of a naive transcription of RFC 6962 §2.1 (MTH, PATH, PROOF) for
  every tree of 0..64 leaves, every leaf and every pair of sizes.
- Inclusion and consistency proofs verify for random trees of 1 to 10,000 leaves.
- Flipping any single bit of a proof hash, the leaf hash, a root, the leaf index or the old
  tree size makes verification fail; so does dropping, repeating or prepending a proof hash.
- A flipped tree size (inclusion) or new tree size (consistency) checked against the *same*
  root fails exactly when it changes the shape of the proof: RFC 6962 binds the size only
  through the root. Against the true root of the flipped size it always fails. That is why a
  receipt is checked against a checkpoint that holds size and root together, where every
  single-bit flip of a size is rejected (tests/ledger/test_receipts_cli.py).
- Roots cost O(log n) node hashes and proofs O(log^2 n), counted, on a 100,001-leaf tree.

Randomized tests print their seed; replay with IPX_SEED=<seed> .venv/bin/pytest <this file> -s.
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from ledger import merkle
from ledger.errors import ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)


def _base_seed() -> int:
    configured = os.environ.get("IPX_SEED")
    return int(configured) if configured else random.SystemRandom().randrange(1 << 32)


BASE_SEED = _base_seed()


def _rng(offset: int, what: str) -> random.Random:
    seed = BASE_SEED + offset
    print(f"{what}: IPX_SEED={BASE_SEED} (run seed {seed})")
    return random.Random(seed)


# --- A naive transcription of RFC 6962 §2.1, over lists of leaf data. ---


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def reference_root(data: list[bytes]) -> bytes:
    if not data:
        return hashlib.sha256(b"").digest()
    if len(data) == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _split(len(data))
    return _node(reference_root(data[:k]), reference_root(data[k:]))


def reference_path(m: int, data: list[bytes]) -> list[bytes]:
    if len(data) <= 1:
        return []
    k = _split(len(data))
    if m < k:
        return [*reference_path(m, data[:k]), reference_root(data[k:])]
    return [*reference_path(m - k, data[k:]), reference_root(data[:k])]


def reference_subproof(m: int, data: list[bytes], whole: bool) -> list[bytes]:
    if m == len(data):
        return [] if whole else [reference_root(data)]
    k = _split(len(data))
    if m <= k:
        return [*reference_subproof(m, data[:k], whole), reference_root(data[k:])]
    return [*reference_subproof(m - k, data[k:], False), reference_root(data[:k])]


# --- Known answers. ---

# The eight leaves of the Certificate Transparency reference tests (and of the vectors in
# testdata/rfc6962), with the published roots of their prefixes.
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
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_the_empty_tree_has_the_hash_of_the_empty_string() -> None:
    assert MerkleTree().root().hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT


def test_leaves_and_nodes_are_hashed_with_distinct_prefixes() -> None:
    assert leaf_hash(b"").hex() == CT_ROOTS[0]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    tree = MerkleTree([b"a", b"b"])
    assert tree.root() == hashlib.sha256(b"\x01" + leaf_hash(b"a") + leaf_hash(b"b")).digest()


def test_roots_of_the_certificate_transparency_reference_tree() -> None:
    tree = MerkleTree()
    for size, data in enumerate(CT_LEAVES, start=1):
        tree.append(data)
        assert tree.root().hex() == CT_ROOTS[size - 1]
    # Old sizes stay answerable after later appends.
    assert [tree.root(size).hex() for size in range(1, 9)] == CT_ROOTS


# --- Agreement with the RFC text, exhaustively on small trees. ---


def test_every_root_and_proof_of_small_trees_matches_the_rfc_text() -> None:
    data = [i.to_bytes(4, "big") for i in range(64)]
    tree = MerkleTree()
    checked = 0
    for size in range(65):
        prefix = data[:size]
        assert tree.size == size
        assert tree.root() == reference_root(prefix)
        for index in range(size):
            assert tree.inclusion_proof(index) == reference_path(index, prefix), (index, size)
            checked += 1
        for size1 in range(1, size + 1):
            assert tree.consistency_proof(size1) == reference_subproof(size1, prefix, True)
            checked += 1
        if size < 64:
            tree.append(data[size])
    # The same proofs come from a larger tree asked about its past sizes.
    for size in range(1, 65):
        for index in (0, size // 2, size - 1):
            assert tree.inclusion_proof(index, size) == reference_path(index, data[:size])
        assert tree.consistency_proof(size // 2 + 1, size) == reference_subproof(
            size // 2 + 1, data[:size], True
        )
    print(f"matched the RFC text on {checked} proofs")


# --- Random trees of 1 to 10,000 leaves. ---

EDGE_SIZES = (1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 8193, 10_000)
RANDOM_TREES = 40
PROOFS_PER_TREE = 12


def _random_sizes(rng: random.Random) -> list[int]:
    # Log-uniform, so small and large trees both appear.
    randoms = [round(10_000 ** rng.random()) for _ in range(RANDOM_TREES)]
    return [*EDGE_SIZES, *(min(max(size, 1), 10_000) for size in randoms)]


def test_proofs_verify_in_random_trees_of_1_to_10000_leaves() -> None:
    rng = _rng(1, "random trees")
    trees = proofs = 0
    for size in _random_sizes(rng):
        data = [rng.randbytes(32) for _ in range(size)]
        tree = MerkleTree(data)
        root = tree.root()
        indices = {0, size - 1, *(rng.randrange(size) for _ in range(PROOFS_PER_TREE))}
        for index in indices:
            verify_inclusion(leaf_hash(data[index]), index, size, tree.inclusion_proof(index), root)
            proofs += 1
        old_sizes = {1, size, *(rng.randrange(1, size + 1) for _ in range(PROOFS_PER_TREE))}
        for size1 in old_sizes:
            proof = tree.consistency_proof(size1)
            verify_consistency(size1, size, tree.root(size1), root, proof)
            proofs += 1
        trees += 1
    print(f"{trees} trees of 1..10000 leaves, {proofs} inclusion and consistency proofs verified")


def test_a_proof_from_another_history_does_not_verify() -> None:
    rng = _rng(2, "diverging histories")
    for _ in range(50):
        size = rng.randrange(2, 2_000)
        data = [rng.randbytes(32) for _ in range(size)]
        changed = rng.randrange(size)
        other = [*data[:changed], rng.randbytes(32), *data[changed + 1 :]]
        tree, other_tree = MerkleTree(data), MerkleTree(other)
        index = rng.randrange(size)
        with pytest.raises(ProofError):
            verify_inclusion(
                leaf_hash(data[index]), index, size, tree.inclusion_proof(index), other_tree.root()
            )
        # Checkpoints taken after the change differ, so consistency with the old root fails.
        size1 = rng.randrange(changed + 1, size + 1)
        with pytest.raises(ProofError):
            verify_consistency(
                size1,
                size,
                tree.root(size1),
                other_tree.root(),
                other_tree.consistency_proof(size1),
            )


# --- Every single-bit mutation. ---

MUTATION_CASES = 30


def _flips(value: bytes) -> Iterator[bytes]:
    for bit in range(len(value) * 8):
        mutated = bytearray(value)
        mutated[bit // 8] ^= 1 << (bit % 8)
        yield bytes(mutated)


def _rejected(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofError:
        return True
    return False


def _inner_length(index: int, size: int) -> int:
    # Levels where the path of `index` and the right border of the tree have not yet merged.
    return (index ^ (size - 1)).bit_length()


class Tally:
    def __init__(self) -> None:
        self.tried = 0
        self.rejected = 0

    def count(self, rejected: bool) -> None:
        self.tried += 1
        self.rejected += rejected


def _mutation_cases(rng: random.Random, tree_size_max: int) -> Iterator[tuple[int, int]]:
    for case in range(MUTATION_CASES):
        size = (2, 3, 5, 8, 13)[case] if case < 5 else rng.randrange(2, tree_size_max + 1)
        yield size, rng.randrange(size)


@pytest.mark.slow
def test_every_single_bit_mutation_of_an_inclusion_proof_is_rejected() -> None:
    rng = _rng(3, "inclusion mutations")
    data = [rng.randbytes(32) for _ in range(10_000)]
    tree = MerkleTree(data)
    tally, size_flips, size_flips_rejected = Tally(), 0, 0
    for size, index in _mutation_cases(rng, 10_000):
        hashed, root = leaf_hash(data[index]), tree.root(size)
        proof = tree.inclusion_proof(index, size)
        verify_inclusion(hashed, index, size, proof, root)

        def check(h: bytes, i: int, s: int, p: list[bytes], r: bytes) -> bool:
            return _rejected(lambda: verify_inclusion(h, i, s, p, r))

        for position, node in enumerate(proof):
            for mutated in _flips(node):
                bad = [*proof[:position], mutated, *proof[position + 1 :]]
                tally.count(check(hashed, index, size, bad, root))
        for mutated in _flips(hashed):
            tally.count(check(mutated, index, size, proof, root))
        for mutated in _flips(root):
            tally.count(check(hashed, index, size, proof, mutated))
        for bit in range(size.bit_length() + 2):
            tally.count(check(hashed, index ^ (1 << bit), size, proof, root))
            # The size: rejected exactly when the proof no longer has the shape it needs.
            other = size ^ (1 << bit)
            rejected = check(hashed, index, other, proof, root)
            same_shape = index < other and _inner_length(index, other) == _inner_length(index, size)
            assert rejected != same_shape, (index, size, other)
            size_flips += 1
            size_flips_rejected += rejected
            # Against the true root of the flipped size, when that tree exists: always rejected.
            if 0 < other <= tree.size:
                tally.count(check(hashed, index, other, proof, tree.root(other)))
        for bad in (proof[:-1], [*proof, proof[-1]], [proof[0], *proof]):
            tally.count(check(hashed, index, size, bad, root))
    print(
        f"inclusion: {MUTATION_CASES} proofs, {tally.rejected}/{tally.tried} mutations rejected; "
        f"size flips against the same root: {size_flips_rejected}/{size_flips} rejected, the "
        f"rest keep the proof's shape and are caught by the checkpoint"
    )
    assert tally.rejected == tally.tried


@pytest.mark.slow
def test_every_single_bit_mutation_of_a_consistency_proof_is_rejected() -> None:
    rng = _rng(4, "consistency mutations")
    data = [rng.randbytes(32) for _ in range(10_000)]
    tree = MerkleTree(data)
    tally, size2_flips, size2_flips_rejected = Tally(), 0, 0
    for size2, size1_minus_one in _mutation_cases(rng, 10_000):
        size1 = size1_minus_one + 1
        if size1 == size2:
            size1 -= 1
        root1, root2 = tree.root(size1), tree.root(size2)
        proof = tree.consistency_proof(size1, size2)
        verify_consistency(size1, size2, root1, root2, proof)

        def check(s1: int, s2: int, r1: bytes, r2: bytes, p: list[bytes]) -> bool:
            return _rejected(lambda: verify_consistency(s1, s2, r1, r2, p))

        for position, node in enumerate(proof):
            for mutated in _flips(node):
                bad = [*proof[:position], mutated, *proof[position + 1 :]]
                tally.count(check(size1, size2, root1, root2, bad))
        for mutated in _flips(root1):
            tally.count(check(size1, size2, mutated, root2, proof))
        for mutated in _flips(root2):
            tally.count(check(size1, size2, root1, mutated, proof))
        for bit in range(size2.bit_length() + 2):
            tally.count(check(size1 ^ (1 << bit), size2, root1, root2, proof))
            other = size2 ^ (1 << bit)
            rejected = check(size1, other, root1, root2, proof)
            same_shape = other > size1 and _inner_length(size1 - 1, other) == _inner_length(
                size1 - 1, size2
            )
            assert rejected != same_shape, (size1, size2, other)
            size2_flips += 1
            size2_flips_rejected += rejected
            if size1 < other <= tree.size:
                tally.count(check(size1, other, root1, tree.root(other), proof))
        for bad in (proof[:-1], [*proof, proof[-1]], [root1, *proof], proof[1:]):
            tally.count(check(size1, size2, root1, root2, bad))
    print(
        f"consistency: {MUTATION_CASES} proofs, {tally.rejected}/{tally.tried} mutations "
        f"rejected; new-size flips against the same root: {size2_flips_rejected}/{size2_flips} "
        f"rejected, the rest keep the proof's shape and are caught by the checkpoint"
    )
    assert tally.rejected == tally.tried


# --- Edge cases the RFC leaves open, and bad inputs. ---


def test_consistency_edge_cases() -> None:
    tree = MerkleTree([b"a", b"b", b"c"])
    root1, root3 = tree.root(1), tree.root(3)
    verify_consistency(3, 3, root3, root3, [])
    assert tree.consistency_proof(3, 3) == []
    with pytest.raises(ProofError, match="equal, so the proof must be empty"):
        verify_consistency(3, 3, root3, root3, [root1])
    with pytest.raises(ProofError, match="roots differ"):
        verify_consistency(3, 3, root3, root1, [])
    with pytest.raises(ProofError, match="empty tree is meaningless"):
        verify_consistency(0, 3, EMPTY_ROOT, root3, [])
    with pytest.raises(ProofError, match="smaller than the earlier size"):
        verify_consistency(3, 1, root3, root1, [])
    with pytest.raises(ProofError, match="the proof is empty"):
        verify_consistency(1, 3, root1, root3, [])
    with pytest.raises(ValueError, match="0 < size1 <= size2"):
        tree.consistency_proof(0, 3)
    with pytest.raises(ValueError, match=r"outside 0\.\.3"):
        tree.consistency_proof(1, 4)


def test_inclusion_edge_cases() -> None:
    tree = MerkleTree([b"a", b"b", b"c"])
    proof = tree.inclusion_proof(2)
    verify_inclusion(leaf_hash(b"c"), 2, 3, proof, tree.root())
    verify_inclusion(leaf_hash(b"a"), 0, 1, [], tree.root(1))
    with pytest.raises(ProofError, match="outside a tree of 3"):
        verify_inclusion(leaf_hash(b"c"), 3, 3, proof, tree.root())
    with pytest.raises(ProofError, match="outside a tree of 0"):
        verify_inclusion(leaf_hash(b"c"), 0, 0, [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="leaf hash is 1 bytes"):
        verify_inclusion(b"c", 2, 3, proof, tree.root())
    with pytest.raises(ProofError, match="proof hash 0 is 31 bytes"):
        verify_inclusion(leaf_hash(b"c"), 2, 3, [proof[0][:31]], tree.root())
    with pytest.raises(ValueError, match="leaf index 3 is outside"):
        tree.inclusion_proof(3)
    with pytest.raises(ValueError, match="tree size 4 is outside"):
        tree.root(4)


def test_a_leaf_cannot_pose_as_an_interior_node() -> None:
    # Without the 0x00/0x01 prefixes, the pair (a, b) would be a leaf of the tree above it.
    tree = MerkleTree([b"a", b"b"])
    forged = leaf_hash(b"a") + leaf_hash(b"b")
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(forged), 0, 1, [], tree.root())


# --- Cost: counted node hashes, not timings. ---


def test_roots_and_proofs_cost_logarithmic_work_on_100001_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    size = 100_001
    tree = MerkleTree()
    counted = [0]
    real_node_hash = merkle._node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        counted[0] += 1
        return real_node_hash(left, right)

    monkeypatch.setattr(merkle, "_node_hash", counting)
    for i in range(size):
        tree.append(i.to_bytes(8, "big"))
    assert counted[0] < size  # Each completed subtree is hashed once: n - popcount(n) nodes.
    depth = size.bit_length()  # 17

    def cost(action: Callable[[], object]) -> int:
        counted[0] = 0
        action()
        return counted[0]

    assert cost(tree.root) <= depth
    worst_inclusion = max(cost(partial(tree.inclusion_proof, i)) for i in range(0, size, 997))
    worst_consistency = max(cost(partial(tree.consistency_proof, m)) for m in range(1, size, 997))
    assert worst_inclusion <= depth * depth
    assert worst_consistency <= depth * depth
    print(
        f"100,001 leaves: root {cost(tree.root)} node hashes, inclusion proof <= "
        f"{worst_inclusion}, consistency proof <= {worst_consistency}"
    )
