"""The members of an evidence bundle: one list, written by the sealing service
(services/sealing/evidence.py) and read by the verifier, so the two cannot disagree."""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHECKPOINT",
    "EXPECTED_FILES",
    "LEAF",
    "PROOF",
    "ROOT",
    "SEAL",
    "SEAL_CHAIN",
    "TIMESTAMP",
    "TSA_CHAIN",
    "TSA_ROOT",
    "VERIFY",
]

LEAF: Final = "leaf.json"
PROOF: Final = "inclusion-proof.json"
CHECKPOINT: Final = "checkpoint.txt"
SEAL: Final = "checkpoint.p7s"
TIMESTAMP: Final = "checkpoint.tsr"
SEAL_CHAIN: Final = "certs/seal-chain.pem"
# The TSA's certificate and intermediates, and the TSA's root: a TSA is somebody else, so the
# time stamp chains to its own root, not to the seal's (ROOT).
TSA_CHAIN: Final = "certs/tsa-chain.pem"
TSA_ROOT: Final = "certs/tsa-root.pem"
ROOT: Final = "certs/root.pem"
VERIFY: Final = "VERIFY.md"
EXPECTED_FILES: Final = (
    LEAF,
    PROOF,
    CHECKPOINT,
    SEAL,
    TIMESTAMP,
    SEAL_CHAIN,
    TSA_CHAIN,
    TSA_ROOT,
    ROOT,
    VERIFY,
)
