"""Offline verification of evidence bundles and signed checkpoints, without the archive.

What `archivectl verify`, `evidence`, `checkpoint` and `verify-extends` run, and what anyone can
run with nothing but an evidence bundle (the ZIP `GetEvidence` returns), the document itself
and, preferably, a root certificate obtained some other way:

- `verify_evidence(file, bundle_zip, trusted_root_pem=None) -> EvidenceReport`: the five checks
  of VERIFY.md, in order: `bundle` (every file present and well-formed), `document` (the file's
  SHA-256, SHA-512 and size are the deposit's), `inclusion` (the deposit's leaf is in the tree
  whose root checkpoint.txt holds), `seal` (CMS over checkpoint.txt, chained to the trusted
  root), `timestamp` (RFC 3161 over SHA-256(checkpoint.txt), chained to the trusted root).
- `verify_signed_checkpoint(...) -> CheckpointReport`: the `seal` and `timestamp` checks of a
  checkpoint on its own (as `GetCheckpoint` or `archivectl checkpoint -o DIR` gives it).
- `verify_consistency_between(old, new, proof) -> Check`: RFC 9162 consistency between two
  checkpoints of one log, i.e. the newer one extends the older without rewriting it.

Nothing here raises for bad evidence: every problem becomes a failed `Check` whose reason says
what broke, in words for a person. Only caller errors raise (ValueError for a pinned root that is
not a PEM certificate, OSError for a file that cannot be read).

Trust: by default the root shipped in the bundle (certs/root.pem). That proves the bundle is
internally consistent and sealed by *some* key chaining to that root, not that the root is the
provider's: pin the provider's root (`trusted_root_pem`, `--trust-root`) for that. With a pinned
root, a bundle re-signed under another root fails even though it is self-consistent.

This module is the format's reference reader; it deliberately imports nothing from the server
(services/), so the file names below restate those of services/sealing/evidence.py.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from archive.sealing.canonical_json import canonicalize
from archive.sealing.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from archive.sealing.cms import SignedDataInvalid, load_signed_data, verify_detached
from archive.sealing.merkle import (
    HASH_SIZE,
    leaf_hash,
    root_from_inclusion,
    verify_consistency,
)
from archive.sealing.timestamping import TimeStampResp, verify_timestamp_response

__all__ = [
    "CHECK_BUNDLE",
    "CHECK_CHECKPOINT",
    "CHECK_CONSISTENCY",
    "CHECK_DOCUMENT",
    "CHECK_INCLUSION",
    "CHECK_SEAL",
    "CHECK_TIMESTAMP",
    "EXPECTED_FILES",
    "Check",
    "CheckpointReport",
    "EvidenceReport",
    "load_trusted_roots",
    "verify_consistency_between",
    "verify_evidence",
    "verify_signed_checkpoint",
]

# The bundle's members; services/sealing/evidence.py writes them under these same names.
LEAF: Final = "leaf.json"
PROOF: Final = "inclusion-proof.json"
CHECKPOINT: Final = "checkpoint.txt"
SEAL: Final = "checkpoint.p7s"
TIMESTAMP: Final = "checkpoint.tsr"
SEAL_CHAIN: Final = "certs/seal-chain.pem"
TSA_CHAIN: Final = "certs/tsa-chain.pem"
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
    ROOT,
    VERIFY,
)

CHECK_BUNDLE: Final = "bundle"
CHECK_DOCUMENT: Final = "document"
CHECK_INCLUSION: Final = "inclusion"
CHECK_CHECKPOINT: Final = "checkpoint"
CHECK_SEAL: Final = "seal"
CHECK_TIMESTAMP: Final = "timestamp"
CHECK_CONSISTENCY: Final = "consistency"

OK: Final = "ok"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"  # deliberately not checked (no file given): not a failure
NOT_RUN: Final = "not run"  # could not be checked because something it needs is broken

DOCUMENT_INGESTED: Final = "archive.v1.DocumentIngested"
# Evidence is a few kilobytes; anything this large is not ours (and must not exhaust memory).
_MAX_MEMBER_SIZE: Final = 16 * 1024 * 1024
_HASH_BLOCK: Final = 1024 * 1024
_TRUST_BUNDLE_HINT: Final = (
    "trusting the root shipped in the bundle; pass --trust-root to pin your own"
)


@dataclass(frozen=True)
class Check:
    """One verification step: `status` is ok, failed, skipped or "not run"."""

    name: str
    status: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.status in (OK, SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "ok": self.ok, "reason": self.reason}


def _ok(name: str, reason: str) -> Check:
    return Check(name, OK, reason)


def _failed(name: str, reason: str) -> Check:
    return Check(name, FAILED, reason)


def _not_run(name: str, needs: Sequence[str]) -> Check:
    return Check(name, NOT_RUN, f"not checked: {', '.join(needs)} missing or unreadable")


class _Outcome:
    """Shared by the reports: `ok` only when every check passed (or was skipped on purpose)."""

    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((check for check in self.checks if not check.ok), None)

    def check(self, name: str) -> Check:
        """The check called `name` (KeyError if the report has none)."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class EvidenceReport(_Outcome):
    """The outcome of `verify_evidence`: every check in order, and what the bundle states.

    The facts are read from the bundle whether or not the checks pass; only trust them when
    `ok`. `gen_time`, `tsa_subject` and `seal_subject` are set only when their check passed.
    """

    checks: tuple[Check, ...]
    trust: str
    document_id: str | None = None
    sha256: str | None = None
    sha512: str | None = None
    size: int | None = None
    leaf_index: int | None = None
    tree_size: int | None = None
    origin: str | None = None
    root_hash: str | None = None
    gen_time: datetime | None = None
    tsa_subject: str | None = None
    seal_subject: str | None = None
    seal_signing_time: datetime | None = None
    root_subject: str | None = None
    root_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "ok": self.ok,
            "first_failure": first.to_dict() if first is not None else None,
            "checks": [check.to_dict() for check in self.checks],
            "document_id": self.document_id,
            "sha256": self.sha256,
            "sha512": self.sha512,
            "size": self.size,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "origin": self.origin,
            "root_hash": self.root_hash,
            "gen_time": _iso(self.gen_time),
            "tsa_subject": self.tsa_subject,
            "seal_subject": self.seal_subject,
            "seal_signing_time": _iso(self.seal_signing_time),
            "root_subject": self.root_subject,
            "root_sha256": self.root_sha256,
            "trust": self.trust,
        }


