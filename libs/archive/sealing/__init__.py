"""Cryptographic structures of the sealing service, pure and without I/O.

- `merkle`: RFC 9162 Merkle trees (hashing, compact append-only state, proofs, verifiers);
- `checkpoint`: C2SP tlog-checkpoint note text (origin, tree size, root hash);
- `canonical_json`: RFC 8785 JSON canonicalisation, for hashing and signing JSON.
"""
