"""The sealing service: the tenants' Merkle logs, signed and time-stamped checkpoints,
evidence bundles and integrity audits (archive.v1.Sealing)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from archive.audit_errors import AuditAlreadyRunning
from archive.blobstore import BlobStore
from archive.blobstore.factory import open_blob_store
from archive.config import ConfigError, Settings
from archive.eventstore import EventStore
from archive.eventstore.factory import open_event_store
from archive.grpcserver import ArchiveServer, Registration, build_server, serve
from archive.sealing.cms import seal_detached, verify_detached
from archive.sealing.keys import DevelopmentPKI, FileSigner, Signer
from archive.sealing.timestamping import (
    TimeStampAuthority,
    TimestampError,
    TsaClient,
    TsaHttpServer,
    verify_timestamp_response,
)
from archive.telemetry import configure_from_settings
from archive.tenancy.registry import TenantRegistry
from archive.v1 import events_pb2, sealing_pb2, sealing_pb2_grpc
from services.sealing.audit import CheckpointVerifier, IntegrityAuditor, audited_logs
from services.sealing.evidence import TrustMaterial
from services.sealing.sealer import Sealer, TimestampFunction, TimestampUnavailable
from services.sealing.servicer import SealingServicer

log = logging.getLogger(__name__)


@dataclass
class Keys:
    seal: Signer
    root: x509.Certificate
    tsa: Signer | None  # the built-in TSA's signer; None when an external TSA is used
    tsa_chain: list[x509.Certificate]


def _pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def load_keys(settings: Settings) -> Keys:
    """Production: keys and certificates from files (Kubernetes Secrets). Otherwise a
    development PKI generated under <data_dir>/pki on first start."""
    if settings.seal_key_file is not None:
        if settings.seal_cert_file is None or settings.trust_root_file is None:
            raise ConfigError(
                "ARCHIVE_SEAL_KEY_FILE",
                "also set ARCHIVE_SEAL_CERT_FILE and ARCHIVE_TRUST_ROOT_FILE",
            )
        seal = FileSigner.load(
            settings.seal_key_file, settings.seal_cert_file, settings.seal_chain_file
        )
        root = x509.load_pem_x509_certificate(settings.trust_root_file.read_bytes())
        tsa: Signer | None = None
        if settings.tsa_key_file is not None and settings.tsa_cert_file is not None:
            tsa = FileSigner.load(
                settings.tsa_key_file, settings.tsa_cert_file, settings.tsa_chain_file
            )
        elif not settings.tsa_url:
            raise ConfigError(
                "ARCHIVE_TSA_URL",
                "with file-based seal keys, name an RFC 3161 TSA (ARCHIVE_TSA_URL) or give the "
                "built-in TSA its key (ARCHIVE_TSA_KEY_FILE, ARCHIVE_TSA_CERT_FILE)",
            )
        tsa_chain = [tsa.certificate, *tsa.chain] if tsa is not None else []
        return Keys(seal, root, tsa, tsa_chain)
    pki = DevelopmentPKI.ensure(settings.data_dir / "pki")
    tsa_signer = pki.tsa_signer()
    return Keys(
        pki.seal_signer(),
        pki.root_certificate,
        tsa_signer,
        [tsa_signer.certificate, *tsa_signer.chain],
    )


def timestamper(client: TsaClient, root: x509.Certificate) -> TimestampFunction:
    async def timestamp(data: bytes) -> tuple[bytes, datetime]:
        try:
            response = await client.timestamp(data)
        except TimestampError as exc:
            raise TimestampUnavailable(str(exc)) from exc
        verified = verify_timestamp_response(response, data, [root])
        if not verified.ok or verified.gen_time is None:
            raise TimestampUnavailable(f"time stamp not acceptable: {verified.reason}")
        return response, verified.gen_time

    return timestamp


def checkpoint_verifier(root: x509.Certificate) -> CheckpointVerifier:
    def verify(checkpoint: events_pb2.CheckpointSealed) -> str | None:
        seal = verify_detached(checkpoint.seal, checkpoint.checkpoint, [root])
        if not seal.ok:
            return f"seal: {seal.reason}"
        stamp = verify_timestamp_response(
            checkpoint.timestamp_response, checkpoint.checkpoint, [root]
        )
        if not stamp.ok:
            return f"time stamp: {stamp.reason}"
        return None

    return verify


def build(
    settings: Settings,
    store: EventStore,
    blobs: BlobStore,
    registry: TenantRegistry,
    sealer: Sealer,
    keys: Keys,
    *,
    auditor: IntegrityAuditor | None = None,
) -> ArchiveServer:
    trust = TrustMaterial(
        seal_chain_pem=_pem([keys.seal.certificate, *keys.seal.chain]),
        tsa_chain_pem=_pem(keys.tsa_chain),
        root_pem=_pem([keys.root]),
    )
    servicer = SealingServicer(
        store, blobs, sealer, trust, checkpoint_verifier(keys.root), auditor=auditor
    )
    registration = Registration.of(
        sealing_pb2.DESCRIPTOR.services_by_name["Sealing"],
        sealing_pb2_grpc.add_SealingServicer_to_server,
        servicer,
    )
    return build_server(settings, [registration], event_store=store, registry=registry)


async def scheduled_audits(auditor: IntegrityAuditor, sealer: Sealer, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        for tenant_log in audited_logs(sealer.logs):
            try:
                await auditor.audit(tenant_log, trigger="scheduled")
            except AuditAlreadyRunning:
                log.info("audit of %s already running; skipped this round", tenant_log.tenant)


def _stop_on_failure(task: asyncio.Task[None]) -> None:
    """A sealer that stopped must not leave a healthy-looking process behind: exit, and let
    the supervisor (launcher, Kubernetes) restart it; it resumes from the store."""
    if not task.cancelled() and task.exception() is not None:
        log.critical("%s failed: %r; stopping the process", task.get_name(), task.exception())
        os.kill(os.getpid(), signal.SIGTERM)


async def run(settings: Settings) -> None:
    configure_from_settings(settings)
    keys = load_keys(settings)
    store = await open_event_store(settings)
    blobs = open_blob_store(settings, writer=False)
    tsa_server: TsaHttpServer | None = None
    tsa_url = settings.tsa_url
    if not tsa_url:
        assert keys.tsa is not None
        tsa_server = TsaHttpServer(TimeStampAuthority(keys.tsa), host="127.0.0.1", port=0)
        await tsa_server.start()
        tsa_url = tsa_server.url
        log.info("built-in time-stamp authority at %s", tsa_url)
    client = TsaClient(tsa_url, timeout=5.0, trusted_roots=[keys.root])
    sealer = Sealer(
        store,
        origin=settings.provider_origin,
        seal=lambda data: seal_detached(data, keys.seal),
        timestamp=timestamper(client, keys.root),
        max_leaves=settings.checkpoint_max_leaves,
        max_delay=settings.checkpoint_interval_ms / 1000,
    )
    auditor = IntegrityAuditor(store, blobs, checkpoint_verifier(keys.root))
    sealing = asyncio.create_task(sealer.run(), name="sealer")
    audits = asyncio.create_task(
        scheduled_audits(auditor, sealer, settings.audit_interval_seconds),
        name="scheduled-audits",
    )
    for task in (sealing, audits):
        task.add_done_callback(_stop_on_failure)
    try:
        await serve(
            build(settings, store, blobs, TenantRegistry(store), sealer, keys, auditor=auditor),
            background=[sealing, audits],
        )
    finally:
        if tsa_server is not None:
            await tsa_server.stop()
