"""RFC 9162 Merkle trees, checked three independent ways:

- the published test vectors of transparency-dev/merkle (Go, the CT ecosystem's reference):
  roots of sizes 0..8 over the 8 standard leaves, inclusion and consistency proofs;
- a reference written here straight from the RFC's recursive definitions (MTH, PATH,
  SUBPROOF) with plain hashlib, for byte-exact proofs at every size up to 70;
- pymerkle (its RFC 9162 "security" mode, 0x00 / 0x01 prefixes, checked below) for roots,
  inclusion paths and cross-verification of consistency.
"""

from __future__ import annotations

import functools
import hashlib
import random
import warnings

import pymerkle
import pytest

from archive.sealing.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    verify_consistency,
    verify_inclusion,
)

# transparency-dev/merkle testonly/constants.go and proof/verify_test.go.
LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAF_HASHES_HEX = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
ROOTS_HEX = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index from 0, tree size, proof); the Go file counts leaves from 1.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

MAX_SIZE = 70
DATA = [f"event {i}".encode() for i in range(MAX_SIZE)]
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- A reference from the RFC's text, with plain hashlib (RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1).


def _sha256(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


REF_LEAVES = [_sha256(b"\x00", d) for d in DATA]


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def ref_mth(start: int, end: int) -> bytes:
    n = end - start
    if n == 0:
        return _sha256()
    if n == 1:
        return REF_LEAVES[start]
    k = _k(n)
    return _sha256(b"\x01", ref_mth(start, start + k), ref_mth(start + k, end))


def ref_path(m: int, start: int, end: int) -> list[bytes]:
    n = end - start
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, start, start + k), ref_mth(start + k, end)]
    return [*ref_path(m - k, start + k, end), ref_mth(start, start + k)]


def ref_subproof(m: int, start: int, end: int, b: bool) -> list[bytes]:
    n = end - start
    if m == n:
        return [] if b else [ref_mth(start, end)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, start, start + k, b), ref_mth(start + k, end)]
    return [*ref_subproof(m - k, start + k, end, False), ref_mth(start, start + k)]


def ref_proof(m: int, n: int) -> list[bytes]:
    return ref_subproof(m, 0, n, True)


def ref_consistency_shape(m: int, n: int) -> tuple[bool, list[str]]:
    """What the verifier does with each proof hash: whether it supplies the old root itself
    (m a power of two), then per hash "left" (sibling of both trees) or "right" (new only)."""

    def subshape(m: int, n: int, b: bool) -> list[str]:
        if m == n:
            return [] if b else ["start"]
        k = _k(n)
        if m <= k:
            return [*subshape(m, k, b), "right"]
        return [*subshape(m - k, n - k, False), "left"]

    return m & (m - 1) == 0, subshape(m, n, True)


def ref_path_shape(m: int, n: int) -> list[bool]:
    """For each proof hash, leaf level first: is the sibling on the left?"""
    shape: list[bool] = []
    start, end = 0, n
    while end - start > 1:
        k = _k(end - start)
        if m < start + k:
            shape.append(False)
            end = start + k
        else:
            shape.append(True)
            start += k
    return shape[::-1]


# --- Fixtures.


@pytest.fixture(scope="module")
def tree() -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in DATA)


@pytest.fixture(scope="module")
def vector_tree() -> MerkleTree:
    return MerkleTree(leaf_hash(d) for d in LEAF_INPUTS)


@pytest.fixture(scope="module")
def pymerkle_tree() -> pymerkle.InmemoryTree:
    other = pymerkle.InmemoryTree(algorithm="sha256")  # security (RFC prefixes) on by default
    for d in DATA:
        other.append_entry(d)
    return other


def _flip_bit(proof: list[bytes], position: int, mask: int = 8) -> list[bytes]:
    changed = list(proof)
    changed[position] = bytes([changed[position][0] ^ mask]) + changed[position][1:]
    return changed


def _rejects(check: object, *args: object) -> bool:
    """A verification refuses: False, or ValueError for arguments that make no sense."""
    assert callable(check)
    try:
        return check(*args) is False
    except ValueError:
        return True


# --- Hashing and the published vectors.


def test_hashing_is_rfc9162() -> None:
    assert EMPTY_ROOT.hex() == ROOTS_HEX[0]
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = leaf_hash(b"l"), leaf_hash(b"r")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert [leaf_hash(d).hex() for d in LEAF_INPUTS] == LEAF_HASHES_HEX


