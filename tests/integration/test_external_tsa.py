"""Sealing in production against a time-stamp authority that is not ours: OpenSSL's, with a
root of its own (tests/openssl_tsa.py), behind an HTTP endpoint. The sealing service runs as
its own process (`archive serve sealing`, ARCHIVE_PROFILE=production) on a real nats-server,
configured only by environment variables and files as a Kubernetes Secret mounts them; ingest
runs beside it. The evidence of a deposit then verifies with the two openssl commands of its
VERIFY.md and with our verifier, the time stamp against the TSA's root, not the seal's.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from conftest import unique_names
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from grpc_health.v1 import health_pb2
from openssl_tsa import POLICY, OpensslTsa, running_openssl_tsa
from pki import openssl
from tsa_http import without_proxies
from waiting import eventually

from archive.blobstore import PackBlobStore
from archive.config import Secret, Settings
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import NatsServer, free_port
from archive.sealing.keys import DevelopmentPKI
from archive.tenancy.registry import TenantRegistry
from archive.v1 import (
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    sealing_pb2,
    sealing_pb2_grpc,
    tenancy_pb2,
    tenancy_pb2_grpc,
)
from archive.verify import CHECK_TIMESTAMP, verify_evidence, verify_signed_checkpoint
from services.ingest.main import build as build_ingest
from services.sealing.log import load_tenant_log
from tools.archivectl import main as archivectl

pytestmark = pytest.mark.integration

OPERATOR = "operator-token-for-external-tsa-tests-01"
SEAL_SECRET = {  # file in the Secret: file of the development PKI standing in for real keys
    "seal-key.pem": DevelopmentPKI.SEAL_KEY,
    "seal.pem": DevelopmentPKI.SEAL_CERT,
    "seal-root.pem": DevelopmentPKI.ROOT,
}


def pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(Encoding.PEM).decode()


def child_environment(**settings: str) -> dict[str, str]:
    """The test's environment without its ARCHIVE_* and proxy settings, plus `settings`."""
    keep = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ARCHIVE_") and not k.lower().endswith("_proxy")
    }
    return {**keep, "NO_PROXY": "127.0.0.1,localhost", **settings}


def serve_sealing() -> list[str]:
    return [sys.executable, "-m", "tools.launcher", "serve", "sealing"]


@pytest.fixture
def secret(pki: DevelopmentPKI, tmp_path: Path) -> Path:
    """The seal key and certificates as a Secret mounts them: read-only files in a directory."""
    directory = tmp_path / "secret"
    directory.mkdir()
    for name, source in SEAL_SECRET.items():
        shutil.copy(pki.directory / source, directory / name)
    (directory / "seal-chain.pem").write_text("")  # issued by the root: no intermediates
    for path in directory.iterdir():
        path.chmod(0o400)
    return directory


