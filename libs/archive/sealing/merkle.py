"""RFC 9162 (Certificate Transparency 2.0) section 2.1 Merkle trees, with SHA-256.

- `leaf_hash`, `node_hash`, `EMPTY_ROOT`: the hashing of 2.1.1 (domain-separated with the
  0x00 / 0x01 prefixes, so that a leaf can never pass for an inner node).
- `MerkleTree`: every leaf hash kept, with the hash of every complete power-of-two subtree,
  so that the root at any past size, inclusion proofs (2.1.3.1) and consistency proofs
  (2.1.4.1) cost O(log n) lookups and O(log n) hashes, whatever the size of the tree.
- `verify_inclusion`, `root_from_inclusion` (2.1.3.2) and `verify_consistency` (2.1.4.2):
  the RFC's verification algorithms, step by step, for anyone checking our evidence.

Leaf indexes count from 0; tree sizes are leaf counts. Hashes are 32-byte `bytes`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Final

HASH_SIZE: Final = 32
# RFC 9162 carries tree sizes and indexes as uint64.
MAX_TREE_SIZE: Final = 2**64 - 1
# MTH({}) = HASH(): the root of the empty tree (RFC 9162 2.1.1).
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = HASH(0x00 || d): the hash of one log entry."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """HASH(0x01 || left || right): the hash of an inner node."""
    return _sha256(_NODE_PREFIX + left + right).digest()


_BYTES_TYPES: Final = (bytes, bytearray)


def _is_hash(value: object) -> bool:
    return isinstance(value, _BYTES_TYPES) and len(value) == HASH_SIZE


def _all_hashes(values: Iterable[object]) -> bool:
    # One loop rather than a call per element: verifiers run this on every proof.
    for value in values:
        if not isinstance(value, _BYTES_TYPES) or len(value) != HASH_SIZE:
            return False
    return True


def _require_size(value: object, what: str) -> int:
    # bool is an int subclass: refuse it, True as a tree size is a bug, not a size.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{what} must be an int")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise ValueError(f"{what} must be within 0..2**64-1, got {value}")
    return value


def _split_point(width: int) -> int:
    """k of RFC 9162 2.1.1: the largest power of two smaller than width (width > 1)."""
    return 1 << ((width - 1).bit_length() - 1)


def _fold_subtree_roots(roots: Sequence[bytes]) -> bytes:
    """Root of a tree from the roots of its perfect subtrees, largest (leftmost) first.

    MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n])) with D[0:k] the largest perfect
    subtree, so the tree root is the right fold of its perfect subtrees' roots.
    """
    if not roots:
        return EMPTY_ROOT
    accumulated = roots[-1]
    for subtree_root in reversed(roots[:-1]):
        accumulated = node_hash(subtree_root, accumulated)
    return accumulated


class MerkleTree:
    """A Merkle tree with all its leaf hashes, for roots and proofs at any past size.

    Level h keeps, concatenated in one bytearray, the hash of every complete subtree of 2**h
    leaves (level 0: the leaf hashes), filled in as leaves are appended. Any range that RFC
    9162 hashes is a few such subtrees, so roots and proofs never rehash the leaves. Memory:
    about 2 x 32 bytes per leaf (64 MB for a million leaves).
    """

    __slots__ = ("_levels", "_size")

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf (its hash, see `leaf_hash()`); returns its index."""
        if not _is_hash(leaf_hash):
            raise ValueError(f"leaf_hash must be {HASH_SIZE} bytes")
        index = self._size
        levels = self._levels
        levels[0] += leaf_hash
        # A node at odd position completes its parent: the last 64 bytes of the level are
        # then exactly left || right.
        position, height = index, 0
        while position & 1:
            if height + 1 == len(levels):
                levels.append(bytearray())
            levels[height + 1] += _sha256(_NODE_PREFIX + levels[height][-2 * HASH_SIZE :]).digest()
            position >>= 1
            height += 1
        self._size = index + 1
        return index

    def extend(self, leaf_hashes: Iterable[bytes]) -> int:
        """Append several leaves in order; returns the new size."""
        for one_leaf_hash in leaf_hashes:
            self.append(one_leaf_hash)
        return self._size

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise ValueError(f"index {index} out of range for {self._size} leaves")
        return self._complete_subtree(0, index)

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[0:size]), the root the tree had at `size` leaves (default: now)."""
        size = self._checked_size(size)
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 2.1.3.1: sibling hashes, leaf level first."""
        size = self._checked_size(size)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < size:
            raise ValueError(f"index {index} out of range for a tree of size {size}")
        path: list[bytes] = []
        start, end = 0, size
        # Walk down from the root; the RFC's recursion emits the deepest sibling first.
        while end - start > 1:
            middle = start + _split_point(end - start)
            if index < middle:
                path.append(self._range_hash(middle, end))
                end = middle
            else:
                path.append(self._range_hash(start, middle))
                start = middle
        path.reverse()
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[0:size2]) of RFC 9162 2.1.4.1.

        Empty when there is nothing to prove (size1 == 0 or size1 == size2).
        """
        size2 = self._checked_size(size2)
        _require_size(size1, "size1")
        if size1 > size2:
            raise ValueError(f"size1 {size1} is larger than size2 {size2}")
        if size1 in (0, size2):
            return []
        proof: list[bytes] = []
        # SUBPROOF(m, D[start:start+width], known), `known` being the RFC's b: true until the
        # walk turns right; if the old tree is then reached whole, it is the verifier's own
        # root1 and is not sent.
        start, width, m, known = 0, size2, size1, True
        while m != width:
            k = _split_point(width)
            if m <= k:
                proof.append(self._range_hash(start + k, start + width))
                width = k
            else:
                proof.append(self._range_hash(start, start + k))
                start, width, m, known = start + k, width - k, m - k, False
        if not known:
            proof.append(self._range_hash(start, start + width))
        proof.reverse()
        return proof

    def _checked_size(self, size: int | None) -> int:
        if size is None:
            return self._size
        _require_size(size, "size")
        if size > self._size:
            raise ValueError(f"size {size} is beyond the tree's {self._size} leaves")
        return size

    def _complete_subtree(self, height: int, position: int) -> bytes:
        offset = position * HASH_SIZE
        return bytes(self._levels[height][offset : offset + HASH_SIZE])

    def _perfect_subtrees(self, start: int, end: int) -> list[bytes]:
        """Roots of the perfect subtrees that make up D[start:end], largest first.

        Every range RFC 9162 hashes starts at a multiple of its largest power of two (it is
        reached by splitting at such powers), so these subtrees are aligned and stored.
        """
        roots: list[bytes] = []
        while start < end:
            height = (end - start).bit_length() - 1
            roots.append(self._complete_subtree(height, start >> height))
            start += 1 << height
        return roots

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end])."""
        width = end - start
        if width and not width & (width - 1):
            # Most proof hashes are of one complete subtree: a lookup.
            height = width.bit_length() - 1
            return self._complete_subtree(height, start >> height)
        return _fold_subtree_roots(self._perfect_subtrees(start, end))

    def __repr__(self) -> str:
        return f"MerkleTree(size={self._size}, root={self.root().hex()})"


