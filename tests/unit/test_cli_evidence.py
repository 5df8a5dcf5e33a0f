"""The SDK's sealing calls and archivectl's evidence, checkpoint, verify-extends and audit
commands, against a Sealing servicer served from a thread.

The bundles are real ones, built as in test_evidence_verify.py (whose helpers this file uses).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from test_evidence_verify import (
    DOCUMENT_INDEX,
    ORIGIN,
    TENANT,
    TREE_SIZE,
    Log,
    access_event,
    flip_last_byte,
    make_log,
    run,
    trust_of,
    with_member,
)

from archive import verify as bundle
from archive.client import ArchiveClient, ClientConfig
from archive.client.errors import NotReady
from archive.sealing.keys import DevelopmentPKI
from archive.sealing.leaves import leaf_bytes
from archive.v1 import common_pb2, events_pb2, sealing_pb2, sealing_pb2_grpc
from archive.verify import verify_consistency_between, verify_evidence


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentPKI:
    return DevelopmentPKI.ensure(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def content() -> bytes:
    return b"%PDF-1.7\n" + os.urandom(5000) + b"\n%%EOF\n"


@pytest.fixture(scope="module")
def document_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def good(pki: DevelopmentPKI, content: bytes, document_id: str) -> bytes:
    return make_log(pki, content, document_id).bundle(DOCUMENT_INDEX, document_id)


# ---- the archive side: a Sealing servicer over gRPC ----


def _abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    reason: str,
    message: str,
    retry_delay: float | None = None,
) -> NoReturn:
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason=reason, domain="archive.v1"))
    if retry_delay is not None:
        delay = Duration()
        delay.FromNanoseconds(int(retry_delay * 1e9))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("abort returned")


class FakeSealing(sealing_pb2_grpc.SealingServicer):
    """The Sealing contract over a test Log: evidence of one document, checkpoints of any size
    sealed so far, consistency proofs between them, and a canned audit report."""

    def __init__(self, log: Log, document_id: str) -> None:
        self.log = log
        self.document_id = document_id
        self.not_ready = 0
        self.evidence_calls = 0
        self.bundle_override: bytes | None = None
        self.audit = events_pb2.IntegrityAuditCompleted(
            tenant=common_pb2.TenantId(value=TENANT),
            audit_id="audit-1",
            trigger="on-demand",
            documents_checked=1,
            bytes_rehashed=5000,
            events_checked=TREE_SIZE,
            tree_size=TREE_SIZE,
            root_hash=log.tree.root(),
        )

    def _authenticated(self, context: grpc.ServicerContext) -> None:
        headers = dict(context.invocation_metadata())
        if headers.get("authorization") != "Bearer arc_test_token":
            _abort(context, grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", "no token")

    def GetEvidence(
        self, request: sealing_pb2.GetEvidenceRequest, context: grpc.ServicerContext
    ) -> sealing_pb2.EvidenceBundle:
        self._authenticated(context)
        self.evidence_calls += 1
        try:  # the archive takes any spelling of the UUID, as parse_document_id does
            asked = str(uuid.UUID(request.document_id.value))
        except ValueError:
            asked = ""
        if asked != self.document_id:
            _abort(context, grpc.StatusCode.NOT_FOUND, "DOCUMENT_NOT_FOUND", "no such document")
        if self.not_ready > 0:
            self.not_ready -= 1
            _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                "NOT_READY_YET",
                "not yet covered by a checkpoint; retry shortly",
                retry_delay=0.01,
            )
        zipped = self.bundle_override or self.log.bundle(DOCUMENT_INDEX, self.document_id)
        return sealing_pb2.EvidenceBundle(
            zip=zipped, leaf_index=DOCUMENT_INDEX, tree_size=self.log.latest.tree_size
        )

    def _signed(self, checkpoint: events_pb2.CheckpointSealed) -> sealing_pb2.SignedCheckpoint:
        trust = trust_of(self.log.pki)
        return sealing_pb2.SignedCheckpoint(
            checkpoint=checkpoint.checkpoint,
            seal=checkpoint.seal,
            timestamp_response=checkpoint.timestamp_response,
            seal_chain_pem=trust.seal_chain_pem,
            tsa_chain_pem=trust.tsa_chain_pem,
            root_pem=trust.root_pem,
        )

    def _checkpoint(self, size: int, context: grpc.ServicerContext) -> events_pb2.CheckpointSealed:
        if size == 0:
            return self.log.latest
        if size not in self.log.checkpoints:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", f"no size {size}")
        return self.log.checkpoints[size]

    def GetCheckpoint(
        self, request: sealing_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> sealing_pb2.SignedCheckpoint:
        self._authenticated(context)
        return self._signed(self._checkpoint(request.tree_size, context))

    def GetConsistencyProof(
        self, request: sealing_pb2.GetConsistencyProofRequest, context: grpc.ServicerContext
    ) -> sealing_pb2.ConsistencyProof:
        self._authenticated(context)
        older = self._checkpoint(request.from_size, context)
        newer = self._checkpoint(request.to_size, context)
        return sealing_pb2.ConsistencyProof(
            from_size=older.tree_size,
            to_size=newer.tree_size,
            hashes=self.log.tree.consistency_proof(older.tree_size, newer.tree_size),
            from_checkpoint=self._signed(older),
            to_checkpoint=self._signed(newer),
        )

    def RunIntegrityAudit(
        self, request: sealing_pb2.RunIntegrityAuditRequest, context: grpc.ServicerContext
    ) -> events_pb2.IntegrityAuditCompleted:
        self._authenticated(context)
        return self.audit


@pytest.fixture
def sealing(
    pki: DevelopmentPKI, content: bytes, document_id: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeSealing]:
    servicer = FakeSealing(make_log(pki, content, document_id), document_id)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    sealing_pb2_grpc.add_SealingServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    for name in list(os.environ):
        if name.startswith("ARCHIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ARCHIVE_ENDPOINT", f"127.0.0.1:{port}")
    monkeypatch.setenv("ARCHIVE_TOKEN", "arc_test_token")
    try:
        yield servicer
    finally:
        server.stop(0)


def client_config() -> ClientConfig:
    return ClientConfig.from_env(initial_backoff=0.01, max_backoff=0.05)


async def test_sdk_get_evidence_waits_while_not_ready(
    sealing: FakeSealing, good: bytes, content: bytes
) -> None:
    sealing.not_ready = 2
    async with ArchiveClient(client_config()) as client:
        zipped = await client.get_evidence(sealing.document_id)
    assert sealing.evidence_calls == 3
    assert verify_evidence(content, zipped, document_id=sealing.document_id).ok

    sealing.not_ready = 5
    async with ArchiveClient(client_config()) as client:
        with pytest.raises(NotReady) as raised:
            await client.get_evidence(sealing.document_id, not_ready_attempts=2)
    assert raised.value.reason == "NOT_READY_YET" and raised.value.retry_delay == 0.01


async def test_sdk_checkpoints_proofs_and_audit(
    sealing: FakeSealing, content: bytes, document_id: str
) -> None:
    for number in range(3):
        sealing.log.append(leaf_bytes(access_event(200 + number)))
    sealing.log.seal()
    async with ArchiveClient(client_config()) as client:
        latest = await client.get_checkpoint()
        old = await client.get_checkpoint(TREE_SIZE)
        proof = await client.get_consistency_proof(TREE_SIZE, latest.tree_size)
        audit = await client.run_integrity_audit()
    assert (latest.tree_size, old.tree_size) == (TREE_SIZE + 3, TREE_SIZE)
    assert (proof.from_size, proof.to_size) == (TREE_SIZE, TREE_SIZE + 3)
    assert verify_consistency_between(old.checkpoint, latest.checkpoint, proof.hashes).ok
    assert audit.ok and audit.audit_id == "audit-1" and audit.tree_size == TREE_SIZE


def test_cli_evidence_saves_a_checked_bundle_that_verify_accepts(
    sealing: FakeSealing, content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sealing.not_ready = 1
    target = tmp_path / "evidence.zip"
    code, out, err = run(capsys, "evidence", sealing.document_id.upper(), "-o", str(target))
    assert code == 0, err
    assert sealing.document_id in out and f"leaf {DOCUMENT_INDEX} of {TREE_SIZE}" in out
    assert "archivectl verify FILE --evidence" in err

    document = tmp_path / "invoice.pdf"
    document.write_bytes(content)
    assert run(capsys, "verify", str(document), "--evidence", str(target))[0] == 0


def test_cli_evidence_warns_and_exits_6_on_a_bundle_that_does_not_verify(
    sealing: FakeSealing, good: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = with_member(
        sealing.log.bundle(DOCUMENT_INDEX, sealing.document_id), "checkpoint.p7s", flip_last_byte
    )
    sealing.bundle_override = bad
    target = tmp_path / "evidence.zip"
    code, out, err = run(capsys, "evidence", sealing.document_id, "-o", str(target), "--json")
    assert code == 6
    assert "warning" in err and "seal:" in err
    assert json.loads(out)["verified"] is False
    assert target.read_bytes() == bad  # kept, for a report


def test_cli_evidence_of_an_unknown_document_exits_4(
    sealing: FakeSealing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "evidence", str(uuid.uuid4()), "-o", str(tmp_path / "e.zip"))
    assert code == 4 and "no such document" in err
    assert not (tmp_path / "e.zip").exists()


def test_cli_checkpoint_then_verify_extends(
    sealing: FakeSealing, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kept = tmp_path / "kept"
    code, out, err = run(capsys, "checkpoint", "-o", str(kept))
    assert code == 0, err
    for name in bundle.EXPECTED_FILES[2:8]:
        assert (kept / name).is_file(), name
    assert (kept / "checkpoint.txt").read_bytes() == sealing.log.latest.checkpoint
    assert f"tree_size:   {TREE_SIZE}" in out

    code, out, _ = run(capsys, "checkpoint", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["ok"] and shown["checkpoint"].startswith(ORIGIN)

    # The log grows: the latest checkpoint extends the one kept.
    for number in range(4):
        sealing.log.append(leaf_bytes(access_event(300 + number)))
    sealing.log.seal()
    newer = tmp_path / "newer"
    code, out, err = run(capsys, "verify-extends", str(kept), "-o", str(newer))
    assert code == 0, out + err
    assert re.search(r"^ok\s+consistency\s", out, flags=re.MULTILINE), out
    assert f"extends the kept checkpoint of {TREE_SIZE} leaves" in out
    assert (newer / "checkpoint.txt").read_bytes() == sealing.log.latest.checkpoint

    code, out, _ = run(capsys, "verify-extends", str(kept), "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["consistency"]["ok"]
    assert result["new"]["tree_size"] == TREE_SIZE + 4


def test_cli_verify_extends_catches_a_rewritten_log_and_a_forged_kept_checkpoint(
    sealing: FakeSealing,
    pki: DevelopmentPKI,
    content: bytes,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    kept = tmp_path / "kept"
    assert run(capsys, "checkpoint", "-o", str(kept))[0] == 0

    # The archive now serves a different history of the same origin, properly signed.
    fork = make_log(pki, content, sealing.document_id, salt="fork")
    for number in range(4):
        fork.append(leaf_bytes(access_event(300 + number)))
    fork.seal()
    sealing.log = fork
    code, out, err = run(capsys, "verify-extends", str(kept))
    assert code == 1
    assert "journal: consistency:" in err and "rewritten" in err
    assert re.search(r"^FAILED\s+consistency\s", out, flags=re.MULTILINE), out

    # A kept checkpoint altered on disk fails its own seal.
    text = kept / "checkpoint.txt"
    text.write_bytes(text.read_bytes().replace(b"acme", b"acne"))
    code, _, err = run(capsys, "verify-extends", str(kept))
    assert code == 1 and "kept checkpoint: seal:" in err and str(text) in err

    assert run(capsys, "verify-extends", str(tmp_path / "nowhere"))[0] == 2


def test_cli_audit_exit_codes(sealing: FakeSealing, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "audit")
    assert (code, err) == (0, "")
    assert "no failure" in out and "audit-1" in out

    sealing.audit.failures.add(
        kind="content",
        document_id=sealing.document_id,
        leaf_index=DOCUMENT_INDEX,
        description="stored copy fails its SHA-256",
    )
    code, out, err = run(capsys, "audit")
    assert code == 1 and "1 failure" in err
    assert f"FAILED  content document {sealing.document_id}" in out

    code, out, _ = run(capsys, "audit", "--json")
    report: dict[str, Any] = json.loads(out)
    assert code == 1 and report["ok"] is False and report["failures"][0]["kind"] == "content"
