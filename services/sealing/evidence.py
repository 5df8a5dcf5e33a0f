"""The evidence bundle: a ZIP that proves a deposit with standard tools and a few lines of
Merkle code, without our software."""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass

from archive.v1 import events_pb2

# One list of member names, shared with the verifier: what we write is what it reads.
from archive.verify.layout import (
    CHECKPOINT,
    LEAF,
    PROOF,
    ROOT,
    SEAL,
    SEAL_CHAIN,
    TIMESTAMP,
    TSA_CHAIN,
    TSA_ROOT,
    VERIFY,
)

__all__ = [
    "TrustMaterial",
    "build_bundle",
    "verify_instructions",
]


@dataclass(frozen=True)
class TrustMaterial:
    """PEM texts shipped in every bundle: who sealed and the seal's root; who time-stamped and
    the TSA's root. The TSA's come from the checkpoint record (the path that validated its
    token when it was made); these are for checkpoints recorded without them."""

    seal_chain_pem: str
    root_pem: str
    tsa_chain_pem: str
    tsa_root_pem: str

    def tsa_of(self, checkpoint: events_pb2.CheckpointSealed) -> tuple[str, str]:
        """(TSA chain, TSA root) of `checkpoint`'s time stamp, in PEM."""
        if checkpoint.tsa_chain_pem and checkpoint.tsa_root_pem:
            return checkpoint.tsa_chain_pem, checkpoint.tsa_root_pem
        return self.tsa_chain_pem, self.tsa_root_pem


def inclusion_proof_json(leaf_index: int, tree_size: int, hashes: list[bytes]) -> bytes:
    document = {
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "hashes": [h.hex() for h in hashes],
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def build_bundle(
    *,
    leaf: bytes,
    leaf_index: int,
    proof: list[bytes],
    checkpoint: events_pb2.CheckpointSealed,
    trust: TrustMaterial,
    document_id: str,
) -> bytes:
    tsa_chain_pem, tsa_root_pem = trust.tsa_of(checkpoint)
    buffer = io.BytesIO()
    # Stored, not deflated: the bytes inside are exactly the signed ones, and tiny anyway.
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        bundle.writestr(LEAF, leaf)
        bundle.writestr(PROOF, inclusion_proof_json(leaf_index, checkpoint.tree_size, proof))
        bundle.writestr(CHECKPOINT, checkpoint.checkpoint)
        bundle.writestr(SEAL, checkpoint.seal)
        bundle.writestr(TIMESTAMP, checkpoint.timestamp_response)
        bundle.writestr(SEAL_CHAIN, trust.seal_chain_pem)
        bundle.writestr(TSA_CHAIN, tsa_chain_pem)
        bundle.writestr(TSA_ROOT, tsa_root_pem)
        bundle.writestr(ROOT, trust.root_pem)
        bundle.writestr(VERIFY, verify_instructions(document_id))
    return buffer.getvalue()


def verify_instructions(document_id: str) -> str:
    return f"""# Verifying this evidence

This bundle proves that document `{document_id}` was deposited with the digests written in
`leaf.json`, that this deposit is part of its tenant's tamper-evident journal, and that the
provider sealed and time-stamped that journal. You need `openssl`, `sha256sum` and any
language that can compute SHA-256 (a Python snippet follows).

## 1. The document is the one deposited

`leaf.json` is the journal entry of the deposit, in RFC 8785 canonical JSON. Its
`data.sha256` and `data.sha512` are the document's digests, taken as it arrived:

    sha256sum YOUR-FILE      # must equal data.sha256 in leaf.json
    sha512sum YOUR-FILE      # must equal data.sha512 in leaf.json

## 2. The deposit is in the journal (Merkle inclusion, RFC 9162)

- The leaf hash is SHA-256 of the byte 0x00 followed by the exact bytes of `leaf.json`.
- `inclusion-proof.json` gives `leaf_index`, `tree_size` and `hashes` (hex). Combine, as in
  RFC 9162 section 2.1.3.2: `fn = leaf_index`, `sn = tree_size - 1`, `r = leaf hash`; for
  each hash `p` of the proof: if `sn == 0` the proof is invalid; if `fn` is odd or
  `fn == sn`, then `r = SHA-256(0x01 || p || r)` and, while `fn` is even and not 0, shift
  `fn` and `sn` right by one; otherwise `r = SHA-256(0x01 || r || p)`; then shift `fn` and
  `sn` right by one. At the end `sn` must be 0 and `r` must equal the root hash.
- `checkpoint.txt` (C2SP tlog-checkpoint) holds the origin, the tree size (must equal
  `tree_size`) and the root hash in base64 on its third line.

```python
import base64, hashlib, json
leaf = open("leaf.json", "rb").read()
proof = json.load(open("inclusion-proof.json"))
origin, size, root_b64 = open("checkpoint.txt").read().split("\\n")[:3]
h = lambda *parts: hashlib.sha256(b"".join(parts)).digest()
fn, sn, r = proof["leaf_index"], proof["tree_size"] - 1, h(b"\\x00", leaf)
for p in map(bytes.fromhex, proof["hashes"]):
    assert sn != 0
    if fn % 2 == 1 or fn == sn:
        r = h(b"\\x01", p, r)
        while fn % 2 == 0 and fn != 0:
            fn, sn = fn >> 1, sn >> 1
    else:
        r = h(b"\\x01", r, p)
    fn, sn = fn >> 1, sn >> 1
assert sn == 0 and int(size) == proof["tree_size"] and r == base64.b64decode(root_b64)
print("inclusion verified")
```

## 3. The provider sealed the checkpoint (CMS, RFC 5652)

The seal chains to the provider's root, `{ROOT}` (compare its fingerprint with the one the
provider publishes: `openssl x509 -in {ROOT} -noout -fingerprint -sha256`):

    openssl cms -verify -binary -inform DER -in {SEAL} -content {CHECKPOINT} \\
        -CAfile {ROOT} -purpose any -out /dev/null

## 4. The checkpoint existed at the time stamped (RFC 3161)

The time stamp comes from an independent time-stamp authority, whose certificate and
intermediates are `{TSA_CHAIN}` and whose own root is `{TSA_ROOT}` (not the provider's:
compare it with the one the authority publishes, as above):

    openssl ts -verify -data {CHECKPOINT} -in {TIMESTAMP} \\
        -CAfile {TSA_ROOT} -untrusted {TSA_CHAIN}
    openssl ts -reply -in {TIMESTAMP} -text     # shows the time and the authority

If all four steps pass, the file you hold has the digests recorded at deposit, the deposit
is in the journal whose root the provider sealed, and that root existed at the time stamped.
`archivectl verify YOUR-FILE --evidence this.zip` runs the same checks (pin the two roots with
`--trust-root` and `--trust-tsa-root`).
"""
