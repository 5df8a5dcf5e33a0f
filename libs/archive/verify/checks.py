"""The checks of VERIFY.md over a bundle that has been read: the document against the deposit,
the deposit's inclusion in the sealed tree, the seal and the time stamp, and the consistency
of two checkpoints. Each returns a `Check` whose reason says, for a person, what broke."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from asn1crypto import tsp
from cryptography import x509

from archive.sealing.checkpoint import CheckpointError, parse_checkpoint
from archive.sealing.cms import verify_detached
from archive.sealing.merkle import (
    HASH_SIZE,
    leaf_hash,
    root_from_inclusion,
    verify_consistency,
)
from archive.sealing.timestamps import TimeStampResp, verify_timestamp_response
from archive.verify.layout import CHECKPOINT, LEAF, PROOF
from archive.verify.reader import Bundle, Trust, is_int
from archive.verify.report import (
    CHECK_CONSISTENCY,
    CHECK_DOCUMENT,
    CHECK_INCLUSION,
    CHECK_SEAL,
    CHECK_TIMESTAMP,
    NOT_RUN,
    SKIPPED,
    Check,
    failed,
    iso,
    not_run,
    passed,
)

__all__ = [
    "DOCUMENT_INGESTED",
    "SignatureChecks",
    "check_consistency",
    "check_document",
    "check_inclusion",
    "check_signatures",
    "leaf_data",
]

DOCUMENT_INGESTED: Final = "archive.v1.DocumentIngested"
_HASH_BLOCK: Final = 1024 * 1024


def leaf_data(leaf: dict[str, Any]) -> dict[str, Any]:
    data = leaf.get("data")
    return data if isinstance(data, dict) else {}


# ---- document ----


def _digests_of(file: Path | bytes) -> tuple[str, str, int]:
    sha256, sha512 = hashlib.sha256(), hashlib.sha512()
    if isinstance(file, bytes | bytearray | memoryview):
        data = bytes(file)
        return hashlib.sha256(data).hexdigest(), hashlib.sha512(data).hexdigest(), len(data)
    size = 0
    with Path(file).open("rb") as stream:  # streamed: documents can be gigabytes
        while block := stream.read(_HASH_BLOCK):
            sha256.update(block)
            sha512.update(block)
            size += len(block)
    return sha256.hexdigest(), sha512.hexdigest(), size


def check_document(file: Path | bytes | None, bundle: Bundle) -> Check:
    if file is None:
        return Check(CHECK_DOCUMENT, SKIPPED, "no file given: the document itself was not compared")
    if bundle.leaf is None:
        return not_run(CHECK_DOCUMENT, [LEAF])
    leaf_type = bundle.leaf.get("type")
    if leaf_type != DOCUMENT_INGESTED:
        return failed(
            CHECK_DOCUMENT, f"{LEAF} is a {leaf_type!r} event, not a deposit ({DOCUMENT_INGESTED})"
        )
    data = leaf_data(bundle.leaf)
    recorded_sha256, recorded_sha512, recorded_size = (
        data.get("sha256"),
        data.get("sha512"),
        data.get("size"),
    )
    if not (
        isinstance(recorded_sha256, str)
        and isinstance(recorded_sha512, str)
        and is_int(recorded_size)
    ):
        return failed(CHECK_DOCUMENT, f"{LEAF} lacks data.sha256, data.sha512 or data.size")
    sha256, sha512, size = _digests_of(file)
    differences: list[str] = []
    if size != recorded_size:
        differences.append(f"it has {size} bytes, the deposit had {recorded_size}")
    if sha256 != recorded_sha256.lower():
        differences.append(
            f"its SHA-256 is {sha256}, the deposit's (data.sha256) {recorded_sha256}"
        )
    if sha512 != recorded_sha512.lower():
        differences.append("its SHA-512 differs from the deposit's (data.sha512)")
    if differences:
        return failed(
            CHECK_DOCUMENT,
            "the file is not the deposited document (or was altered since): "
            + "; ".join(differences),
        )
    return passed(
        CHECK_DOCUMENT,
        f"the file's SHA-256, SHA-512 and size ({size} bytes) are those recorded at deposit "
        f"in {LEAF}",
    )


# ---- inclusion ----


def check_inclusion(
    bundle: Bundle, expected_document_id: str | None, checkpoint_sealed: bool
) -> Check:
    if bundle.leaf is None or bundle.proof is None or bundle.checkpoint is None:
        needs = [
            name
            for name, value in (
                (LEAF, bundle.leaf),
                (PROOF, bundle.proof),
                (CHECKPOINT, bundle.checkpoint),
            )
            if value is None
        ]
        return not_run(CHECK_INCLUSION, needs)
    leaf, proof, checkpoint = bundle.leaf, bundle.proof, bundle.checkpoint
    if leaf.get("type") != DOCUMENT_INGESTED:
        return failed(
            CHECK_INCLUSION,
            f"{LEAF} is a {leaf.get('type')!r} event, not a deposit ({DOCUMENT_INGESTED})",
        )
    document_id = leaf_data(leaf).get("document_id")
    if expected_document_id is not None and document_id != expected_document_id:
        return failed(
            CHECK_INCLUSION,
            f"{LEAF} is the deposit of document {document_id}, not of {expected_document_id}",
        )
    if proof.tree_size != checkpoint.size:
        return failed(
            CHECK_INCLUSION,
            f"{PROOF} is for a tree of {proof.tree_size} leaves, but {CHECKPOINT} is of "
            f"{checkpoint.size}",
        )
    if proof.leaf_index >= proof.tree_size:
        return failed(
            CHECK_INCLUSION,
            f"{PROOF}: leaf_index {proof.leaf_index} is not below tree_size {proof.tree_size}",
        )
    leaf_digest = leaf_hash(bundle.raw[LEAF])
    computed = root_from_inclusion(leaf_digest, proof.leaf_index, proof.tree_size, proof.hashes)
    if computed is None:
        return failed(
            CHECK_INCLUSION,
            f"{PROOF} is malformed: {len(proof.hashes)} hashes cannot be the path of leaf "
            f"{proof.leaf_index} in a tree of {proof.tree_size} leaves",
        )
    if computed != checkpoint.root:
        # With a valid seal, checkpoint.txt is as the provider wrote it: the fault is elsewhere.
        altered = (
            f"{LEAF} or a hash of {PROOF} was altered ({CHECKPOINT} is as sealed)"
            if checkpoint_sealed
            else f"{LEAF}, a hash of {PROOF} or {CHECKPOINT} was altered"
        )
        return failed(
            CHECK_INCLUSION,
            f"{LEAF} with {PROOF} leads to root {computed.hex()}, but {CHECKPOINT} holds root "
            f"{checkpoint.root.hex()}: {altered}",
        )
    return passed(
        CHECK_INCLUSION,
        f"the deposit of document {document_id} is leaf {proof.leaf_index} of the tree of "
        f"{checkpoint.size} leaves whose root {CHECKPOINT} holds (RFC 9162 inclusion proof, "
        f"{len(proof.hashes)} hashes)",
    )


# ---- seal and time stamp ----


@dataclass(frozen=True)
class SignatureChecks:
    seal: Check
    timestamp: Check
    gen_time: datetime | None = None
    tsa_subject: str | None = None
    seal_subject: str | None = None
    seal_signing_time: datetime | None = None


def _imprint_algorithm(timestamp_response: bytes) -> str | None:
    try:
        response = TimeStampResp.load(timestamp_response)
        token = response["time_stamp_token"]["content"]
        tst = tsp.TSTInfo.load(bytes(token["encap_content_info"]["content"]))
        return str(tst["message_imprint"]["hash_algorithm"]["algorithm"].native)
    except (ValueError, TypeError, KeyError):
        return None


def check_signatures(
    checkpoint: bytes | None,
    seal: bytes | None,
    timestamp_response: bytes | None,
    tsa_chain: Sequence[x509.Certificate] | None,
    trust: Trust | None,
    tsa_trust: Trust | None,
    names: Mapping[str, str],
) -> SignatureChecks:
    """The seal and time-stamp checks of a checkpoint: the seal chains to `trust` (the seal's
    root), the time stamp to `tsa_trust` (the TSA's own root) through `tsa_chain`. `names`
    says how files are called in reasons (keys "checkpoint", "seal", "timestamp", "root",
    "tsa_chain", "tsa_root")."""
    text, seal_name, stamp_name = names["checkpoint"], names["seal"], names["timestamp"]
    # The time stamp first: its genTime, vouched for by the TSA, is the moment at which the
    # seal certificate must have been valid (rather than the signing time the sealer claims).
    stamp_check: Check
    gen_time = tsa_subject = None
    if tsa_trust is None:
        stamp_check = Check(
            CHECK_TIMESTAMP,
            NOT_RUN,
            f"not checked: {names['tsa_root']} missing or unreadable, and no TSA root pinned",
        )
    elif checkpoint is None or timestamp_response is None:
        stamp_check = not_run(
            CHECK_TIMESTAMP,
            [n for n, v in ((text, checkpoint), (stamp_name, timestamp_response)) if v is None],
        )
    else:
        stamp = verify_timestamp_response(
            timestamp_response, checkpoint, tsa_trust.roots, untrusted=list(tsa_chain or ())
        )
        algorithm = _imprint_algorithm(timestamp_response) if stamp.ok else None
        if stamp.ok and algorithm != "sha256":
            stamp_check = failed(
                CHECK_TIMESTAMP, f"{stamp_name} imprints {text} with {algorithm}, not SHA-256"
            )
        elif stamp.ok:
            gen_time, tsa_subject = stamp.gen_time, stamp.tsa_subject
            stamp_check = passed(
                CHECK_TIMESTAMP,
                f"{text} existed at {iso(gen_time)}, time-stamped (RFC 3161) by {tsa_subject}, "
                f"whose certificate chains to {tsa_trust.label}",
            )
        else:
            stamp_check = failed(
                CHECK_TIMESTAMP, _stamp_reason(stamp.reason or "", names, tsa_trust)
            )

    seal_subject = signing_time = None
    seal_check: Check
    if trust is None:
        seal_check = Check(
            CHECK_SEAL,
            NOT_RUN,
            f"not checked: {names['root']} missing or unreadable, and no root pinned",
        )
    elif checkpoint is None or seal is None:
        seal_check = not_run(
            CHECK_SEAL, [n for n, v in ((text, checkpoint), (seal_name, seal)) if v is None]
        )
    else:
        sealed = verify_detached(seal, checkpoint, trust.roots, at=gen_time)
        if sealed.ok:
            seal_subject, signing_time = sealed.signer_subject, sealed.signing_time
            seal_check = passed(
                CHECK_SEAL,
                f"{text} is sealed (CMS, {seal_name}) by {seal_subject}, whose certificate "
                f"chains to {trust.label}",
            )
        else:
            seal_check = failed(CHECK_SEAL, _seal_reason(sealed.reason or "", names, trust))
    return SignatureChecks(
        seal_check, stamp_check, gen_time, tsa_subject, seal_subject, signing_time
    )


def _seal_reason(reason: str, names: Mapping[str, str], trust: Trust) -> str:
    text, seal_name = names["checkpoint"], names["seal"]
    if "message digest" in reason:
        return f"{text} is not the text that was sealed: {seal_name} covers other bytes ({reason})"
    if "chain not trusted" in reason:
        return f"the seal certificate of {seal_name} does not chain to {trust.label} ({reason})"
    return f"{seal_name} is not a valid seal over {text}: {reason}"


def _stamp_reason(reason: str, names: Mapping[str, str], trust: Trust) -> str:
    text, stamp_name = names["checkpoint"], names["timestamp"]
    if "imprint" in reason:
        return (
            f"{stamp_name} time-stamps other data than {text} (its imprint is not SHA-256 "
            f"of {text})"
        )
    if "chain not trusted" in reason:
        return (
            f"the TSA certificate of {stamp_name} does not chain to {trust.label} through "
            f"{names['tsa_chain']} ({reason})"
        )
    return f"{stamp_name} is not a valid time stamp of {text}: {reason}"


# ---- consistency between two checkpoints ----


def check_consistency(
    old_checkpoint: bytes,
    new_checkpoint: bytes,
    proof_hashes: Sequence[bytes],
) -> Check:
    """RFC 9162 consistency of two checkpoints of one log (`verify_consistency_between`)."""
    try:
        old = parse_checkpoint(old_checkpoint)
    except CheckpointError as exc:
        return failed(CHECK_CONSISTENCY, f"the older checkpoint is malformed: {exc}")
    try:
        new = parse_checkpoint(new_checkpoint)
    except CheckpointError as exc:
        return failed(CHECK_CONSISTENCY, f"the newer checkpoint is malformed: {exc}")
    if old.origin != new.origin:
        return failed(
            CHECK_CONSISTENCY,
            f"the checkpoints are of different logs: {old.origin!r} and {new.origin!r}",
        )
    if new.size < old.size:
        return failed(
            CHECK_CONSISTENCY,
            f"the log shrank from {old.size} to {new.size} leaves: the newer checkpoint cannot "
            "extend the older one",
        )
    if not all(isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE for h in proof_hashes):
        return failed(
            CHECK_CONSISTENCY, f"the consistency proof holds hashes that are not {HASH_SIZE} bytes"
        )
    if verify_consistency(old.size, new.size, list(proof_hashes), old.root, new.root):
        if old.size == new.size:
            return passed(
                CHECK_CONSISTENCY,
                f"same tree: {new.size} leaves, root {_b64(new.root)}; nothing appended since",
            )
        return passed(
            CHECK_CONSISTENCY,
            f"the tree of {new.size} leaves (root {_b64(new.root)}) extends the tree of "
            f"{old.size} leaves (root {_b64(old.root)}) without changing it (RFC 9162 "
            f"consistency proof, {len(proof_hashes)} hashes)",
        )
    if old.size == new.size:
        return failed(
            CHECK_CONSISTENCY,
            f"two different roots for the same {old.size} leaves ({_b64(old.root)} and "
            f"{_b64(new.root)}): the log was rewritten",
        )
    return failed(
        CHECK_CONSISTENCY,
        f"the consistency proof does not show the tree of {new.size} leaves extending the "
        f"tree of {old.size} leaves (root {_b64(old.root)}): the log was rewritten since the "
        "older checkpoint, or the proof is wrong",
    )


def _b64(root: bytes) -> str:
    # As checkpoint.txt writes it, so a person can compare with the file.
    return base64.b64encode(root).decode("ascii")