def root_from_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root an inclusion proof leads to (RFC 9162 2.1.3.2 steps 1-4 and the sn check).

    None when the proof cannot be right whatever the root: wrong length or malformed hashes.
    Raises ValueError when index >= size (no leaf to prove).
    """
    _require_size(index, "index")
    _require_size(size, "size")
    # Step 1: leaf_index >= tree_size fails; for us it is a caller's error.
    if index >= size:
        raise ValueError(f"index {index} is not below size {size}")
    if not _is_hash(leaf_hash) or not _all_hashes(proof):
        return None
    # Step 2.
    fn, sn = index, size - 1
    # Step 3.
    r = bytes(leaf_hash)
    # Step 4.
    for p in proof:
        # 4a: more path than tree.
        if sn == 0:
            return None
        # 4b: p is a left sibling (we are a right child, or the last node of the level
        # with no right sibling, which is promoted until it becomes a right child).
        if fn & 1 or fn == sn:
            r = _sha256(_NODE_PREFIX + p + r).digest()  # HASH(0x01 || p || r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = _sha256(_NODE_PREFIX + r + p).digest()  # HASH(0x01 || r || p)
        # 4c.
        fn >>= 1
        sn >>= 1
    # Step 5 (first half): a path too short leaves sn above 0.
    if sn != 0:
        return None
    return r


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show leaf `index` hashing to `leaf_hash` in the tree
    of `size` leaves with this `root`? False on any bad proof; ValueError if index >= size.
    """
    computed = root_from_inclusion(leaf_hash, index, size, proof)
    # Step 5 (second half); constant-time compare out of habit, roots are public anyway.
    return computed is not None and _is_hash(root) and hmac.compare_digest(computed, root)


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (size2, root2) an append-only extension of (size1,
    root1)? False on any bad proof; ValueError if size1 > size2.

    Outside the RFC's 0 < size1 < size2, the proof must be empty, and: size1 == size2 needs
    root1 == root2; size1 == 0 needs root1 == EMPTY_ROOT (the empty tree's only root).
    """
    _require_size(size1, "size1")
    _require_size(size2, "size2")
    if size1 > size2:
        raise ValueError(f"size1 {size1} is larger than size2 {size2}")
    if not (_is_hash(root1) and _is_hash(root2)) or not _all_hashes(proof):
        return False
    first_hash, second_hash = bytes(root1), bytes(root2)
    if size1 == 0:
        return not proof and hmac.compare_digest(first_hash, EMPTY_ROOT)
    if size1 == size2:
        return not proof and hmac.compare_digest(first_hash, second_hash)
    # Step 1.
    if not proof:
        return False
    # Step 2: a power-of-two old tree is itself a subtree of the new one; its root is not
    # sent, so the verifier supplies it.
    path = [bytes(c) for c in proof]
    if size1 & (size1 - 1) == 0:
        path.insert(0, first_hash)
    # Step 3.
    fn, sn = size1 - 1, size2 - 1
    # Step 4.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        # 6a.
        if sn == 0:
            return False
        # 6b.
        if fn & 1 or fn == sn:
            fr = _sha256(_NODE_PREFIX + c + fr).digest()  # HASH(0x01 || c || fr)
            sr = _sha256(_NODE_PREFIX + c + sr).digest()  # HASH(0x01 || c || sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _sha256(_NODE_PREFIX + sr + c).digest()  # HASH(0x01 || sr || c)
        # 6c.
        fn >>= 1
        sn >>= 1
    # Step 7.
    return sn == 0 and hmac.compare_digest(fr, first_hash) and hmac.compare_digest(sr, second_hash)
