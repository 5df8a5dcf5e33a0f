"""Offline verification of evidence bundles and signed checkpoints, without the archive.

What `archivectl verify`, `evidence`, `checkpoint` and `verify-extends` run, and what anyone can
run with nothing but an evidence bundle (the ZIP `GetEvidence` returns), the document itself
and, preferably, a root certificate obtained some other way:

- `verify_evidence(file, bundle_zip, trusted_root_pem=None) -> EvidenceReport`: the five checks
  of VERIFY.md, in order: `bundle` (every file present and well-formed), `document` (the file's
  SHA-256, SHA-512 and size are the deposit's), `inclusion` (the deposit's leaf is in the tree
  whose root checkpoint.txt holds), `seal` (CMS over checkpoint.txt, chained to the trusted
  seal root), `timestamp` (RFC 3161 over SHA-256(checkpoint.txt), chained to the trusted TSA
  root: the time-stamp authority is somebody else, with a root of its own).
- `verify_signed_checkpoint(...) -> CheckpointReport`: the `seal` and `timestamp` checks of a
  checkpoint on its own (as `GetCheckpoint` or `archivectl checkpoint -o DIR` gives it).
- `verify_consistency_between(old, new, proof) -> Check`: RFC 9162 consistency between two
  checkpoints of one log, i.e. the newer one extends the older without rewriting it.

Nothing here raises for bad evidence: every problem becomes a failed `Check` whose reason says
what broke, in words for a person. Only caller errors raise (ValueError for a pinned root that is
not a PEM certificate, OSError for a file that cannot be read).

Trust: by default the roots shipped in the bundle (certs/root.pem for the seal,
certs/tsa-root.pem for the time stamp). That proves the bundle is internally consistent and
sealed and stamped by *some* keys chaining to those roots, not that they are the provider's and
the TSA's: pin them (`trusted_root_pem`, `--trust-root`; `trusted_tsa_root_pem`,
`--trust-tsa-root`) for that. With a pinned root, a bundle re-signed under another root fails
even though it is self-consistent.

The modules: `layout` (the bundle's member names, shared with the writer in
services/sealing/evidence.py), `reader` (ZIP, member caps, parsing, trust), `checks` and `report`.
This package is the format's reference reader and imports nothing from the server (services/).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509

from archive.sealing.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from archive.verify import layout
from archive.verify.checks import (
    check_consistency,
    check_document,
    check_inclusion,
    check_signatures,
    leaf_data,
)
from archive.verify.reader import (
    choose_trust,
    is_int,
    load_trusted_roots,
    parse_certificates,
    read_bundle,
)
from archive.verify.report import (
    CHECK_BUNDLE,
    CHECK_CHECKPOINT,
    CHECK_CONSISTENCY,
    CHECK_DOCUMENT,
    CHECK_INCLUSION,
    CHECK_SEAL,
    CHECK_TIMESTAMP,
    FAILED,
    NOT_RUN,
    OK,
    SKIPPED,
    Check,
    CheckpointReport,
    EvidenceReport,
    failed,
    passed,
)

__all__ = [
    "CHECK_BUNDLE",
    "CHECK_CHECKPOINT",
    "CHECK_CONSISTENCY",
    "CHECK_DOCUMENT",
    "CHECK_INCLUSION",
    "CHECK_SEAL",
    "CHECK_TIMESTAMP",
    "FAILED",
    "NOT_RUN",
    "OK",
    "SKIPPED",
    "Check",
    "CheckpointReport",
    "EvidenceReport",
    "load_trusted_roots",
    "verify_consistency_between",
    "verify_evidence",
    "verify_signed_checkpoint",
]

_TRUST_BUNDLE_HINT: Final = (
    "trusting the root shipped in the bundle; pass --trust-root to pin your own"
)
_BUNDLE_ROOT_LABEL: Final = f"the root shipped in the bundle ({layout.ROOT})"
_TSA_TRUST_BUNDLE_HINT: Final = (
    "trusting the TSA root shipped in the bundle; pass --trust-tsa-root to pin the TSA's own"
)
_BUNDLE_TSA_ROOT_LABEL: Final = f"the TSA root shipped in the bundle ({layout.TSA_ROOT})"
_PINNED_TSA_LABEL: Final = "your pinned TSA root"
_BUNDLE_NAMES: Final = {
    "checkpoint": layout.CHECKPOINT,
    "seal": layout.SEAL,
    "timestamp": layout.TIMESTAMP,
    "root": layout.ROOT,
    "tsa_chain": layout.TSA_CHAIN,
    "tsa_root": layout.TSA_ROOT,
}


def verify_evidence(
    file: Path | bytes | None,
    bundle_zip: bytes,
    *,
    trusted_root_pem: bytes | None = None,
    trusted_tsa_root_pem: bytes | None = None,
    document_id: str | None = None,
) -> EvidenceReport:
    """Verify an evidence bundle (and the document `file`, unless None) offline.

    `trusted_root_pem` pins the root the seal must chain to, `trusted_tsa_root_pem` the one
    the time stamp must chain to; by default the bundle's own certs/root.pem and
    certs/tsa-root.pem are trusted (and the report's `trust` and `tsa_trust` say so).
    `document_id`, when given, must be the document the bundle is about. Raises only for a
    pinned root that is not PEM (ValueError) or a file that cannot be read (OSError).
    """
    if isinstance(file, str):
        raise TypeError("pass a pathlib.Path for a file, or bytes for content, not a str")
    if isinstance(file, os.PathLike):
        file = Path(file)
    for pinned in (trusted_root_pem, trusted_tsa_root_pem):
        if pinned is not None:
            load_trusted_roots(pinned)  # a caller's error: raise before reading anything
    bundle = read_bundle(bundle_zip)
    trust = choose_trust(
        bundle.roots,
        trusted_root_pem,
        shipped_label=_BUNDLE_ROOT_LABEL,
        shipped_note=_TRUST_BUNDLE_HINT,
    )
    tsa_trust = choose_trust(
        bundle.tsa_roots,
        trusted_tsa_root_pem,
        shipped_label=_BUNDLE_TSA_ROOT_LABEL,
        shipped_note=_TSA_TRUST_BUNDLE_HINT,
        pinned_label=_PINNED_TSA_LABEL,
    )
    trust_note = trust.note if trust is not None else _TRUST_BUNDLE_HINT
    tsa_note = tsa_trust.note if tsa_trust is not None else _TSA_TRUST_BUNDLE_HINT
    if bundle.zip_error is not None:
        checks = [failed(CHECK_BUNDLE, f"the evidence is {bundle.zip_error}")]
        checks += [
            Check(name, NOT_RUN, "not checked: the bundle cannot be read")
            for name in (CHECK_DOCUMENT, CHECK_INCLUSION, CHECK_SEAL, CHECK_TIMESTAMP)
        ]
        return EvidenceReport(tuple(checks), trust_note, tsa_trust=tsa_note)
    if bundle.problems:
        bundle_check = failed(
            CHECK_BUNDLE, "the bundle is incomplete: " + "; ".join(bundle.problems)
        )
    else:
        bundle_check = passed(
            CHECK_BUNDLE, f"all {len(layout.EXPECTED_FILES)} files are present and well-formed"
        )
    signatures = check_signatures(
        bundle.member(layout.CHECKPOINT),
        bundle.member(layout.SEAL),
        bundle.member(layout.TIMESTAMP),
        bundle.tsa_chain,
        trust,
        tsa_trust,
        _BUNDLE_NAMES,
    )
    checks = [
        bundle_check,
        check_document(file, bundle),
        check_inclusion(bundle, document_id, signatures.seal.status == OK),
        signatures.seal,
        signatures.timestamp,
    ]
    data = leaf_data(bundle.leaf) if bundle.leaf is not None else {}
    size = data.get("size")
    return EvidenceReport(
        tuple(checks),
        trust_note,
        tsa_trust=tsa_note,
        document_id=_str_or_none(data.get("document_id")),
        sha256=_str_or_none(data.get("sha256")),
        sha512=_str_or_none(data.get("sha512")),
        size=size if is_int(size) else None,
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
        tsa_root_subject=tsa_trust.subject if tsa_trust is not None else None,
        tsa_root_sha256=tsa_trust.fingerprint if tsa_trust is not None else None,
    )


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _certificates_or_none(pem: bytes | None) -> list[x509.Certificate] | None:
    if not pem:
        return None
    try:
        return parse_certificates(pem)
    except ValueError:
        return None  # unreadable: the checks then say what is missing


def verify_signed_checkpoint(
    checkpoint: bytes,
    seal: bytes | None,
    timestamp_response: bytes | None,
    *,
    tsa_chain_pem: bytes | None = None,
    root_pem: bytes | None = None,
    tsa_root_pem: bytes | None = None,
    trusted_root_pem: bytes | None = None,
    trusted_root_label: str = "your pinned root",
    trusted_tsa_root_pem: bytes | None = None,
    trusted_tsa_root_label: str = _PINNED_TSA_LABEL,
    names: dict[str, str] | None = None,
) -> CheckpointReport:
    """Verify a checkpoint's seal and time stamp offline: checks checkpoint (the text parses),
    seal and timestamp. A missing seal fails; a missing time stamp (None) is skipped.

    `root_pem` is the seal's root shipped with the checkpoint, trusted unless
    `trusted_root_pem` pins one (called `trusted_root_label` in reasons); `tsa_root_pem` and
    `trusted_tsa_root_pem` are the same for the time stamp. `names` renames the files in
    reasons (keys checkpoint, seal, timestamp, root, tsa_chain, tsa_root; default: the
    bundle's file names).
    """
    labels = {**_BUNDLE_NAMES, **(names or {})}
    checks: list[Check] = []
    parsed: Checkpoint | None = None
    try:
        parsed = parse_checkpoint(checkpoint)
        checks.append(
            passed(
                CHECK_CHECKPOINT,
                f"{labels['checkpoint']} is a well-formed checkpoint of "
                f"{parsed.origin}, {parsed.size} leaves",
            )
        )
    except CheckpointError as exc:
        checks.append(failed(CHECK_CHECKPOINT, f"{labels['checkpoint']} is malformed: {exc}"))
    trust = choose_trust(
        _certificates_or_none(root_pem),
        trusted_root_pem,
        shipped_label=labels["root"],
        shipped_note=f"trusting {labels['root']}, shipped with the checkpoint; pass "
        "--trust-root to pin your own",
        pinned_label=trusted_root_label,
    )
    tsa_trust = choose_trust(
        _certificates_or_none(tsa_root_pem),
        trusted_tsa_root_pem,
        shipped_label=labels["tsa_root"],
        shipped_note=f"trusting {labels['tsa_root']}, shipped with the checkpoint; pass "
        "--trust-tsa-root to pin the TSA's own",
        pinned_label=trusted_tsa_root_label,
    )
    signatures = check_signatures(
        checkpoint if parsed is not None else None,
        seal,
        timestamp_response,
        _certificates_or_none(tsa_chain_pem) or [],
        trust,
        tsa_trust,
        labels,
    )
    seal_check = signatures.seal
    if seal is None and parsed is not None:
        seal_check = failed(CHECK_SEAL, f"no seal ({labels['seal']}): the checkpoint is unsigned")
    stamp_check = signatures.timestamp
    if timestamp_response is None and parsed is not None:
        stamp_check = Check(CHECK_TIMESTAMP, SKIPPED, f"no time stamp ({labels['timestamp']})")
    checks += [seal_check, stamp_check]
    return CheckpointReport(
        tuple(checks),
        trust.note if trust is not None else "no root: nothing to trust",
        tsa_trust=tsa_trust.note if tsa_trust is not None else "no TSA root: nothing to trust",
        checkpoint=parsed,
        gen_time=signatures.gen_time,
        tsa_subject=signatures.tsa_subject,
        seal_subject=signatures.seal_subject,
        root_subject=trust.subject if trust is not None else None,
        root_sha256=trust.fingerprint if trust is not None else None,
        tsa_root_subject=tsa_trust.subject if tsa_trust is not None else None,
        tsa_root_sha256=tsa_trust.fingerprint if tsa_trust is not None else None,
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
    return check_consistency(old_checkpoint, new_checkpoint, proof_hashes)
