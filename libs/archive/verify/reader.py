"""Reading an evidence bundle: the ZIP with its member caps, the parse of every member, and
the roots to trust. Problems are collected, never raised: the checks turn them into reasons."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeGuard, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from archive.sealing.canonical_json import canonicalize
from archive.sealing.checkpoint import Checkpoint, CheckpointError, parse_checkpoint
from archive.sealing.cms import SignedDataInvalid, load_signed_data
from archive.sealing.merkle import HASH_SIZE
from archive.sealing.timestamps import TimeStampResp
from archive.verify.layout import (
    CHECKPOINT,
    EXPECTED_FILES,
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
    "MAX_MEMBER_SIZE",
    "Bundle",
    "Proof",
    "Trust",
    "choose_trust",
    "is_int",
    "load_trusted_roots",
    "parse_certificates",
    "read_bundle",
]

# Evidence is a few kilobytes; anything this large is not ours (and must not exhaust memory).
MAX_MEMBER_SIZE: Final = 16 * 1024 * 1024

_T = TypeVar("_T")


# ---- trust ----


@dataclass(frozen=True)
class Trust:
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


def choose_trust(
    shipped: list[x509.Certificate] | None,
    trusted_root_pem: bytes | None,
    *,
    shipped_label: str,
    shipped_note: str,
    pinned_label: str = "your pinned root",
) -> Trust | None:
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
        return Trust(
            roots, pinned_label, note, roots[0].subject.rfc4514_string(), _fingerprint(roots[0])
        )
    if not shipped:
        return None
    return Trust(
        shipped,
        shipped_label,
        shipped_note,
        shipped[0].subject.rfc4514_string(),
        _fingerprint(shipped[0]),
    )


# ---- the bundle ----


@dataclass
class Proof:
    leaf_index: int
    tree_size: int
    hashes: list[bytes]


@dataclass
class Bundle:
    """What could be read and parsed; `problems` names each file that could not.

    `zip_error` is set when the evidence is not a readable ZIP at all (nothing else is then).
    """

    raw: dict[str, bytes] = field(default_factory=dict)
    leaf: dict[str, Any] | None = None
    proof: Proof | None = None
    checkpoint: Checkpoint | None = None
    tsa_chain: list[x509.Certificate] | None = None
    tsa_roots: list[x509.Certificate] | None = None
    roots: list[x509.Certificate] | None = None
    problems: list[str] = field(default_factory=list)
    unusable: set[str] = field(default_factory=set)
    zip_error: str | None = None

    def usable(self, name: str) -> bool:
        return name in self.raw and name not in self.unusable

    def member(self, name: str) -> bytes | None:
        """The raw bytes of a member that was read and parsed, else None."""
        return self.raw.get(name) if self.usable(name) else None


def read_bundle(bundle_zip: bytes) -> Bundle:
    """Read and parse every member of `bundle_zip`; never raises for bad evidence."""
    bundle = Bundle()
    if _read_zip(bundle_zip, bundle):
        _parse_members(bundle)
    return bundle


def _read_zip(bundle_zip: bytes, bundle: Bundle) -> bool:
    try:
        archive = zipfile.ZipFile(io.BytesIO(bundle_zip))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        bundle.zip_error = f"not a ZIP file ({exc})"
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
            if info.file_size > MAX_MEMBER_SIZE:
                bundle.problems.append(f"{name} is implausibly large ({info.file_size} bytes)")
                bundle.unusable.add(name)
                continue
            try:
                bundle.raw[name] = archive.read(info)
            except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError) as exc:
                bundle.problems.append(f"{name} cannot be read from the ZIP ({exc})")
                bundle.unusable.add(name)
    return True


def _parse_members(bundle: Bundle) -> None:
    for name in EXPECTED_FILES:
        if name not in bundle.raw and name not in bundle.unusable:
            bundle.problems.append(f"{name} is missing")
            bundle.unusable.add(name)

    def parse(name: str, parser: Callable[[bytes], _T]) -> _T | None:
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
    parse(SEAL_CHAIN, parse_certificates)
    bundle.tsa_chain = parse(TSA_CHAIN, parse_certificates)
    bundle.tsa_roots = parse(TSA_ROOT, parse_certificates)
    bundle.roots = parse(ROOT, parse_certificates)
    parse(VERIFY, lambda raw: raw.decode("utf-8"))


# ---- the parsers ----


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


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


def _parse_proof(raw: bytes) -> Proof:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    index, size, hex_hashes = value.get("leaf_index"), value.get("tree_size"), value.get("hashes")
    if not is_int(index) or index < 0:
        raise ValueError("leaf_index must be a non-negative integer")
    if not is_int(size) or size < 1:
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
    return Proof(index, size, hashes)


def parse_certificates(raw: bytes) -> list[x509.Certificate]:
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