@dataclass(frozen=True)
class CheckpointReport(_Outcome):
    """The outcome of `verify_signed_checkpoint`: checks checkpoint, seal, timestamp."""

    checks: tuple[Check, ...]
    trust: str
    checkpoint: Checkpoint | None = None
    gen_time: datetime | None = None
    tsa_subject: str | None = None
    seal_subject: str | None = None
    root_subject: str | None = None
    root_sha256: str | None = None

    @property
    def origin(self) -> str | None:
        return self.checkpoint.origin if self.checkpoint is not None else None

    @property
    def tree_size(self) -> int | None:
        return self.checkpoint.size if self.checkpoint is not None else None

    @property
    def root_hash(self) -> str | None:
        return self.checkpoint.root.hex() if self.checkpoint is not None else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "ok": self.ok,
            "first_failure": first.to_dict() if first is not None else None,
            "checks": [check.to_dict() for check in self.checks],
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "gen_time": _iso(self.gen_time),
            "tsa_subject": self.tsa_subject,
            "seal_subject": self.seal_subject,
            "root_subject": self.root_subject,
            "root_sha256": self.root_sha256,
            "trust": self.trust,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


# ---------------------------------------------------------------------------------------------
# Trust
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trust:
    roots: list[x509.Certificate]
    label: str  # "the root shipped in the bundle" / "your pinned root", for reasons
    note: str  # the report's `trust` line
    subject: str
    fingerprint: str


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def load_trusted_roots(trusted_root_pem: bytes) -> list[x509.Certificate]:
    """The certificates of a pinned root PEM file; ValueError if there are none."""
    try:
        roots = x509.load_pem_x509_certificates(trusted_root_pem)
    except ValueError as exc:
        raise ValueError(f"the trusted root is not a PEM certificate: {exc}") from None
    if not roots:
        raise ValueError("the trusted root is not a PEM certificate")
    return roots


