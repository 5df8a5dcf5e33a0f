"""Offline verification of evidence bundles (archive.verify), the SDK's sealing calls and
archivectl's evidence, verify, checkpoint, verify-extends and audit commands.

Bundles are real: a development PKI, a Merkle tree of canonical-JSON leaves, a CMS seal and an
RFC 3161 token from the built-in TSA, zipped by the server's own `build_bundle`. The commands
that talk to the archive run against a small Sealing servicer served from a thread.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import services.sealing.evidence as server_evidence
from archive import verify as bundle
from archive.documents import document_stream
from archive.eventstore import RecordedEvent
from archive.sealing.checkpoint import format_checkpoint
from archive.sealing.cms import seal_detached
from archive.sealing.keys import DevelopmentPKI
from archive.sealing.leaves import leaf_bytes
from archive.sealing.merkle import MerkleTree, leaf_hash
from archive.sealing.timestamps import build_request
from archive.v1 import common_pb2, events_pb2
from archive.verify import (
    CHECK_BUNDLE,
    CHECK_CONSISTENCY,
    CHECK_DOCUMENT,
    CHECK_INCLUSION,
    CHECK_SEAL,
    CHECK_TIMESTAMP,
    EvidenceReport,
    layout,
    verify_consistency_between,
    verify_evidence,
    verify_signed_checkpoint,
)
from archive.verify.reader import read_bundle
from services.sealing.dev_tsa import TimeStampAuthority
from tools.archivectl import main

ORIGIN = "archive.test/acme"
TENANT = "acme"
DOCUMENT_INDEX = 3
TREE_SIZE = 7
# openssl is a dependency of the suite: without it these tests fail, saying what to install.
NEEDS_OPENSSL = pytest.mark.usefixtures("openssl_installed")


# ---- building real evidence ----


def _pem(pki: DevelopmentPKI, name: str) -> str:
    return (pki.directory / name).read_text()


def trust_of(pki: DevelopmentPKI) -> server_evidence.TrustMaterial:
    seal = pki.seal_signer()
    chain = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in [seal.certificate, *seal.chain]
    )
    return server_evidence.TrustMaterial(
        seal_chain_pem=chain.decode(),
        tsa_chain_pem=_pem(pki, DevelopmentPKI.TSA_CHAIN),
        root_pem=_pem(pki, DevelopmentPKI.ROOT),
        tsa_root_pem=_pem(pki, DevelopmentPKI.ROOT),  # the development TSA's root is the same
    )


def signed(pki: DevelopmentPKI, text: bytes) -> tuple[bytes, bytes]:
    """(seal, time-stamp response) over a checkpoint text, made as the sealer makes them."""
    seal = seal_detached(text, pki.seal_signer())
    tsr = TimeStampAuthority(pki.tsa_signer()).respond(build_request(text).der)
    return seal, tsr


def deposit_event(content: bytes, document_id: str) -> RecordedEvent:
    ingested = events_pb2.DocumentIngested(
        tenant=common_pb2.TenantId(value=TENANT),
        document_id=common_pb2.DocumentId(value=document_id),
        sha256=common_pb2.Digest(value=hashlib.sha256(content).digest()),
        sha512=common_pb2.Digest(value=hashlib.sha512(content).digest()),
        size_bytes=len(content),
        file_name="invoice.pdf",
        media_type="application/pdf",
        document_class="invoice",
    )
    ingested.received_at.FromDatetime(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
    return RecordedEvent(
        stream=document_stream(TENANT, document_id),
        version=0,
        position=100,
        event_id=str(uuid.uuid4()),
        type=events_pb2.DocumentIngested.DESCRIPTOR.full_name,
        data=ingested.SerializeToString(),
        recorded_at=datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC),
    )


def access_event(number: int, salt: str = "") -> RecordedEvent:
    document_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"other-{number}{salt}"))
    accessed = events_pb2.DocumentAccessed(
        tenant=common_pb2.TenantId(value=TENANT),
        document_id=common_pb2.DocumentId(value=document_id),
        accessed_by=f"token{number}",
        access_kind="content",
    )
    return RecordedEvent(
        stream=document_stream(TENANT, document_id),
        version=1,
        position=number,
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"event-{number}{salt}")),
        type=events_pb2.DocumentAccessed.DESCRIPTOR.full_name,
        data=accessed.SerializeToString(),
        recorded_at=datetime(2025, 3, 1, 12, 0, number % 60, tzinfo=UTC),
    )


@dataclass
class Log:
    """A tenant's Merkle log with its sealed checkpoints, as the sealer keeps them."""

    pki: DevelopmentPKI
    leaves: list[bytes] = field(default_factory=list)
    checkpoints: dict[int, events_pb2.CheckpointSealed] = field(default_factory=dict)
    tree: MerkleTree = field(default_factory=MerkleTree)
    origin: str = ORIGIN

    def append(self, leaf: bytes) -> int:
        self.leaves.append(leaf)
        return self.tree.append(leaf_hash(leaf))

    def seal(self) -> events_pb2.CheckpointSealed:
        size = self.tree.size
        text = format_checkpoint(self.origin, size, self.tree.root())
        seal, tsr = signed(self.pki, text)
        checkpoint = events_pb2.CheckpointSealed(
            tenant=common_pb2.TenantId(value=TENANT),
            tree_size=size,
            root_hash=self.tree.root(),
            checkpoint=text,
            seal=seal,
            timestamp_response=tsr,
        )
        self.checkpoints[size] = checkpoint
        return checkpoint

    @property
    def latest(self) -> events_pb2.CheckpointSealed:
        return self.checkpoints[max(self.checkpoints)]

    def bundle(self, index: int, document_id: str, size: int | None = None) -> bytes:
        checkpoint = self.checkpoints[size or max(self.checkpoints)]
        return server_evidence.build_bundle(
            leaf=self.leaves[index],
            leaf_index=index,
            proof=self.tree.inclusion_proof(index, checkpoint.tree_size),
            checkpoint=checkpoint,
            trust=trust_of(self.pki),
            document_id=document_id,
        )