@dataclass
class Archive:
    store: JetStreamEventStore
    tsa: OpensslTsa
    ingest: ingest_pb2_grpc.IngestStub
    sealing: sealing_pb2_grpc.SealingStub
    auth: tuple[tuple[str, str], ...]
    log: Path  # the sealing process's output

    async def deposit(self, content: bytes) -> ingest_pb2.DepositReceipt:
        def requests() -> Iterator[ingest_pb2.UploadRequest]:
            yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(file_name="d.pdf"))
            yield ingest_pb2.UploadRequest(chunk=content)
            yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=len(content)))

        receipt: ingest_pb2.DepositReceipt = await self.ingest.Upload(
            requests(), metadata=self.auth
        )
        return receipt

    async def evidence(self, document_id: common_pb2.DocumentId) -> bytes:
        """The bundle, once a checkpoint covers the deposit (NOT_READY_YET until then)."""
        bundles: list[bytes] = []

        async def served() -> bool:
            try:
                bundle = await self.sealing.GetEvidence(
                    sealing_pb2.GetEvidenceRequest(document_id=document_id), metadata=self.auth
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                return False
            bundles.append(bundle.zip)
            return True

        await eventually(served, 60, f"evidence (sealing's log: {self.log})")
        return bundles[0]


async def serving(channel: grpc.aio.Channel) -> bool:
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    try:
        response = await check(health_pb2.HealthCheckRequest(service=""), timeout=1)
    except grpc.aio.AioRpcError:
        return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
async def archive(
    nats_server: NatsServer, secret: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Archive]:
    without_proxies(monkeypatch)
    names = unique_names()
    store = await JetStreamEventStore.connect(nats_server.url, **names)
    blob_root = tmp_path / "blobs"
    ingest_settings = Settings(
        data_dir=tmp_path / "ingest",
        grpc_port=0,
        operator_token=Secret(OPERATOR),
        shutdown_grace_seconds=0.5,
    )
    ingest = build_ingest(ingest_settings, store, PackBlobStore(blob_root), TenantRegistry(store))
    await ingest.start()
    port = free_port()
    with running_openssl_tsa(tmp_path / "tsa") as tsa:
        environment = child_environment(
            ARCHIVE_PROFILE="production",
            ARCHIVE_NATS_URL=nats_server.url,
            ARCHIVE_NATS_STREAM=names["stream_name"],
            ARCHIVE_NATS_SUBJECT_PREFIX=names["subject_prefix"],
            ARCHIVE_GRPC_HOST="127.0.0.1",
            ARCHIVE_GRPC_PORT=str(port),
            ARCHIVE_DATA_DIR=str(tmp_path / "sealing"),
            ARCHIVE_BLOB_DIR=str(blob_root),
            ARCHIVE_PROVIDER_ORIGIN="archive.test",
            ARCHIVE_CHECKPOINT_INTERVAL_MS="100",
            ARCHIVE_SEAL_KEY_FILE=str(secret / "seal-key.pem"),
            ARCHIVE_SEAL_CERT_FILE=str(secret / "seal.pem"),
            ARCHIVE_SEAL_CHAIN_FILE=str(secret / "seal-chain.pem"),
            ARCHIVE_SEAL_ROOT_FILE=str(secret / "seal-root.pem"),
            ARCHIVE_TSA_URL=tsa.url,
            ARCHIVE_TSA_ROOT_FILE=str(tsa.root_file),
            ARCHIVE_TSA_CHAIN_FILE=str(tsa.chain_file),
        )
        log = tmp_path / "sealing.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                *serve_sealing(), env=environment, cwd=tmp_path, stdout=output, stderr=output
            )
        ingest_channel = grpc.aio.insecure_channel(f"127.0.0.1:{ingest.port}")
        sealing_channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        try:
            await eventually(
                lambda: process.returncode is not None or serving(sealing_channel),
                60,
                "the sealing service to serve",
            )
            assert process.returncode is None, f"sealing stopped:\n{log.read_text()}"
            created = await tenancy_pb2_grpc.TenantAdminStub(ingest_channel).CreateTenant(
                tenancy_pb2.CreateTenantRequest(tenant=common_pb2.TenantId(value="acme")),
                metadata=(("authorization", f"Bearer {OPERATOR}"),),
            )
            yield Archive(
                store,
                tsa,
                ingest_pb2_grpc.IngestStub(ingest_channel),
                sealing_pb2_grpc.SealingStub(sealing_channel),
                (("authorization", f"Bearer {created.token.token}"),),
                log,
            )
        finally:
            if process.returncode is None:
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
            await ingest_channel.close()
            await sealing_channel.close()
            await ingest.stop(0)
            await store.close()


def verify_md_commands(folder: Path) -> list[list[str]]:
    """The indented `openssl ...` commands of VERIFY.md, continuation lines joined, comments
    dropped, as argument lists: exactly what its reader types."""
    text = (folder / "VERIFY.md").read_text().replace("\\\n", " ")
    return [
        line.strip().split("#")[0].split()
        for line in text.splitlines()
        if line.startswith("    ") and line.strip().startswith("openssl ")
    ]