def test_roots_of_published_vectors(vector_tree: MerkleTree) -> None:
    assert vector_tree.root(0) == EMPTY_ROOT
    for size in range(1, 9):
        assert vector_tree.root(size).hex() == ROOTS_HEX[size]
    assert vector_tree.root().hex() == ROOTS_HEX[8]


@pytest.mark.parametrize(("index", "size", "proof_hex"), INCLUSION_VECTORS)
def test_inclusion_vectors(
    vector_tree: MerkleTree, index: int, size: int, proof_hex: list[str]
) -> None:
    proof = vector_tree.inclusion_proof(index, size)
    assert [p.hex() for p in proof] == proof_hex
    root = bytes.fromhex(ROOTS_HEX[size])
    leaf = leaf_hash(LEAF_INPUTS[index])
    assert root_from_inclusion(leaf, index, size, proof) == root
    assert verify_inclusion(leaf, index, size, proof, root)


@pytest.mark.parametrize(("size1", "size2", "proof_hex"), CONSISTENCY_VECTORS)
def test_consistency_vectors(
    vector_tree: MerkleTree, size1: int, size2: int, proof_hex: list[str]
) -> None:
    proof = vector_tree.consistency_proof(size1, size2)
    assert [p.hex() for p in proof] == proof_hex
    root1, root2 = bytes.fromhex(ROOTS_HEX[size1]), bytes.fromhex(ROOTS_HEX[size2])
    assert verify_consistency(size1, size2, proof, root1, root2)


# --- Every proof up to MAX_SIZE, byte-exact against the RFC reference, and verified.


def test_roots_match_reference(tree: MerkleTree) -> None:
    for size in range(MAX_SIZE + 1):
        assert tree.root(size) == ref_mth(0, size)
    assert tree.root() == ref_mth(0, MAX_SIZE)


def test_every_inclusion_proof_verifies(tree: MerkleTree) -> None:
    for size in range(1, MAX_SIZE + 1):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == ref_path(index, 0, size), (index, size)
            assert verify_inclusion(REF_LEAVES[index], index, size, proof, root), (index, size)


def test_every_consistency_proof_verifies(tree: MerkleTree) -> None:
    for size2 in range(MAX_SIZE + 1):
        root2 = tree.root(size2)
        for size1 in range(size2 + 1):
            proof = tree.consistency_proof(size1, size2)
            expected = [] if size1 in (0, size2) else ref_proof(size1, size2)
            assert proof == expected, (size1, size2)
            assert verify_consistency(size1, size2, proof, tree.root(size1), root2), (
                size1,
                size2,
            )


# --- Tampering: every way of lying that the RFC's checks must catch.

TAMPER_MAX_SIZE = 40


def test_tampered_inclusion_proofs_fail(tree: MerkleTree) -> None:
    for size in range(1, TAMPER_MAX_SIZE + 1):
        root = tree.root(size)
        for index in range(size):
            leaf = REF_LEAVES[index]
            proof = tree.inclusion_proof(index, size)
            lies: list[tuple[object, ...]] = [
                (SOME_HASH, index, size, proof, root),
                (leaf, index, size, proof, SOME_HASH),
                (leaf, index, size, proof, EMPTY_ROOT),
                (leaf, index, size, [*proof, SOME_HASH], root),
                (leaf, index, size, [*proof, root], root),
                (leaf, index, size, [root, *proof], root),
                (leaf, index, size, [*proof, b""], root),
                (leaf, index, size, proof, b"WrongRoot"),
                (b"WrongLeaf", index, size, proof, root),
            ]
            lies += [(leaf, index, size, _flip_bit(proof, i), root) for i in range(len(proof))]
            if proof:
                lies.append((leaf, index, size, proof[:-1], root))
                lies.append((leaf, index, size, [proof[0], SOME_HASH, *proof[1:]], root))
            # Another position in the same tree: always a different path (or out of range).
            for other in {index - 1, index + 1, index ^ 2, index + size} - {index}:
                lies.append((leaf, other, size, proof, root))
            for lie in lies:
                assert _rejects(verify_inclusion, *lie), (index, size, lie[1:3])


