"""An append-only Merkle tree over the journal, built as RFC 6962 (Certificate Transparency) says.

Invariants:
- Hashes follow RFC 6962 §2.1 (RFC 9162 §2.1.1): leaf hash = SHA-256(0x00 || data), interior
  node = SHA-256(0x01 || left || right), the empty tree's root = SHA-256(""). The two prefixes
  keep a leaf from ever being passed off as an interior node (second-preimage resistance).
- Leaves are only appended; the tree of any earlier size stays computable from the same
  object, so a root or proof for an old checkpoint is as cheap as one for the current size.
- `_levels[h][i]` is the hash of the complete subtree of 2**h leaves starting at leaf i * 2**h.
  Complete subtrees never change once filled, so the cache never goes stale. Every subtree the
  RFC recursion visits starts at a multiple of the largest power of two not smaller than its
  size, which is what lets `_range_hash` read it from the cache (see there).
- Roots cost O(log n) hashes, inclusion and consistency proofs O(log^2 n); appends O(1)
  amortised. Nothing walks the leaves.
- Verification follows RFC 9162 §2.1.3.2 and §2.1.4.2 to the letter, plus the edge cases the
  RFC leaves undefined, settled as transparency-dev/merkle settles them: a consistency proof
  from the empty tree is meaningless and rejected; equal sizes need an empty proof and equal
  roots. Failure raises ProofError with the reason; success returns None.
- An inclusion proof does not pin the tree size on its own: the root does. A verifier must take
  (size, root) together from a checkpoint it trusts (see ledger/receipts.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.errors import ProofError

HASH_BYTES = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 6962 hash of a leaf: SHA-256(0x00 || data)."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    # The k of RFC 6962 §2.1: the largest power of two smaller than n, for n > 1.
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    """An append-only RFC 6962 tree over leaf data (here: record hashes, in seq order)."""

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for data in leaves:
            self.append(data)

    @property
    def size(self) -> int:
        """Return the number of leaves."""
        return len(self._levels[0])

    def append(self, data: bytes) -> None:
        """Add a leaf whose data is `data` (it is hashed with the leaf prefix here)."""
        self.append_leaf_hash(leaf_hash(data))

    def append_leaf_hash(self, hashed: bytes) -> None:
        """Add a leaf given its leaf hash, completing every subtree it closes."""
        levels = self._levels
        levels[0].append(hashed)
        height = 0
        # A subtree of 2**(h+1) leaves is complete when its right half just completed, i.e.
        # when level h now holds an even number of hashes.
        while len(levels[height]) % 2 == 0:
            level = levels[height]
            parent = _node_hash(level[-2], level[-1])
            height += 1
            if height == len(levels):
                levels.append([])
            levels[height].append(parent)

    def leaf_hash_at(self, index: int) -> bytes:
        """Return the leaf hash at 0-based `index`."""
        self._check_index(index, self.size)
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        """Return MTH(D[0:size]) (the current size by default)."""
        size = self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return PATH(index, D[0:size]) of RFC 6962 §2.1.1, ordered from the leaf upwards."""
        size = self._check_size(size)
        self._check_index(index, size)
        siblings: list[bytes] = []  # Collected from the root downwards, reversed at the end.
        low, high = 0, size
        while high - low > 1:
            split = low + _largest_power_of_two_below(high - low)
            if index < split:
                siblings.append(self._range_hash(split, high))
                high = split
            else:
                siblings.append(self._range_hash(low, split))
                low = split
        siblings.reverse()
        return siblings

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """Return PROOF(size1, D[0:size2]) of RFC 6962 §2.1.2, ordered from the bottom up.

        Defined for 0 < size1 <= size2; equal sizes give the empty proof.
        """
        size2 = self._check_size(size2)
        if not 0 < size1 <= size2:
            raise ValueError(
                f"a consistency proof needs 0 < size1 <= size2, got size1 {size1}, size2 {size2}"
            )
        nodes: list[bytes] = []  # SUBPROOF(m, D[low:high], whole), from the root downwards.
        low, high, whole = 0, size2, True
        while size1 - low != high - low:
            split = low + _largest_power_of_two_below(high - low)
            if size1 <= split:
                nodes.append(self._range_hash(split, high))
                high = split
            else:
                nodes.append(self._range_hash(low, split))
                low = split
                whole = False
        # Reached the subtree D[low:size1]: the verifier knows its hash only if it is the
        # whole old tree (then it is root1), otherwise the proof must carry it.
        if not whole:
            nodes.append(self._range_hash(low, high))
        nodes.reverse()
        return nodes

    def _range_hash(self, low: int, high: int) -> bytes:
        # MTH(D[low:high]) for a range the RFC recursion can visit: `low` is a multiple of the
        # largest power of two >= high - low. Then the binary digits of the length, from the
        # highest, cut the range into complete aligned subtrees, exactly as the recursion's
        # splits do; fold them from the right.
        length = high - low
        parts: list[bytes] = []
        start = low
        for height in range(length.bit_length() - 1, -1, -1):
            if length >> height & 1:
                parts.append(self._levels[height][start >> height])
                start += 1 << height
        result = parts[-1]
        for part in reversed(parts[:-1]):
            result = _node_hash(part, result)
        return result

    def _check_size(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is outside 0..{self.size}")
        return size

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of {size} leaves")


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_BYTES:
        raise ProofError(f"{name} is {len(value)} bytes long, a SHA-256 hash is {HASH_BYTES}")


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that the leaf with this hash sits at `index` in the tree of `size` with `root`.

    RFC 9162 §2.1.3.2. Raises ProofError saying why when it does not.
    """
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of {size} leaves")
    _check_hash("the leaf hash", leaf_hash)
    for position, node in enumerate(proof):
        _check_hash(f"proof hash {position}", node)
    fn, sn = index, size - 1
    result = leaf_hash
    for node in proof:
        if sn == 0:
            raise ProofError(f"the proof has more than the {len(proof)} hashes it should")
        if fn & 1 or fn == sn:
            result = _node_hash(node, result)
            # On the right border a node may have no right sibling: climb past those levels.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = _node_hash(result, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short for this leaf index and tree size")
    if result != root:
        raise ProofError("the proof leads to a different root: the leaf is not in that tree")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree of `size2` with `root2` extends the tree of `size1` with `root1`.

    RFC 9162 §2.1.4.2. Raises ProofError saying why when it does not.
    """
    if size1 < 0 or size2 < size1:
        raise ProofError(f"tree size {size2} is smaller than the earlier size {size1}")
    if size1 == 0:
        # RFC 6962 §2.1.2 defines proofs only for 0 < size1: any tree extends the empty one,
        # so a proof from it would prove nothing.
        raise ProofError("a consistency proof from the empty tree is meaningless")
    if size1 == size2:
        if proof:
            raise ProofError("the sizes are equal, so the proof must be empty")
        if root1 != root2:
            raise ProofError("the sizes are equal but the roots differ: the histories diverge")
        return
    if not proof:
        raise ProofError("the proof is empty")
    for position, node in enumerate(proof):
        _check_hash(f"proof hash {position}", node)
    path = list(proof)
    # Step 2: when the old tree is a complete subtree its root is the first node of the path.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_root = new_root = path[0]
    for node in path[1:]:
        if sn == 0:
            raise ProofError("the proof has more hashes than these tree sizes need")
        if fn & 1 or fn == sn:
            old_root = _node_hash(node, old_root)
            new_root = _node_hash(node, new_root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new_root = _node_hash(new_root, node)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("the proof is too short for these tree sizes")
    if old_root != root1:
        raise ProofError("the proof does not lead to the earlier root")
    if new_root != root2:
        raise ProofError("the proof does not lead to the later root: history was rewritten")
