"""Sealing over a real JetStream store, the development TSA (in process, through the same
client and checks as an external one) and real keys: evidence that openssl verifies, chained
checkpoints, racing and restarted sealers, a TSA outage, integrity audits. Sealing against a
TSA that is not ours: tests/integration/test_external_tsa.py."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import subprocess
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from conftest import unique_names
from cryptography.hazmat.primitives.serialization import Encoding
from ingest_stack import damage_stored_copy
from pki import openssl
from waiting import eventually

from archive.blobstore import BlobStore, FilesystemBlobStore, PackBlobStore
from archive.config import Secret, Settings
from archive.eventstore import ANY, NewEvent, StreamName
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import NatsServer
from archive.sealing.checkpoint import parse_checkpoint
from archive.sealing.keys import DevelopmentPKI
from archive.sealing.merkle import verify_consistency
from archive.tenancy.registry import TenantRegistry
from archive.v1 import (
    common_pb2,
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    sealing_pb2,
    sealing_pb2_grpc,
    tenancy_pb2,
    tenancy_pb2_grpc,
)
from services.ingest.main import build as build_ingest
from services.sealing.dev_tsa import InProcessTsa, TimeStampAuthority
from services.sealing.log import load_tenant_log
from services.sealing.main import Keys, checkpoint_verifier, timestamper
from services.sealing.main import build as build_sealing
from services.sealing.sealer import Sealer, Stamp, TimestampFunction, TimestampUnavailable
from services.sealing.tsa_client import TsaClient, TsaTrust

pytestmark = pytest.mark.integration

OPERATOR = "operator-token-for-sealing-tests-0123"
ORIGIN = "archive.test"


@dataclass
class Setup:
    store: JetStreamEventStore
    names: dict[str, str]
    server: NatsServer
    keys: Keys
    timestamp: TimestampFunction
    tmp: Path

    def sealer(self, timestamp: TimestampFunction | None = None, **kwargs: float) -> Sealer:
        from archive.sealing.cms import seal_detached

        return Sealer(
            self.store,
            origin=ORIGIN,
            seal=lambda data: seal_detached(data, self.keys.seal),
            timestamp=timestamp or self.timestamp,
            **{"max_leaves": 50, "max_delay": 0.1, "retry_delay": 0.1, **kwargs},  # type: ignore[arg-type]
        )

    async def other_store(self) -> JetStreamEventStore:
        return await JetStreamEventStore.connect(self.server.url, **self.names)


@pytest.fixture
async def setup(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Setup]:
    names = unique_names()
    store = await JetStreamEventStore.connect(nats_server.url, **names)
    keys = Keys.of_development_pki(DevelopmentPKI.ensure(tmp_path / "pki"))
    assert keys.tsa is not None
    client = TsaClient(
        InProcessTsa(TimeStampAuthority(keys.tsa)), TsaTrust(keys.tsa_roots, keys.tsa_chain)
    )
    try:
        yield Setup(store, names, nats_server, keys, timestamper(client), tmp_path)
    finally:
        await client.aclose()
        await store.close()


async def append_events(store: JetStreamEventStore, tenant: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        event = NewEvent(type="test.Happened", data=b"%d" % i)
        await store.append(StreamName(tenant, "thing", f"t{i % 7}"), [event], ANY)
        ids.append(event.event_id)
    return ids


async def run_until(sealer: Sealer, condition: Callable[[], bool], timeout: float = 20) -> None:
    task = asyncio.create_task(sealer.run(tick=0.02))
    try:
        await eventually(lambda: condition() or task.done(), timeout)
        if task.done():
            task.result()
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def sealed_all(sealer: Sealer, tenant: str, ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        log = sealer.logs.get(tenant)
        return (
            log is not None
            and all(i in log.index_of_event for i in ids)
            and log.latest_checkpoint is not None
            and log.latest_checkpoint.tree_size == log.size
        )

    return check


async def assert_consistent_log(store: JetStreamEventStore, tenant: str, ids: list[str]) -> None:
    """One log: every event exactly once, checkpoints chained by verified consistency proofs."""
    log = await load_tenant_log(store, tenant)
    assert sorted(log.event_ids) == sorted(ids)
    assert len(set(log.event_ids)) == len(log.event_ids)
    previous = None
    for checkpoint in log.checkpoints:
        text = parse_checkpoint(checkpoint.checkpoint)
        assert text.origin == f"{ORIGIN}/{tenant}"
        assert text.size == checkpoint.tree_size and text.root == checkpoint.root_hash
        assert log.tree.root(checkpoint.tree_size) == checkpoint.root_hash
        if previous is not None:
            assert (
                checkpoint.previous_checkpoint_sha256
                == hashlib.sha256(previous.checkpoint).digest()
            )
            assert verify_consistency(
                previous.tree_size,
                checkpoint.tree_size,
                list(checkpoint.consistency_proof),
                previous.root_hash,
                checkpoint.root_hash,
            )
        previous = checkpoint


async def test_every_event_of_a_tenant_becomes_a_leaf_under_chained_checkpoints(
    setup: Setup,
) -> None:
    ids = await append_events(setup.store, "acme", 120)
    other = await append_events(setup.store, "globex", 30)
    sealer = setup.sealer()
    await run_until(
        sealer, lambda: sealed_all(sealer, "acme", ids)() and sealed_all(sealer, "globex", other)()
    )
    await assert_consistent_log(setup.store, "acme", ids)
    await assert_consistent_log(setup.store, "globex", other)
    acme = sealer.logs["acme"]
    assert len(acme.checkpoints) >= 3  # 120 leaves, at most 50 a checkpoint
    verify = checkpoint_verifier(setup.keys)
    assert all(verify(c) is None for c in acme.checkpoints)
    # Each records the TSA's path as it validated: the TSA certificate, then its root.
    tsa = setup.keys.tsa
    assert tsa is not None
    tsa_pem = tsa.certificate.public_bytes(Encoding.PEM).decode()
    root_pem = setup.keys.root.public_bytes(Encoding.PEM).decode()
    assert {(c.tsa_chain_pem, c.tsa_root_pem) for c in acme.checkpoints} == {(tsa_pem, root_pem)}


async def test_two_sealers_racing_on_one_tenant_make_one_log(setup: Setup) -> None:
    second_store = await setup.other_store()
    try:
        first = setup.sealer()
        second = Sealer(
            second_store,
            origin=ORIGIN,
            seal=first._seal,
            timestamp=setup.timestamp,
            max_leaves=50,
            max_delay=0.1,
        )
        tasks = [asyncio.create_task(s.run(tick=0.01)) for s in (first, second)]
        ids = []
        for _ in range(6):
            ids += await append_events(setup.store, "acme", 25)
            await asyncio.sleep(0.05)
        await eventually(
            lambda: sealed_all(first, "acme", ids)() and sealed_all(second, "acme", ids)(), 30
        )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await assert_consistent_log(setup.store, "acme", ids)
        assert first.logs["acme"].tree.root() == second.logs["acme"].tree.root()
    finally:
        await second_store.close()


async def test_a_sealer_killed_mid_round_loses_no_leaf_and_forks_nothing(setup: Setup) -> None:
    ids = await append_events(setup.store, "acme", 60)
    rounds = 0
    stuck = asyncio.Event()

    async def hangs_on_the_second_round(data: bytes) -> Stamp:
        nonlocal rounds
        rounds += 1
        if rounds >= 2:
            stuck.set()
            await asyncio.sleep(3600)  # killed while waiting for its time stamp
        return await setup.timestamp(data)

    doomed = setup.sealer(hangs_on_the_second_round, max_leaves=20)
    task = asyncio.create_task(doomed.run(tick=0.01))
    await asyncio.wait_for(stuck.wait(), 10)
    task.cancel()  # the process dies here: the round in progress appended nothing
    await asyncio.gather(task, return_exceptions=True)
    assert (await load_tenant_log(setup.store, "acme")).size == 20

    ids += await append_events(setup.store, "acme", 15)
    restarted = setup.sealer()
    await run_until(restarted, sealed_all(restarted, "acme", ids))
    await assert_consistent_log(setup.store, "acme", ids)


async def test_tsa_outage_keeps_the_backlog_and_drops_no_leaf(setup: Setup) -> None:
    available = False

    async def flaky(data: bytes) -> Stamp:
        if not available:
            raise TimestampUnavailable("connection refused")
        return await setup.timestamp(data)

    sealer = setup.sealer(flaky)
    ids = await append_events(setup.store, "acme", 30)
    task = asyncio.create_task(sealer.run(tick=0.01))
    try:
        await eventually(lambda: sealer.stats.timestamp_failures >= 3, 10)
        assert sealer.backlog() == {"acme": 30}
        assert (await load_tenant_log(setup.store, "acme")).size == 0  # nothing half-sealed
        available = True
        await eventually(sealed_all(sealer, "acme", ids), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert sealer.backlog() == {}
    await assert_consistent_log(setup.store, "acme", ids)


# ---- through gRPC, with deposits from the ingest service ----


@dataclass
class Services:
    ingest: ingest_pb2_grpc.IngestStub
    sealing: sealing_pb2_grpc.SealingStub
    auth: tuple[tuple[str, str], ...]
    blob_root: Path
    sealer: Sealer

    async def deposit(self, content: bytes) -> ingest_pb2.DepositReceipt:
        def requests():  # type: ignore[no-untyped-def]
            yield ingest_pb2.UploadRequest(header=ingest_pb2.UploadHeader(file_name="d.pdf"))
            yield ingest_pb2.UploadRequest(chunk=content)
            yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=len(content)))

        return await self.ingest.Upload(requests(), metadata=self.auth)


@pytest.fixture
async def services(setup: Setup) -> AsyncIterator[Services]:
    async with running_services(setup, FilesystemBlobStore) as running:
        yield running


@pytest.fixture(params=["filesystem", "pack"])
async def services_on_each_store(
    request: pytest.FixtureRequest, setup: Setup
) -> AsyncIterator[Services]:
    """`services` on each durable blob store (sealing opens the pack store read-only)."""
    stores: dict[str, tuple[Callable[[Path], BlobStore], Callable[[Path], BlobStore]]] = {
        "filesystem": (FilesystemBlobStore, FilesystemBlobStore),
        "pack": (PackBlobStore, lambda root: PackBlobStore(root, writable=False)),
    }
    async with running_services(setup, *stores[request.param]) as running:
        yield running


@contextlib.asynccontextmanager
async def running_services(
    setup: Setup,
    blobs: Callable[[Path], BlobStore],
    read_only_blobs: Callable[[Path], BlobStore] | None = None,
) -> AsyncIterator[Services]:
    """Ingest and sealing servers; each opens the blob directory with its own store, as the
    separate processes do (sealing read-only where the adapter has that mode)."""
    settings = Settings(
        data_dir=setup.tmp / "data",
        grpc_port=0,
        operator_token=Secret(OPERATOR),
        shutdown_grace_seconds=0.5,
    )
    blob_root = setup.tmp / "blobs"
    sealer = setup.sealer(max_delay=0.2)
    servers = [
        build_ingest(settings, setup.store, blobs(blob_root), TenantRegistry(setup.store)),
        build_sealing(
            settings,
            setup.store,
            (read_only_blobs or blobs)(blob_root),
            TenantRegistry(setup.store),
            sealer,
            setup.keys,
        ),
    ]
    for server in servers:
        await server.start()
    sealing_task = asyncio.create_task(sealer.run(tick=0.02))
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{s.port}") for s in servers]
    created = await tenancy_pb2_grpc.TenantAdminStub(channels[0]).CreateTenant(
        tenancy_pb2.CreateTenantRequest(tenant=common_pb2.TenantId(value="acme")),
        metadata=(("authorization", f"Bearer {OPERATOR}"),),
    )
    try:
        yield Services(
            ingest_pb2_grpc.IngestStub(channels[0]),
            sealing_pb2_grpc.SealingStub(channels[1]),
            (("authorization", f"Bearer {created.token.token}"),),
            blob_root,
            sealer,
        )
    finally:
        sealing_task.cancel()
        await asyncio.gather(sealing_task, return_exceptions=True)
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(0)


async def test_evidence_bundle_verifies_with_openssl_and_the_merkle_snippet(
    services: Services, tmp_path: Path
) -> None:
    content = b"%PDF-1.7\n" + uuid.uuid4().bytes * 1000
    receipt = await services.deposit(content)
    bundle = await services.sealing.GetEvidence(
        sealing_pb2.GetEvidenceRequest(document_id=receipt.document_id), metadata=services.auth
    )
    folder = tmp_path / "bundle"
    zipfile.ZipFile(io.BytesIO(bundle.zip)).extractall(folder)
    leaf = (folder / "leaf.json").read_text()
    assert hashlib.sha256(content).hexdigest() in leaf
    assert hashlib.sha512(content).hexdigest() in leaf
    assert receipt.document_id.value in leaf
    cms = openssl(
        "cms",
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        "checkpoint.p7s",
        "-content",
        "checkpoint.txt",
        "-CAfile",
        "certs/root.pem",
        "-purpose",
        "any",
        "-out",
        "/dev/null",
        cwd=folder,
    )
    assert cms.returncode == 0, cms.stderr
    ts = openssl(
        "ts",
        "-verify",
        "-data",
        "checkpoint.txt",
        "-in",
        "checkpoint.tsr",
        "-CAfile",
        "certs/tsa-root.pem",
        "-untrusted",
        "certs/tsa-chain.pem",
        cwd=folder,
    )
    assert ts.returncode == 0 and "Verification: OK" in ts.stdout, ts.stderr + ts.stdout
    snippet = (folder / "VERIFY.md").read_text().split("```python\n")[1].split("```")[0]
    merkle = subprocess.run(["python3", "-c", snippet], cwd=folder, capture_output=True, text=True)
    assert merkle.returncode == 0 and "inclusion verified" in merkle.stdout, merkle.stderr


async def test_evidence_of_another_tenant_or_unknown_document_is_not_found(
    services: Services,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await services.sealing.GetEvidence(
            sealing_pb2.GetEvidenceRequest(
                document_id=common_pb2.DocumentId(value=str(uuid.uuid4()))
            ),
            metadata=services.auth,
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_consistency_proof_between_two_checkpoints_verifies(services: Services) -> None:
    first = await services.deposit(b"one")
    await services.sealing.GetEvidence(
        sealing_pb2.GetEvidenceRequest(document_id=first.document_id), metadata=services.auth
    )
    old = await services.sealing.GetCheckpoint(
        sealing_pb2.GetCheckpointRequest(), metadata=services.auth
    )
    second = await services.deposit(b"two")
    await services.sealing.GetEvidence(
        sealing_pb2.GetEvidenceRequest(document_id=second.document_id), metadata=services.auth
    )
    old_text = parse_checkpoint(old.checkpoint)
    proof = await services.sealing.GetConsistencyProof(
        sealing_pb2.GetConsistencyProofRequest(from_size=old_text.size), metadata=services.auth
    )
    new_text = parse_checkpoint(proof.to_checkpoint.checkpoint)
    assert new_text.size > old_text.size
    assert verify_consistency(
        old_text.size, new_text.size, list(proof.hashes), old_text.root, new_text.root
    )


async def test_integrity_audit_finds_a_flipped_bit_in_a_stored_blob(
    services_on_each_store: Services,
) -> None:
    services = services_on_each_store
    bad_content = b"%PDF-1.7\n" + b"b" * 5000
    good = await services.deposit(b"%PDF-1.7\n" + b"a" * 5000)
    bad = await services.deposit(bad_content)
    for receipt in (good, bad):
        await services.sealing.GetEvidence(
            sealing_pb2.GetEvidenceRequest(document_id=receipt.document_id),
            metadata=services.auth,
        )
    clean = await services.sealing.RunIntegrityAudit(
        sealing_pb2.RunIntegrityAuditRequest(), metadata=services.auth
    )
    assert list(clean.failures) == [] and clean.documents_checked == 2
    # Inside the content (its own file, or its record in a pack segment), not a header.
    damage_stored_copy(services.blob_root, bad_content, at=100)
    report = await services.sealing.RunIntegrityAudit(
        sealing_pb2.RunIntegrityAuditRequest(), metadata=services.auth
    )
    assert [(f.kind, f.document_id) for f in report.failures] == [
        ("content", bad.document_id.value)
    ]
    assert report.events_checked > 0 and report.bytes_rehashed >= 10_000


_ = (Awaitable, events_pb2)