def test_inclusion_proof_for_another_size_only_passes_with_the_same_path_shape(
    tree: MerkleTree,
) -> None:
    """The verifier rebuilds the root from the path's shape alone: (index 0, size 5) and
    (index 0, size 6) have the same shape, so a size-5 proof checks out against the size-5
    root when claimed for size 6. Inherent to RFC 9162 (a verifier must know the size the
    root was signed for: the checkpoint carries it); any other shape must fail."""
    for size in range(1, TAMPER_MAX_SIZE + 1):
        root = tree.root(size)
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            for other_size in {size - 1, size + 1, size * 2, size // 2} - {size}:
                if index >= other_size:
                    continue
                same_shape = ref_path_shape(index, other_size) == ref_path_shape(index, size)
                result = verify_inclusion(REF_LEAVES[index], index, other_size, proof, root)
                assert result == same_shape, (index, size, other_size)


def test_tampered_consistency_proofs_fail(tree: MerkleTree) -> None:
    for size2 in range(2, TAMPER_MAX_SIZE + 1):
        root2 = tree.root(size2)
        for size1 in range(1, size2):
            root1 = tree.root(size1)
            proof = tree.consistency_proof(size1, size2)
            lies: list[tuple[object, ...]] = [
                (size1, size2, proof, SOME_HASH, root2),
                (size1, size2, proof, root1, SOME_HASH),
                (size1, size2, proof, root2, root1),
                (size1, size2, proof, b"WrongRoot", root2),
                (size1, size2, [], root1, root2),
                (size1, size2, proof[:-1], root1, root2),
                (size1, size2, [*proof, b""], root1, root2),
                (size1, size2, [*proof, root1], root1, root2),
                (size1, size2, [*proof, root2], root1, root2),
                (size1, size2, [root1, *proof], root1, root2),
                (size1, size2, [root2, *proof], root1, root2),
                (size1, size2, [proof[0], *proof], root1, root2),
                (size1, size2, [*proof, SOME_HASH], root1, root2),
            ]
            lies += [
                (size1, size2, _flip_bit(proof, i, 16), root1, root2) for i in range(len(proof))
            ]
            for lie in lies:
                assert _rejects(verify_consistency, *lie), (size1, size2)


def test_consistency_proof_for_other_sizes_only_passes_with_the_same_shape(
    tree: MerkleTree,
) -> None:
    """As for inclusion: the (1, 3) proof [leaf 1, leaf 2] has the shape of a (1, 4) proof
    [leaf 1, H(leaf 2, leaf 3)], so it checks out for sizes (1, 4) with the same roots. The
    sizes must come from the signed checkpoints; any other shape must fail."""
    for size2 in range(2, TAMPER_MAX_SIZE + 1):
        root2 = tree.root(size2)
        for size1 in range(1, size2):
            root1 = tree.root(size1)
            proof = tree.consistency_proof(size1, size2)
            shape = ref_consistency_shape(size1, size2)
            claims = {(other1, size2) for other1 in (size1 - 1, size1 + 1, size1 ^ 2)}
            claims |= {(size1, other2) for other2 in (size2 - 1, size2 + 1, size2 * 2, size2 // 2)}
            for claim1, claim2 in claims - {(size1, size2)}:
                if claim1 > claim2:
                    with pytest.raises(ValueError):
                        verify_consistency(claim1, claim2, proof, root1, root2)
                    continue
                same_shape = 0 < claim1 < claim2 and ref_consistency_shape(claim1, claim2) == shape
                result = verify_consistency(claim1, claim2, proof, root1, root2)
                assert result == same_shape, (size1, size2, claim1, claim2)


# --- Edge cases and arguments.


def test_single_entry_and_malformed_hashes() -> None:
    one = leaf_hash(b"data")
    assert verify_inclusion(one, 0, 1, [], one)
    assert not verify_inclusion(one, 0, 1, [], b"")
    assert not verify_inclusion(b"", 0, 1, [], one)
    assert not verify_inclusion(b"", 0, 1, [], b"")
    assert root_from_inclusion(one, 0, 1, [SOME_HASH]) is None
    assert root_from_inclusion(one, 0, 2, []) is None
    assert root_from_inclusion(one, 0, 2, ["not bytes"]) is None  # type: ignore[list-item]


def test_trivial_consistency() -> None:
    root = leaf_hash(b"x")
    assert verify_consistency(0, 0, [], EMPTY_ROOT, EMPTY_ROOT)
    assert verify_consistency(0, 5, [], EMPTY_ROOT, root)
    assert verify_consistency(1, 1, [], root, root)
    # Stricter than a "don't care": the empty tree has one root.
    assert not verify_consistency(0, 5, [], root, root)
    assert not verify_consistency(0, 0, [], root, root)
    assert not verify_consistency(1, 1, [], root, SOME_HASH)
    assert not verify_consistency(0, 0, [EMPTY_ROOT], EMPTY_ROOT, EMPTY_ROOT)
    assert not verify_consistency(0, 1, [EMPTY_ROOT], EMPTY_ROOT, root)
    assert not verify_consistency(1, 1, [root], root, root)
    assert not verify_consistency(1, 2, [], root, SOME_HASH)


def test_nonsensical_arguments_raise(tree: MerkleTree) -> None:
    root = tree.root(8)
    for bad in (
        lambda: verify_inclusion(REF_LEAVES[0], 8, 8, [], root),
        lambda: verify_inclusion(REF_LEAVES[0], 0, 0, [], root),
        lambda: verify_inclusion(REF_LEAVES[0], -1, 8, [], root),
        lambda: root_from_inclusion(REF_LEAVES[0], 0, True, []),
        lambda: verify_consistency(5, 4, [], root, root),
        lambda: verify_consistency(-1, 4, [], root, root),
        lambda: verify_consistency(1, 2**64, [], root, root),
        lambda: tree.inclusion_proof(8, 8),
        lambda: tree.inclusion_proof(-1, 8),
        lambda: tree.inclusion_proof(0, MAX_SIZE + 1),
        lambda: tree.consistency_proof(5, 4),
        lambda: tree.consistency_proof(1, MAX_SIZE + 1),
        lambda: tree.root(MAX_SIZE + 1),
        lambda: tree.leaf_hash(MAX_SIZE),
        lambda: MerkleTree().append(b"short"),
    ):
        with pytest.raises(ValueError):
            bad()


# --- pymerkle, an independent implementation measured in the same run.


def test_pymerkle_uses_rfc9162_prefixes(pymerkle_tree: pymerkle.InmemoryTree) -> None:
    assert pymerkle_tree.security
    assert pymerkle_tree.hash_buff(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = SOME_HASH, EMPTY_ROOT
    assert pymerkle_tree.hash_pair(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_roots_and_inclusion_paths_match_pymerkle(
    tree: MerkleTree, pymerkle_tree: pymerkle.InmemoryTree
) -> None:
    for size in range(MAX_SIZE + 1):
        assert tree.root(size) == pymerkle_tree.get_root(size), size
    for size in range(1, MAX_SIZE + 1):
        for index in range(size):
            # pymerkle counts leaves from 1 and puts the leaf hash itself first in its path.
            theirs = pymerkle_tree.prove_inclusion(index + 1, size).path
            assert theirs == [REF_LEAVES[index], *tree.inclusion_proof(index, size)]


def test_consistency_agrees_with_pymerkle(
    tree: MerkleTree, pymerkle_tree: pymerkle.InmemoryTree
) -> None:
    """pymerkle's consistency paths are laid out its own way (not the RFC's bytes), so check
    that each side's proofs verify against the other side's roots."""
    for size2 in range(1, MAX_SIZE + 1, 3):
        for size1 in range(1, size2 + 1):
            their_root1 = pymerkle_tree.get_root(size1)
            their_root2 = pymerkle_tree.get_root(size2)
            ours = tree.consistency_proof(size1, size2)
            assert verify_consistency(size1, size2, ours, their_root1, their_root2)
            theirs = pymerkle_tree.prove_consistency(size1, size2)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                pymerkle.verify_consistency(tree.root(size1), tree.root(size2), theirs)


# --- Big trees: proofs taken from stored subtrees, not by rehashing leaves, still verify.
# (How fast they are is tools/bench/merkle.py's business, not a unit test's.)


def mth_of(hashes: list[bytes]) -> bytes:
    """MTH of RFC 9162 2.1.1 over leaf hashes, recursively: an independent root."""
    if len(hashes) == 1:
        return hashes[0]
    k = _k(len(hashes))
    return hashlib.sha256(b"\x01" + mth_of(hashes[:k]) + mth_of(hashes[k:])).digest()


def test_proofs_on_a_large_tree_verify() -> None:
    size = 2**16 + 3
    rng = random.Random(9162)
    leaves = [rng.randbytes(32) for _ in range(size)]
    big = MerkleTree(leaves)
    root = big.root()
    assert root == mth_of(leaves)
    for size1 in rng.sample(range(1, size), 3):
        assert big.root(size1) == mth_of(leaves[:size1])
    for _ in range(300):
        index = rng.randrange(size)
        proof = big.inclusion_proof(index)
        assert verify_inclusion(leaves[index], index, size, proof, root)
        size1 = rng.randrange(1, size)
        proof = big.consistency_proof(size1)
        assert verify_consistency(size1, size, proof, big.root(size1), root)