async def test_evidence_sealed_against_an_independent_tsa_verifies_with_openssl_and_ours(
    archive: Archive, pki: DevelopmentPKI, tmp_path: Path
) -> None:
    content = b"%PDF-1.7\n" + uuid.uuid4().bytes * 500
    receipt = await archive.deposit(content)
    bundle = await archive.evidence(receipt.document_id)
    assert archive.tsa.received, "the time stamp came from the external TSA"
    folder = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(bundle)).extractall(folder)

    # The TSA's chain (its certificate, then the issuing CA its tokens leave out) and its own
    # root travel in the bundle, beside the seal's root.
    tsa_chain = x509.load_pem_x509_certificates((folder / "certs/tsa-chain.pem").read_bytes())
    assert tsa_chain == [archive.tsa.certificate("tsa.pem"), archive.tsa.certificate("tsa-ca.pem")]
    tsa_root = (folder / "certs/tsa-root.pem").read_text()
    assert tsa_root == pem(archive.tsa.certificate("tsa-root.pem"))
    assert (folder / "certs/root.pem").read_text() == pem(pki.root_certificate)

    # The commands of VERIFY.md, as its reader runs them.
    commands = verify_md_commands(folder)
    assert ["openssl", "cms", "-verify"] in [c[:3] for c in commands]
    ts_verify = next(c for c in commands if c[:3] == ["openssl", "ts", "-verify"])
    assert ts_verify[ts_verify.index("-CAfile") + 1] == "certs/tsa-root.pem"
    assert ts_verify[ts_verify.index("-untrusted") + 1] == "certs/tsa-chain.pem"
    for command in commands:
        done = openssl(*command[1:], cwd=folder)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        if command[:3] == ["openssl", "ts", "-verify"]:
            assert "Verification: OK" in done.stdout
        if command[:3] == ["openssl", "ts", "-reply"]:
            assert f"Policy OID: {POLICY}" in done.stdout
    # The seal's root does not vouch for the TSA: against it, the time stamp fails.
    against_seal_root = openssl(
        "ts", "-verify", "-data", "checkpoint.txt", "-in", "checkpoint.tsr",
        "-CAfile", "certs/root.pem", "-untrusted", "certs/tsa-chain.pem",
        cwd=folder,
    )  # fmt: skip
    assert against_seal_root.returncode != 0

    # Our verifier, with both roots pinned as a careful reader would.
    report = verify_evidence(
        content,
        bundle,
        trusted_root_pem=(pki.directory / DevelopmentPKI.ROOT).read_bytes(),
        trusted_tsa_root_pem=archive.tsa.root_file.read_bytes(),
    )
    assert report.ok, report.first_failure
    assert report.tsa_subject == archive.tsa.certificate("tsa.pem").subject.rfc4514_string()
    tsa_root_subject = archive.tsa.certificate("tsa-root.pem").subject.rfc4514_string()
    assert report.tsa_root_subject == tsa_root_subject
    wrong = verify_evidence(
        content, bundle, trusted_tsa_root_pem=(pki.directory / DevelopmentPKI.ROOT).read_bytes()
    )
    assert wrong.first_failure is not None and wrong.first_failure.name == CHECK_TIMESTAMP

    # And archivectl verify, offline, with the two roots pinned (and the wrong TSA root).
    (tmp_path / "copy.pdf").write_bytes(content)
    (tmp_path / "evidence.zip").write_bytes(bundle)
    pinned = ["--trust-root", str(pki.directory / DevelopmentPKI.ROOT)]
    verify = ["verify", str(tmp_path / "copy.pdf"), "--evidence", str(tmp_path / "evidence.zip")]
    assert archivectl([*verify, *pinned, "--trust-tsa-root", str(archive.tsa.root_file)]) == 0
    assert archivectl([*verify, *pinned, "--trust-tsa-root", pinned[1]]) == 1

    # The checkpoint record holds the same chain and root; GetCheckpoint serves them.
    (checkpoint,) = (await load_tenant_log(archive.store, "acme")).checkpoints
    assert checkpoint.tsa_chain_pem == (folder / "certs/tsa-chain.pem").read_text()
    assert checkpoint.tsa_root_pem == tsa_root
    signed = await archive.sealing.GetCheckpoint(
        sealing_pb2.GetCheckpointRequest(), metadata=archive.auth
    )
    assert signed.tsa_root_pem == tsa_root
    served = verify_signed_checkpoint(
        signed.checkpoint,
        signed.seal,
        signed.timestamp_response,
        tsa_chain_pem=signed.tsa_chain_pem.encode(),
        root_pem=signed.root_pem.encode(),
        tsa_root_pem=signed.tsa_root_pem.encode(),
        trusted_tsa_root_pem=archive.tsa.root_file.read_bytes(),
    )
    assert served.ok, served.first_failure


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({}, "ARCHIVE_SEAL_KEY_FILE"),
        ({"ARCHIVE_TSA_KEY_FILE": DevelopmentPKI.TSA_KEY}, "ARCHIVE_TSA_KEY_FILE"),
    ],
    ids=["no-keys", "own-tsa"],
)
def test_sealing_refuses_to_start_in_production_without_its_keys_or_with_its_own_tsa(
    pki: DevelopmentPKI, tmp_path: Path, extra: dict[str, str], refused: str
) -> None:
    settings = {name: str(pki.directory / file) for name, file in extra.items()}
    done = subprocess.run(
        serve_sealing(),
        env=child_environment(
            ARCHIVE_DATA_DIR=str(tmp_path), ARCHIVE_GRPC_PORT=str(free_port()), **settings
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"archive serve sealing: {refused}:" in done.stderr
    if not extra:
        for variable in (
            "ARCHIVE_SEAL_CERT_FILE",
            "ARCHIVE_SEAL_ROOT_FILE",
            "ARCHIVE_TSA_URL",
            "ARCHIVE_TSA_ROOT_FILE",
        ):
            assert variable in done.stderr
    assert not (tmp_path / "pki").exists(), "production generated no PKI of its own"