def make_log(pki: DevelopmentPKI, content: bytes, document_id: str, *, salt: str = "") -> Log:
    """TREE_SIZE leaves, leaf DOCUMENT_INDEX the deposit of `content`, sealed at that size."""
    log = Log(pki)
    for number in range(TREE_SIZE):
        if number == DOCUMENT_INDEX:
            log.append(leaf_bytes(deposit_event(content, document_id)))
        else:
            log.append(leaf_bytes(access_event(number, salt)))
    log.seal()
    return log


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentPKI:
    return DevelopmentPKI.ensure(tmp_path_factory.mktemp("other-pki"), "Somebody Else")


@pytest.fixture(scope="module")
def content() -> bytes:
    return b"%PDF-1.7\n" + os.urandom(5000) + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def document_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def log(pki: DevelopmentPKI, content: bytes, document_id: str) -> Log:
    return make_log(pki, content, document_id)


@pytest.fixture(scope="module")
def good(log: Log, document_id: str) -> bytes:
    return log.bundle(DOCUMENT_INDEX, document_id)


# ---- zip surgery ----


def members(bundle_zip: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle_zip)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(files: dict[str, bytes], extra: list[tuple[str, bytes]] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in [*files.items(), *(extra or [])]:
            archive.writestr(name, data)
    return buffer.getvalue()


def with_member(bundle_zip: bytes, name: str, change: Callable[[bytes], bytes]) -> bytes:
    files = members(bundle_zip)
    files[name] = change(files[name])
    return rezip(files)


def without(bundle_zip: bytes, name: str) -> bytes:
    files = members(bundle_zip)
    del files[name]
    return rezip(files)


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0x01])