def _trust(
    shipped: list[x509.Certificate] | None,
    trusted_root_pem: bytes | None,
    *,
    shipped_label: str,
    shipped_note: str,
    pinned_label: str = "your pinned root",
) -> _Trust | None:
    """The roots to validate against: the pinned ones if given, else those shipped. The labels
    name them in reasons ("... chains to <label>")."""
    if trusted_root_pem is not None:
        roots = load_trusted_roots(trusted_root_pem)
        note = f"trusting only {pinned_label} {roots[0].subject.rfc4514_string()}"
        if shipped and {_fingerprint(c) for c in shipped} != {_fingerprint(c) for c in roots}:
            # Worth saying: it is the usual reason why the seal then fails to chain.
            note += (
                f"; {shipped_label} is a different certificate "
                f"({shipped[0].subject.rfc4514_string()})"
            )
        return _Trust(
            roots, pinned_label, note, roots[0].subject.rfc4514_string(), _fingerprint(roots[0])
        )
    if not shipped:
        return None
    return _Trust(
        shipped,
        shipped_label,
        shipped_note,
        shipped[0].subject.rfc4514_string(),
        _fingerprint(shipped[0]),
    )


# ---------------------------------------------------------------------------------------------
# Reading the bundle
# ---------------------------------------------------------------------------------------------


@dataclass
class _Proof:
    leaf_index: int
    tree_size: int
    hashes: list[bytes]


@dataclass
class _Bundle:
    """What could be read and parsed; `problems` names each file that could not."""

    raw: dict[str, bytes] = field(default_factory=dict)
    leaf: dict[str, Any] | None = None
    proof: _Proof | None = None
    checkpoint: Checkpoint | None = None
    tsa_chain: list[x509.Certificate] | None = None
    roots: list[x509.Certificate] | None = None
    problems: list[str] = field(default_factory=list)
    unusable: set[str] = field(default_factory=set)

    def usable(self, name: str) -> bool:
        return name in self.raw and name not in self.unusable