def replace_once(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        assert data.count(old) >= 1, (old, data[:200])
        return data.replace(old, new, 1)

    return change


def tamper_proof_hash(data: bytes) -> bytes:
    proof = json.loads(data)
    digest = proof["hashes"][1]
    proof["hashes"][1] = ("0" if digest[0] != "0" else "1") + digest[1:]
    return json.dumps(proof, indent=2).encode()


def failed_names(report: EvidenceReport) -> set[str]:
    return {check.name for check in report.checks if check.status == bundle.FAILED}


# ---- the good case ----


def test_the_writer_writes_exactly_the_members_the_reader_reads(good: bytes) -> None:
    # The reader ignores members it does not know: one the writer added without the reader
    # (say a second trust root) would ship unchecked, and this is where that shows.
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        written = archive.namelist()
    assert sorted(written) == sorted(layout.EXPECTED_FILES)
    read = read_bundle(good)
    assert read.zip_error is None and read.problems == []
    assert all(read.usable(name) for name in layout.EXPECTED_FILES)
    assert None not in (read.leaf, read.proof, read.checkpoint, read.tsa_chain, read.roots)


def test_good_bundle_and_file_verify_with_every_check_and_the_facts(
    good: bytes, content: bytes, document_id: str, log: Log
) -> None:
    report = verify_evidence(content, good)

    assert report.ok and report.first_failure is None, report.checks
    assert [c.name for c in report.checks] == [
        CHECK_BUNDLE,
        CHECK_DOCUMENT,
        CHECK_INCLUSION,
        CHECK_SEAL,
        CHECK_TIMESTAMP,
    ]
    assert all(c.status == bundle.OK for c in report.checks)
    assert report.document_id == document_id
    assert report.sha256 == hashlib.sha256(content).hexdigest()
    assert report.sha512 == hashlib.sha512(content).hexdigest()
    assert report.size == len(content)
    assert (report.leaf_index, report.tree_size) == (DOCUMENT_INDEX, TREE_SIZE)
    assert report.origin == ORIGIN
    assert report.root_hash == log.tree.root().hex()
    assert report.gen_time is not None and report.gen_time.tzinfo is not None
    assert report.tsa_subject is not None and "Time-Stamping Unit" in report.tsa_subject
    assert report.seal_subject is not None and "Electronic Seal" in report.seal_subject
    assert report.trust == (
        "trusting the root shipped in the bundle; pass --trust-root to pin your own"
    )
    dumped = json.loads(json.dumps(report.to_dict()))
    assert dumped["ok"] is True and dumped["leaf_index"] == DOCUMENT_INDEX
    assert [c["name"] for c in dumped["checks"]] == [c.name for c in report.checks]


def test_a_file_path_is_hashed_and_no_file_skips_only_the_document_check(
    good: bytes, content: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(content)
    assert verify_evidence(path, good).ok

    report = verify_evidence(None, good)
    assert report.ok
    assert report.check(CHECK_DOCUMENT).status == bundle.SKIPPED


def test_pinning_the_right_root_verifies_and_says_so(
    good: bytes, content: bytes, pki: DevelopmentPKI
) -> None:
    report = verify_evidence(
        content, good, trusted_root_pem=(pki.directory / DevelopmentPKI.ROOT).read_bytes()
    )
    assert report.ok, report.checks
    assert report.trust.startswith("trusting only your pinned root")
    assert "pinned root" in report.check(CHECK_SEAL).reason


# ---- tampering ----


@pytest.mark.parametrize(
    ("what", "first", "also_failed", "words"),
    [
        ("document byte", CHECK_DOCUMENT, set(), ["not the deposited document", "SHA-256"]),
        ("leaf.json file name", CHECK_INCLUSION, set(), ["leaf.json", "was altered"]),
        ("leaf.json digest", CHECK_DOCUMENT, {CHECK_INCLUSION}, ["data.sha256"]),
        ("proof hash", CHECK_INCLUSION, set(), ["inclusion-proof.json", "as sealed"]),
        ("checkpoint.txt origin", CHECK_SEAL, {CHECK_TIMESTAMP}, ["checkpoint.txt"]),
        ("checkpoint.txt root", CHECK_INCLUSION, {CHECK_SEAL, CHECK_TIMESTAMP}, ["root"]),
        ("checkpoint.p7s signature", CHECK_SEAL, set(), ["checkpoint.p7s"]),
        ("checkpoint.tsr signature", CHECK_TIMESTAMP, set(), ["checkpoint.tsr"]),
    ],
)
def test_each_tampering_fails_naming_what_broke(
    good: bytes,
    content: bytes,
    what: str,
    first: str,
    also_failed: set[str],
    words: list[str],
) -> None:
    file, bundle_zip = content, good
    sha256 = hashlib.sha256(content).hexdigest()
    if what == "document byte":
        file = content[:100] + bytes([content[100] ^ 0xFF]) + content[101:]
    elif what == "leaf.json file name":
        bundle_zip = with_member(good, "leaf.json", replace_once(b"invoice.pdf", b"invoiceXpdf"))
    elif what == "leaf.json digest":
        forged = sha256[:10] + ("0" if sha256[10] != "0" else "1") + sha256[11:]
        bundle_zip = with_member(good, "leaf.json", replace_once(sha256.encode(), forged.encode()))
    elif what == "proof hash":
        bundle_zip = with_member(good, "inclusion-proof.json", tamper_proof_hash)
    elif what == "checkpoint.txt origin":
        bundle_zip = with_member(good, "checkpoint.txt", replace_once(b"acme", b"acne"))
    elif what == "checkpoint.txt root":

        def other_root(text: bytes) -> bytes:
            lines = text.split(b"\n")
            lines[2] = b"A" + lines[2][1:] if lines[2][:1] != b"A" else b"B" + lines[2][1:]
            return b"\n".join(lines)

        bundle_zip = with_member(good, "checkpoint.txt", other_root)
    elif what == "checkpoint.p7s signature":
        bundle_zip = with_member(good, "checkpoint.p7s", flip_last_byte)
    elif what == "checkpoint.tsr signature":
        bundle_zip = with_member(good, "checkpoint.tsr", flip_last_byte)

    report = verify_evidence(file, bundle_zip)

    assert not report.ok
    assert report.first_failure is not None
    assert report.first_failure.name == first, report.checks
    assert failed_names(report) == {first, *also_failed}, report.checks
    for word in words:
        assert word in report.first_failure.reason, report.first_failure.reason


def test_a_seal_over_other_bytes_is_named_as_such(good: bytes, content: bytes) -> None:
    # Same structure, different checkpoint text: the seal's message digest no longer fits.
    bundle_zip = with_member(good, "checkpoint.txt", replace_once(b"acme", b"acne"))
    reason = verify_evidence(content, bundle_zip).check(CHECK_SEAL).reason
    assert "not the text that was sealed" in reason
    stamp = verify_evidence(content, bundle_zip).check(CHECK_TIMESTAMP).reason
    assert "time-stamps other data than checkpoint.txt" in stamp


def test_another_pinned_root_fails_the_seal_and_another_pinned_tsa_root_the_time_stamp(
    good: bytes, content: bytes, other_pki: DevelopmentPKI
) -> None:
    other_root = (other_pki.directory / DevelopmentPKI.ROOT).read_bytes()
    report = verify_evidence(content, good, trusted_root_pem=other_root)
    assert not report.ok
    assert report.first_failure is not None and report.first_failure.name == CHECK_SEAL
    assert "does not chain to your pinned root" in report.first_failure.reason
    # The time stamp answers to the TSA's root, not the seal's: a pinned seal root leaves it.
    assert report.check(CHECK_TIMESTAMP).status == bundle.OK
    assert "different certificate" in report.trust

    report = verify_evidence(content, good, trusted_tsa_root_pem=other_root)
    assert report.check(CHECK_SEAL).status == bundle.OK
    stamp = report.check(CHECK_TIMESTAMP)
    assert stamp.status == bundle.FAILED
    assert "does not chain to your pinned TSA root" in stamp.reason
    assert "different certificate" in report.tsa_trust


def test_a_bundle_resigned_under_another_root_passes_alone_but_not_with_the_pinned_root(
    content: bytes, document_id: str, pki: DevelopmentPKI, other_pki: DevelopmentPKI
) -> None:
    # A forger with their own PKI can make a self-consistent bundle; only pinning catches it.
    forged = make_log(other_pki, content, document_id).bundle(DOCUMENT_INDEX, document_id)
    assert verify_evidence(content, forged).ok

    pinned = (pki.directory / DevelopmentPKI.ROOT).read_bytes()
    report = verify_evidence(content, forged, trusted_root_pem=pinned)
    assert failed_names(report) == {CHECK_SEAL}
    report = verify_evidence(content, forged, trusted_root_pem=pinned, trusted_tsa_root_pem=pinned)
    assert failed_names(report) == {CHECK_SEAL, CHECK_TIMESTAMP}


@pytest.mark.parametrize("missing", layout.EXPECTED_FILES)
def test_a_missing_file_fails_the_bundle_check_by_name(
    good: bytes, content: bytes, missing: str
) -> None:
    report = verify_evidence(content, without(good, missing))

    assert not report.ok
    assert report.first_failure is not None and report.first_failure.name == CHECK_BUNDLE
    assert f"{missing} is missing" in report.first_failure.reason
    # What does not need the missing file is still checked; what does is "not run".
    if missing == "checkpoint.tsr":
        assert report.check(CHECK_SEAL).status == bundle.OK
        assert report.check(CHECK_TIMESTAMP).status == bundle.NOT_RUN
    if missing == "inclusion-proof.json":
        assert report.check(CHECK_INCLUSION).status == bundle.NOT_RUN
        assert "inclusion-proof.json" in report.check(CHECK_INCLUSION).reason


def test_not_a_zip_fails_clearly(content: bytes) -> None:
    report = verify_evidence(content, b"PK\x03\x04 certainly not a zip")
    assert report.first_failure is not None and report.first_failure.name == CHECK_BUNDLE
    assert "not a ZIP file" in report.first_failure.reason
    assert {c.status for c in report.checks[1:]} == {bundle.NOT_RUN}


def test_ambiguous_or_malformed_members_fail_the_bundle_check(good: bytes, content: bytes) -> None:
    files = members(good)
    with pytest.warns(UserWarning, match="Duplicate name"):
        duplicated = rezip(files, extra=[("leaf.json", files["leaf.json"])])
    report = verify_evidence(content, duplicated)
    assert report.first_failure is not None and "leaf.json appears twice" in (
        report.first_failure.reason
    )

    pretty = json.dumps(json.loads(files["leaf.json"]), indent=1).encode()
    report = verify_evidence(content, with_member(good, "leaf.json", lambda _: pretty))
    assert report.first_failure is not None and report.first_failure.name == CHECK_BUNDLE
    assert "canonical" in report.first_failure.reason

    report = verify_evidence(content, with_member(good, "certs/root.pem", lambda _: b"nope"))
    assert report.first_failure is not None and "certs/root.pem" in report.first_failure.reason
    assert report.check(CHECK_SEAL).status == bundle.NOT_RUN


def test_the_bundle_must_be_about_the_document_asked_for(good: bytes, document_id: str) -> None:
    assert verify_evidence(None, good, document_id=document_id).ok
    report = verify_evidence(None, good, document_id=str(uuid.uuid4()))
    assert report.first_failure is not None and report.first_failure.name == CHECK_INCLUSION
    assert "not of" in report.first_failure.reason


def test_a_leaf_that_is_not_a_deposit_fails(log: Log) -> None:
    not_a_deposit = log.bundle(0, "whatever")
    report = verify_evidence(b"anything", not_a_deposit)
    assert failed_names(report) == {CHECK_DOCUMENT, CHECK_INCLUSION}
    assert "not a deposit" in report.check(CHECK_INCLUSION).reason


def test_a_pinned_root_that_is_not_pem_is_the_callers_error(good: bytes) -> None:
    with pytest.raises(ValueError, match="not a PEM certificate"):
        verify_evidence(None, good, trusted_root_pem=b"garbage")


# ---- checkpoints and consistency ----


def grown(pki: DevelopmentPKI, content: bytes, document_id: str, extra: int) -> Log:
    log = make_log(pki, content, document_id)
    for number in range(extra):
        log.append(leaf_bytes(access_event(100 + number)))
    log.seal()
    return log


def test_consistency_between_checkpoints_of_a_growing_log(
    pki: DevelopmentPKI, content: bytes, document_id: str
) -> None:
    log = grown(pki, content, document_id, 5)
    old, new = log.checkpoints[TREE_SIZE], log.checkpoints[TREE_SIZE + 5]
    proof = log.tree.consistency_proof(TREE_SIZE, TREE_SIZE + 5)

    check = verify_consistency_between(old.checkpoint, new.checkpoint, proof)
    assert check.ok and check.name == CHECK_CONSISTENCY, check
    assert verify_consistency_between(old.checkpoint, old.checkpoint, []).ok

    shrunk = verify_consistency_between(new.checkpoint, old.checkpoint, [])
    assert not shrunk.ok and "shrank" in shrunk.reason

    # A log rewritten under the old size (a fork) cannot prove it extends the old checkpoint.
    fork = make_log(pki, content, document_id, salt="fork")
    for number in range(5):
        fork.append(leaf_bytes(access_event(100 + number)))
    fork.seal()
    forked = verify_consistency_between(
        old.checkpoint, fork.latest.checkpoint, fork.tree.consistency_proof(TREE_SIZE)
    )
    assert not forked.ok and "rewritten" in forked.reason

    other = format_checkpoint("archive.test/other", TREE_SIZE + 5, log.tree.root())
    assert "different logs" in verify_consistency_between(old.checkpoint, other, proof).reason
    assert not verify_consistency_between(old.checkpoint, new.checkpoint, proof[:-1]).ok


def test_signed_checkpoint_verification(log: Log, pki: DevelopmentPKI) -> None:
    trust = trust_of(pki)
    cp = log.latest
    report = verify_signed_checkpoint(
        cp.checkpoint,
        cp.seal,
        cp.timestamp_response,
        tsa_chain_pem=trust.tsa_chain_pem.encode(),
        root_pem=trust.root_pem.encode(),
        tsa_root_pem=trust.tsa_root_pem.encode(),
    )
    assert report.ok and report.tree_size == TREE_SIZE and report.gen_time is not None
    assert "pass --trust-root" in report.trust
    assert "pass --trust-tsa-root" in report.tsa_trust

    unsigned = verify_signed_checkpoint(cp.checkpoint, None, None, root_pem=trust.root_pem.encode())
    assert unsigned.first_failure is not None and unsigned.first_failure.name == CHECK_SEAL
    assert unsigned.check(CHECK_TIMESTAMP).status == bundle.SKIPPED

    forged = verify_signed_checkpoint(
        cp.checkpoint.replace(b"acme", b"acne"),
        cp.seal,
        cp.timestamp_response,
        root_pem=trust.root_pem.encode(),
        names={"checkpoint": "kept/checkpoint.txt"},
    )
    assert forged.first_failure is not None and "kept/checkpoint.txt" in (
        forged.first_failure.reason
    )


# ---- VERIFY.md, followed by hand ----


def extract(bundle_zip: bytes, folder: Path) -> Path:
    folder.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(bundle_zip)) as archive:
        archive.extractall(folder)
    return folder


def python_snippet(folder: Path) -> str:
    text = (folder / "VERIFY.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1
    return blocks[0]


def shell_commands(folder: Path, program: str) -> list[list[str]]:
    """The indented `program ...` commands of VERIFY.md, continuation lines joined, comments
    dropped, as argument lists."""
    text = (folder / "VERIFY.md").read_text().replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        stripped = line.strip()
        if line.startswith("    ") and stripped.startswith(program + " "):
            commands.append(stripped.split("#")[0].split())
    return commands


@pytest.mark.integration  # runs a subprocess
def test_the_python_snippet_of_verify_md_checks_inclusion(good: bytes, tmp_path: Path) -> None:
    folder = extract(good, tmp_path / "good")
    done = subprocess.run(
        [sys.executable, "-c", python_snippet(folder)],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0 and "inclusion verified" in done.stdout, done.stderr

    tampered = extract(
        with_member(good, "inclusion-proof.json", tamper_proof_hash), tmp_path / "tampered"
    )
    done = subprocess.run(
        [sys.executable, "-c", python_snippet(tampered)],
        cwd=tampered,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0 and "inclusion verified" not in done.stdout
    assert "AssertionError" in done.stderr


@pytest.mark.integration  # runs a subprocess
@NEEDS_OPENSSL
def test_the_openssl_commands_of_verify_md_pass_on_a_good_bundle(
    good: bytes, content: bytes, tmp_path: Path
) -> None:
    folder = extract(good, tmp_path / "bundle")
    commands = shell_commands(folder, "openssl")
    verbs = [command[1:3] for command in commands]
    assert ["cms", "-verify"] in verbs and ["ts", "-verify"] in verbs, commands
    for command in commands:
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, (command, done.stderr)
        if command[1:3] == ["ts", "-verify"]:
            assert "Verification: OK" in done.stdout

    # And they do catch a tampered checkpoint.
    text = folder / "checkpoint.txt"
    text.write_bytes(text.read_bytes().replace(b"acme", b"acne"))
    for command in commands:
        if command[2] == "-verify":
            done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=30)
            assert done.returncode != 0 or "Verification: OK" not in done.stdout, command

    # Step 1: sha256sum / sha512sum of the file equal data.sha256 / data.sha512.
    (folder / "YOUR-FILE").write_bytes(content)
    leaf = json.loads((folder / "leaf.json").read_bytes())
    for command in shell_commands(folder, "sha256sum") + shell_commands(folder, "sha512sum"):
        if shutil.which(command[0]) is None:
            continue
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=30)
        key = "sha256" if command[0] == "sha256sum" else "sha512"
        assert done.stdout.split()[0] == leaf["data"][key]


# ---- archivectl verify (offline) ----


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # verify must need neither an endpoint nor a token.
    for name in list(os.environ):
        if name.startswith("ARCHIVE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def files(good: bytes, content: bytes, tmp_path: Path) -> tuple[Path, Path]:
    document, evidence_zip = tmp_path / "invoice.pdf", tmp_path / "evidence.zip"
    document.write_bytes(content)
    evidence_zip.write_bytes(good)
    return document, evidence_zip


def test_cli_verify_good_bundle_exits_0(
    offline: None, files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    document, evidence_zip = files
    code, out, err = run(capsys, "verify", str(document), "--evidence", str(evidence_zip))

    assert (code, err) == (0, ""), err
    assert "verified:" in out
    for name in (CHECK_BUNDLE, CHECK_DOCUMENT, CHECK_INCLUSION, CHECK_SEAL, CHECK_TIMESTAMP):
        assert re.search(rf"^ok\s+{name}\s", out, flags=re.MULTILINE), out
    assert "pass --trust-root to pin your own" in out

    code, out, err = run(capsys, "verify", str(document), "--evidence", str(evidence_zip), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["leaf_index"] == DOCUMENT_INDEX


def test_cli_verify_tampered_exits_1_naming_what_broke(
    offline: None,
    files: tuple[Path, Path],
    good: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    document, evidence_zip = files
    evidence_zip.write_bytes(with_member(good, "inclusion-proof.json", tamper_proof_hash))
    code, out, err = run(capsys, "verify", str(document), "--evidence", str(evidence_zip))

    assert code == 1
    assert "verification FAILED: inclusion:" in err and "inclusion-proof.json" in err
    assert re.search(r"^FAILED\s+inclusion\s", out, flags=re.MULTILINE), out

    evidence_zip.write_bytes(good)
    document.write_bytes(document.read_bytes() + b"!")
    code, out, err = run(capsys, "verify", str(document), "--evidence", str(evidence_zip), "--json")
    assert code == 1
    assert json.loads(out)["first_failure"]["name"] == CHECK_DOCUMENT
    assert "verification FAILED: document:" in err


def test_cli_verify_with_another_trust_root_exits_1(
    offline: None,
    files: tuple[Path, Path],
    other_pki: DevelopmentPKI,
    pki: DevelopmentPKI,
    capsys: pytest.CaptureFixture[str],
) -> None:
    document, evidence_zip = files
    other_root = other_pki.directory / DevelopmentPKI.ROOT
    code, _, err = run(
        capsys,
        "verify",
        str(document),
        "--evidence",
        str(evidence_zip),
        "--trust-root",
        str(other_root),
    )
    assert code == 1 and "seal:" in err and "pinned root" in err

    right_root = pki.directory / DevelopmentPKI.ROOT
    code, out, _ = run(
        capsys,
        "verify",
        str(document),
        "--evidence",
        str(evidence_zip),
        "--trust-root",
        str(right_root),
    )
    assert code == 0 and "trusting only your pinned root" in out


def test_cli_verify_usage_errors_exit_2(
    offline: None, files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document, evidence_zip = files
    missing = str(tmp_path / "missing")
    assert run(capsys, "verify", missing, "--evidence", str(evidence_zip))[0] == 2
    code, _, err = run(capsys, "verify", str(document), "--evidence", missing)
    assert code == 2 and "no such file" in err
    not_pem = tmp_path / "root.pem"
    not_pem.write_text("hello")
    code, _, err = run(
        capsys,
        "verify",
        str(document),
        "--evidence",
        str(evidence_zip),
        "--trust-root",
        str(not_pem),
    )
    assert code == 2 and "not a PEM certificate" in err
    assert run(capsys, "verify", str(document))[0] == 2  # --evidence is required


def test_cli_verify_of_a_bundle_missing_a_file(
    offline: None, files: tuple[Path, Path], good: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    document, evidence_zip = files
    evidence_zip.write_bytes(without(good, "checkpoint.p7s"))
    code, _, err = run(capsys, "verify", str(document), "--evidence", str(evidence_zip))
    assert code == 1 and "bundle:" in err and "checkpoint.p7s is missing" in err