def _read_zip(bundle_zip: bytes, bundle: _Bundle) -> bool:
    try:
        archive = zipfile.ZipFile(io.BytesIO(bundle_zip))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        bundle.problems.append(f"not a ZIP file ({exc})")
        return False
    with archive:
        seen: set[str] = set()
        for info in archive.infolist():
            name = info.filename
            if name in seen:
                # Two members of one name read differently with different tools: refuse.
                bundle.problems.append(f"{name} appears twice")
                bundle.unusable.add(name)
                continue
            seen.add(name)
            if name not in EXPECTED_FILES:
                continue  # extra files are not evidence, and harmless
            if info.file_size > _MAX_MEMBER_SIZE:
                bundle.problems.append(f"{name} is implausibly large ({info.file_size} bytes)")
                bundle.unusable.add(name)
                continue
            try:
                bundle.raw[name] = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
                bundle.problems.append(f"{name} cannot be read from the ZIP ({exc})")
                bundle.unusable.add(name)
    return True


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _parse_leaf(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    # The leaf hash covers these exact bytes; requiring the one canonical text means what a
    # person reads in leaf.json is exactly what was sealed, with no second reading.
    try:
        canonical = canonicalize(value)
    except ValueError as exc:
        raise ValueError(f"not RFC 8785 canonical JSON ({exc})") from None
    if canonical != raw:
        raise ValueError("not in RFC 8785 canonical form (whitespace or key order changed)")
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_proof(raw: bytes) -> _Proof:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    index, size, hex_hashes = value.get("leaf_index"), value.get("tree_size"), value.get("hashes")
    if not _is_int(index) or index < 0:
        raise ValueError("leaf_index must be a non-negative integer")
    if not _is_int(size) or size < 1:
        raise ValueError("tree_size must be a positive integer")
    if not isinstance(hex_hashes, list):
        raise ValueError("hashes must be a list")
    hashes: list[bytes] = []
    for position, text in enumerate(hex_hashes):
        if not isinstance(text, str) or len(text) != 2 * HASH_SIZE:
            raise ValueError(f"hashes[{position}] is not {HASH_SIZE} bytes of hex")
        try:
            hashes.append(bytes.fromhex(text))
        except ValueError:
            raise ValueError(f"hashes[{position}] is not hex") from None
    return _Proof(index, size, hashes)


def _parse_certificates(raw: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError as exc:
        raise ValueError(f"not PEM certificates ({exc})") from None
    if not certs:
        raise ValueError("no certificate in it")
    return certs


def _parse_timestamp_response(raw: bytes) -> None:
    try:
        response = TimeStampResp.load(raw, strict=True)
        response["status"]["status"].native  # noqa: B018 -- asn1crypto parses lazily
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not an RFC 3161 TimeStampResp ({exc})") from None


def _parse_members(bundle: _Bundle) -> None:
    missing = [name for name in EXPECTED_FILES if name not in bundle.raw]
    for name in missing:
        if name not in bundle.unusable:
            bundle.problems.append(f"{name} is missing")
            bundle.unusable.add(name)

    def parse(name: str, parser: Any) -> Any:
        if not bundle.usable(name):
            return None
        try:
            return parser(bundle.raw[name])
        except (ValueError, CheckpointError, SignedDataInvalid) as exc:
            bundle.problems.append(f"{name} is not well-formed: {exc}")
            bundle.unusable.add(name)
            return None

    bundle.leaf = parse(LEAF, _parse_leaf)
    bundle.proof = parse(PROOF, _parse_proof)
    bundle.checkpoint = parse(CHECKPOINT, parse_checkpoint)
    parse(SEAL, load_signed_data)
    parse(TIMESTAMP, _parse_timestamp_response)
    parse(SEAL_CHAIN, _parse_certificates)
    bundle.tsa_chain = parse(TSA_CHAIN, _parse_certificates)
    bundle.roots = parse(ROOT, _parse_certificates)
    parse(VERIFY, lambda raw: raw.decode("utf-8"))


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def _leaf_data(leaf: dict[str, Any]) -> dict[str, Any]:
    data = leaf.get("data")
    return data if isinstance(data, dict) else {}


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


def _check_document(file: Path | bytes | None, bundle: _Bundle) -> Check:
    if file is None:
        return Check(CHECK_DOCUMENT, SKIPPED, "no file given: the document itself was not compared")
    if bundle.leaf is None:
        return _not_run(CHECK_DOCUMENT, [LEAF])
    leaf_type = bundle.leaf.get("type")
    if leaf_type != DOCUMENT_INGESTED:
        return _failed(
            CHECK_DOCUMENT, f"{LEAF} is a {leaf_type!r} event, not a deposit ({DOCUMENT_INGESTED})"
        )
    data = _leaf_data(bundle.leaf)
    recorded_sha256, recorded_sha512, recorded_size = (
        data.get("sha256"),
        data.get("sha512"),
        data.get("size"),
    )
    if not (
        isinstance(recorded_sha256, str)
        and isinstance(recorded_sha512, str)
        and _is_int(recorded_size)
    ):
        return _failed(CHECK_DOCUMENT, f"{LEAF} lacks data.sha256, data.sha512 or data.size")
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
        return _failed(
            CHECK_DOCUMENT,
            "the file is not the deposited document (or was altered since): "
            + "; ".join(differences),
        )
    return _ok(
        CHECK_DOCUMENT,
        f"the file's SHA-256, SHA-512 and size ({size} bytes) are those recorded at deposit "
        f"in {LEAF}",
    )


def _check_inclusion(
    bundle: _Bundle, expected_document_id: str | None, checkpoint_sealed: bool
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
        return _not_run(CHECK_INCLUSION, needs)
    leaf, proof, checkpoint = bundle.leaf, bundle.proof, bundle.checkpoint
    if leaf.get("type") != DOCUMENT_INGESTED:
        return _failed(
            CHECK_INCLUSION,
            f"{LEAF} is a {leaf.get('type')!r} event, not a deposit ({DOCUMENT_INGESTED})",
        )
    document_id = _leaf_data(leaf).get("document_id")
    if expected_document_id is not None and document_id != expected_document_id:
        return _failed(
            CHECK_INCLUSION,
            f"{LEAF} is the deposit of document {document_id}, not of {expected_document_id}",
        )
    if proof.tree_size != checkpoint.size:
        return _failed(
            CHECK_INCLUSION,
            f"{PROOF} is for a tree of {proof.tree_size} leaves, but {CHECKPOINT} is of "
            f"{checkpoint.size}",
        )
    if proof.leaf_index >= proof.tree_size:
        return _failed(
            CHECK_INCLUSION,
            f"{PROOF}: leaf_index {proof.leaf_index} is not below tree_size {proof.tree_size}",
        )
    leaf_digest = leaf_hash(bundle.raw[LEAF])
    computed = root_from_inclusion(leaf_digest, proof.leaf_index, proof.tree_size, proof.hashes)
    if computed is None:
        return _failed(
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
        return _failed(
            CHECK_INCLUSION,
            f"{LEAF} with {PROOF} leads to root {computed.hex()}, but {CHECKPOINT} holds root "
            f"{checkpoint.root.hex()}: {altered}",
        )
    return _ok(
        CHECK_INCLUSION,
        f"the deposit of document {document_id} is leaf {proof.leaf_index} of the tree of "
        f"{checkpoint.size} leaves whose root {CHECKPOINT} holds (RFC 9162 inclusion proof, "
        f"{len(proof.hashes)} hashes)",
    )


@dataclass(frozen=True)
class _SignatureChecks:
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


def _signature_checks(
    checkpoint: bytes | None,
    seal: bytes | None,
    timestamp_response: bytes | None,
    tsa_chain: Sequence[x509.Certificate] | None,
    trust: _Trust | None,
    names: dict[str, str],
) -> _SignatureChecks:
    """The seal and time-stamp checks of a checkpoint. `names` says how files are called in
    reasons (keys "checkpoint", "seal", "timestamp", "root", "tsa_chain")."""
    text, seal_name, stamp_name = names["checkpoint"], names["seal"], names["timestamp"]
    if trust is None:
        reason = f"not checked: {names['root']} missing or unreadable, and no root pinned"
        return _SignatureChecks(
            Check(CHECK_SEAL, NOT_RUN, reason), Check(CHECK_TIMESTAMP, NOT_RUN, reason)
        )
    # The time stamp first: its genTime, vouched for by the TSA, is the moment at which the
    # seal certificate must have been valid (rather than the signing time the sealer claims).
    stamp_check: Check
    gen_time = tsa_subject = None
    if checkpoint is None or timestamp_response is None:
        stamp_check = _not_run(
            CHECK_TIMESTAMP,
            [n for n, v in ((text, checkpoint), (stamp_name, timestamp_response)) if v is None],
        )
    else:
        stamp = verify_timestamp_response(
            timestamp_response, checkpoint, trust.roots, untrusted=list(tsa_chain or ())
        )
        algorithm = _imprint_algorithm(timestamp_response) if stamp.ok else None
        if stamp.ok and algorithm != "sha256":
            stamp_check = _failed(
                CHECK_TIMESTAMP, f"{stamp_name} imprints {text} with {algorithm}, not SHA-256"
            )
        elif stamp.ok:
            gen_time, tsa_subject = stamp.gen_time, stamp.tsa_subject
            stamp_check = _ok(
                CHECK_TIMESTAMP,
                f"{text} existed at {_iso(gen_time)}, time-stamped (RFC 3161) by {tsa_subject}, "
                f"whose certificate chains to {trust.label}",
            )
        else:
            stamp_check = _failed(CHECK_TIMESTAMP, _stamp_reason(stamp.reason or "", names, trust))

    seal_subject = signing_time = None
    if checkpoint is None or seal is None:
        seal_check = _not_run(
            CHECK_SEAL, [n for n, v in ((text, checkpoint), (seal_name, seal)) if v is None]
        )
    else:
        sealed = verify_detached(seal, checkpoint, trust.roots, at=gen_time)
        if sealed.ok:
            seal_subject, signing_time = sealed.signer_subject, sealed.signing_time
            seal_check = _ok(
                CHECK_SEAL,
                f"{text} is sealed (CMS, {seal_name}) by {seal_subject}, whose certificate "
                f"chains to {trust.label}",
            )
        else:
            seal_check = _failed(CHECK_SEAL, _seal_reason(sealed.reason or "", names, trust))
    return _SignatureChecks(
        seal_check, stamp_check, gen_time, tsa_subject, seal_subject, signing_time
    )


def _seal_reason(reason: str, names: dict[str, str], trust: _Trust) -> str:
    text, seal_name = names["checkpoint"], names["seal"]
    if "message digest" in reason:
        return f"{text} is not the text that was sealed: {seal_name} covers other bytes ({reason})"
    if "chain not trusted" in reason:
        return f"the seal certificate of {seal_name} does not chain to {trust.label} ({reason})"
    return f"{seal_name} is not a valid seal over {text}: {reason}"


def _stamp_reason(reason: str, names: dict[str, str], trust: _Trust) -> str:
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


_BUNDLE_TRUST: Final = {
    "shipped_label": f"the root shipped in the bundle ({ROOT})",
    "shipped_note": _TRUST_BUNDLE_HINT,
}
_BUNDLE_NAMES: Final = {
    "checkpoint": CHECKPOINT,
    "seal": SEAL,
    "timestamp": TIMESTAMP,
    "root": ROOT,
    "tsa_chain": TSA_CHAIN,
}


def verify_evidence(
    file: Path | bytes | None,
    bundle_zip: bytes,
    *,
    trusted_root_pem: bytes | None = None,
    document_id: str | None = None,
) -> EvidenceReport:
    """Verify an evidence bundle (and the document `file`, unless None) offline.

    `trusted_root_pem` pins the root the seal and time stamp must chain to; by default the
    bundle's own certs/root.pem is trusted (and the report's `trust` says so). `document_id`,
    when given, must be the document the bundle is about. Raises only for a pinned root that
    is not PEM (ValueError) or a file that cannot be read (OSError).
    """
    if isinstance(file, str):
        raise TypeError("pass a pathlib.Path for a file, or bytes for content, not a str")
    if isinstance(file, os.PathLike):
        file = Path(file)
    if trusted_root_pem is not None:
        load_trusted_roots(trusted_root_pem)  # a caller's error: raise before reading anything
    bundle = _Bundle()
    if not _read_zip(bundle_zip, bundle):
        trust = _trust(None, trusted_root_pem, **_BUNDLE_TRUST)
        checks = [_failed(CHECK_BUNDLE, f"the evidence is {bundle.problems[0]}")]
        checks += [
            Check(name, NOT_RUN, "not checked: the bundle cannot be read")
            for name in (CHECK_DOCUMENT, CHECK_INCLUSION, CHECK_SEAL, CHECK_TIMESTAMP)
        ]
        return EvidenceReport(
            tuple(checks), trust.note if trust is not None else _TRUST_BUNDLE_HINT
        )
    _parse_members(bundle)
    if bundle.problems:
        bundle_check = _failed(
            CHECK_BUNDLE, "the bundle is incomplete: " + "; ".join(bundle.problems)
        )
    else:
        bundle_check = _ok(
            CHECK_BUNDLE, f"all {len(EXPECTED_FILES)} files are present and well-formed"
        )
    trust = _trust(bundle.roots, trusted_root_pem, **_BUNDLE_TRUST)
    signatures = _signature_checks(
        bundle.raw.get(CHECKPOINT) if bundle.checkpoint is not None else None,
        bundle.raw.get(SEAL) if bundle.usable(SEAL) else None,
        bundle.raw.get(TIMESTAMP) if bundle.usable(TIMESTAMP) else None,
        bundle.tsa_chain,
        trust,
        _BUNDLE_NAMES,
    )
    checks = (
        bundle_check,
        _check_document(file, bundle),
        _check_inclusion(bundle, document_id, signatures.seal.status == OK),
        signatures.seal,
        signatures.timestamp,
    )
    data = _leaf_data(bundle.leaf) if bundle.leaf is not None else {}
    return EvidenceReport(
        checks,
        trust.note if trust is not None else _TRUST_BUNDLE_HINT,
        document_id=_str_or_none(data.get("document_id")),
        sha256=_str_or_none(data.get("sha256")),
        sha512=_str_or_none(data.get("sha512")),
        size=data.get("size") if _is_int(data.get("size")) else None,
        leaf_index=bundle.proof.leaf_index if bundle.proof is not None else None,
        tree_size=bundle.checkpoint.size if bundle.checkpoint is not None else None,
        origin=bundle.checkpoint.origin if bundle.checkpoint is not None else None,
        root_hash=bundle.checkpoint.root.hex() if bundle.checkpoint is not None else None,
        gen_time=signatures.gen_time,
        tsa_subject=signatures.tsa_subject,
        seal_subject=signatures.seal_subject,
        seal_signing_time=signatures.seal_signing_time,
        root_subject=trust.subject if trust is not None else None,
        root_sha256=trust.fingerprint if trust is not None else None,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


# ---------------------------------------------------------------------------------------------
# Checkpoints on their own, and consistency between two of them
# ---------------------------------------------------------------------------------------------


def verify_signed_checkpoint(
    checkpoint: bytes,
    seal: bytes | None,
    timestamp_response: bytes | None,
    *,
    tsa_chain_pem: bytes | None = None,
    root_pem: bytes | None = None,
    trusted_root_pem: bytes | None = None,
    trusted_root_label: str = "your pinned root",
    names: dict[str, str] | None = None,
) -> CheckpointReport:
    """Verify a checkpoint's seal and time stamp offline: checks checkpoint (the text parses),
    seal and timestamp. A missing seal fails; a missing time stamp (None) is skipped.

    `root_pem` is the root shipped with the checkpoint, trusted unless `trusted_root_pem`
    pins one (called `trusted_root_label` in reasons). `names` renames the files in reasons
    (keys checkpoint, seal, timestamp, root, tsa_chain; default: the bundle's file names).
    """
    labels = {**_BUNDLE_NAMES, **(names or {})}
    checks: list[Check] = []
    parsed: Checkpoint | None = None
    try:
        parsed = parse_checkpoint(checkpoint)
        checks.append(
            _ok(
                CHECK_CHECKPOINT,
                f"{labels['checkpoint']} is a well-formed checkpoint of "
                f"{parsed.origin}, {parsed.size} leaves",
            )
        )
    except CheckpointError as exc:
        checks.append(_failed(CHECK_CHECKPOINT, f"{labels['checkpoint']} is malformed: {exc}"))
    shipped: list[x509.Certificate] | None = None
    if root_pem:
        try:
            shipped = _parse_certificates(root_pem)
        except ValueError:
            shipped = None
    tsa_chain: list[x509.Certificate] = []
    if tsa_chain_pem:
        try:
            tsa_chain = _parse_certificates(tsa_chain_pem)
        except ValueError:
            tsa_chain = []
    trust = _trust(
        shipped,
        trusted_root_pem,
        shipped_label=labels["root"],
        shipped_note=f"trusting {labels['root']}, shipped with the checkpoint; pass "
        "--trust-root to pin your own",
        pinned_label=trusted_root_label,
    )
    signatures = _signature_checks(
        checkpoint if parsed is not None else None,
        seal,
        timestamp_response,
        tsa_chain,
        trust,
        labels,
    )
    seal_check = signatures.seal
    if seal is None and parsed is not None:
        seal_check = _failed(CHECK_SEAL, f"no seal ({labels['seal']}): the checkpoint is unsigned")
    stamp_check = signatures.timestamp
    if timestamp_response is None and parsed is not None:
        stamp_check = Check(CHECK_TIMESTAMP, SKIPPED, f"no time stamp ({labels['timestamp']})")
    checks += [seal_check, stamp_check]
    return CheckpointReport(
        tuple(checks),
        trust.note if trust is not None else "no root: nothing to trust",
        checkpoint=parsed,
        gen_time=signatures.gen_time,
        tsa_subject=signatures.tsa_subject,
        seal_subject=signatures.seal_subject,
        root_subject=trust.subject if trust is not None else None,
        root_sha256=trust.fingerprint if trust is not None else None,
    )


def verify_consistency_between(
    old_checkpoint: bytes,
    new_checkpoint: bytes,
    proof_hashes: Sequence[bytes],
) -> Check:
    """RFC 9162 2.1.4.2: is `new_checkpoint`'s tree an append-only extension of
    `old_checkpoint`'s, by `proof_hashes` (the consistency proof from the old size to the new)?

    Both must be checkpoints of one log (same origin). Check their signatures separately
    (`verify_signed_checkpoint`): this only relates their roots.
    """
    try:
        old = parse_checkpoint(old_checkpoint)
    except CheckpointError as exc:
        return _failed(CHECK_CONSISTENCY, f"the older checkpoint is malformed: {exc}")
    try:
        new = parse_checkpoint(new_checkpoint)
    except CheckpointError as exc:
        return _failed(CHECK_CONSISTENCY, f"the newer checkpoint is malformed: {exc}")
    if old.origin != new.origin:
        return _failed(
            CHECK_CONSISTENCY,
            f"the checkpoints are of different logs: {old.origin!r} and {new.origin!r}",
        )
    if new.size < old.size:
        return _failed(
            CHECK_CONSISTENCY,
            f"the log shrank from {old.size} to {new.size} leaves: the newer checkpoint cannot "
            "extend the older one",
        )
    if not all(isinstance(h, bytes | bytearray) and len(h) == HASH_SIZE for h in proof_hashes):
        return _failed(
            CHECK_CONSISTENCY, f"the consistency proof holds hashes that are not {HASH_SIZE} bytes"
        )
    if verify_consistency(old.size, new.size, list(proof_hashes), old.root, new.root):
        if old.size == new.size:
            return _ok(
                CHECK_CONSISTENCY,
                f"same tree: {new.size} leaves, root {_b64(new.root)}; nothing appended since",
            )
        return _ok(
            CHECK_CONSISTENCY,
            f"the tree of {new.size} leaves (root {_b64(new.root)}) extends the tree of "
            f"{old.size} leaves (root {_b64(old.root)}) without changing it (RFC 9162 "
            f"consistency proof, {len(proof_hashes)} hashes)",
        )
    if old.size == new.size:
        return _failed(
            CHECK_CONSISTENCY,
            f"two different roots for the same {old.size} leaves ({_b64(old.root)} and "
            f"{_b64(new.root)}): the log was rewritten",
        )
    return _failed(
        CHECK_CONSISTENCY,
        f"the consistency proof does not show the tree of {new.size} leaves extending the "
        f"tree of {old.size} leaves (root {_b64(old.root)}): the log was rewritten since the "
        "older checkpoint, or the proof is wrong",
    )


def _b64(root: bytes) -> str:
    # As checkpoint.txt writes it, so a person can compare with the file.
    return base64.b64encode(root).decode("ascii")
