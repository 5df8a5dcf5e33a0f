"""The sealing service: the tenants' Merkle logs, signed and time-stamped checkpoints,
evidence bundles and integrity audits (archive.v1.Sealing)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from archive.audit_errors import AuditAlreadyRunning
from archive.blobstore import BlobStore
from archive.blobstore.factory import open_blob_store
from archive.config import Settings
from archive.eventstore import EventStore
from archive.eventstore.factory import open_event_store
from archive.grpcserver import ArchiveServer, Registration, build_server, serve
from archive.sealing.cms import seal_detached, verify_detached
from archive.sealing.timestamps import verify_timestamp_response
from archive.telemetry import configure_from_settings
from archive.tenancy.registry import TenantRegistry
from archive.v1 import events_pb2, sealing_pb2, sealing_pb2_grpc
from services.sealing.audit import CheckpointVerifier, IntegrityAuditor, audited_logs
from services.sealing.dev_tsa import InProcessTsa, TimeStampAuthority
from services.sealing.evidence import TrustMaterial
from services.sealing.sealer import Sealer, Stamp, TimestampFunction, TimestampUnavailable
from services.sealing.servicer import SealingServicer
from services.sealing.trust import Keys, load_keys
from services.sealing.tsa_client import (
    HttpTransport,
    TimestampError,
    TsaClient,
    TsaTransport,
    TsaTrust,
)

__all__ = [
    "Keys",
    "build",
    "checkpoint_verifier",
    "load_keys",
    "run",
    "timestamper",
    "trust_material",
    "tsa_client",
]

log = logging.getLogger(__name__)


def _pem(certs: Iterable[x509.Certificate]) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certs)


def trust_material(keys: Keys) -> TrustMaterial:
    """The certificates every evidence bundle ships, as PEM."""
    return TrustMaterial(
        seal_chain_pem=_pem([keys.seal.certificate, *keys.seal.chain]),
        root_pem=_pem([keys.root]),
        tsa_chain_pem=_pem(keys.tsa_chain),
        tsa_root_pem=_pem(keys.tsa_roots),
    )


def tsa_client(settings: Settings, keys: Keys) -> TsaClient:
    """The external TSA over HTTP(S) when ARCHIVE_TSA_URL is set, else (development only,
    load_keys saw to it) the built-in one, in process; verified against the TSA's roots."""
    transport: TsaTransport
    if settings.tsa_url:
        transport = HttpTransport(
            settings.tsa_url, timeout=settings.tsa_timeout_seconds, ca_file=settings.tsa_ca_file
        )
    else:
        assert keys.tsa is not None
        transport = InProcessTsa(TimeStampAuthority(keys.tsa))
    return TsaClient(transport, TsaTrust(keys.tsa_roots, keys.tsa_chain))


def timestamper(client: TsaClient) -> TimestampFunction:
    async def timestamp(data: bytes) -> Stamp:
        try:
            granted = await client.timestamp(data)
        except TimestampError as exc:
            # Whatever the TSA did, there is no time stamp: the sealer keeps the leaves and
            # retries; the message says whether it was unreachable, refused or answered junk.
            raise TimestampUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return Stamp(granted.response, granted.gen_time, _pem(granted.chain), _pem([granted.root]))

    return timestamp


def checkpoint_verifier(keys: Keys) -> CheckpointVerifier:
    """The seal against the seal root, the time stamp against the TSA roots (through the
    chain recorded with the checkpoint and the configured intermediates)."""

    def verify(checkpoint: events_pb2.CheckpointSealed) -> str | None:
        seal = verify_detached(checkpoint.seal, checkpoint.checkpoint, [keys.root])
        if not seal.ok:
            return f"seal: {seal.reason}"
        recorded = _recorded_chain(checkpoint.tsa_chain_pem)
        stamp = verify_timestamp_response(
            checkpoint.timestamp_response,
            checkpoint.checkpoint,
            keys.tsa_roots,
            untrusted=[*recorded, *keys.tsa_chain],
        )
        if not stamp.ok:
            return f"time stamp: {stamp.reason}"
        return None

    return verify


def _recorded_chain(pem: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode()) if pem else []
    except ValueError:
        return []  # unreadable: the time stamp must then verify without it


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
    servicer = SealingServicer(
        store, blobs, sealer, trust_material(keys), checkpoint_verifier(keys), auditor=auditor
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
    client = tsa_client(settings, keys)
    log.info(
        "profile %s; time stamps from %s, trusted up to %s",
        settings.profile,
        client.transport.name,
        "; ".join(root.subject.rfc4514_string() for root in keys.tsa_roots),
    )
    sealer = Sealer(
        store,
        origin=settings.provider_origin,
        seal=lambda data: seal_detached(data, keys.seal),
        timestamp=timestamper(client),
        max_leaves=settings.checkpoint_max_leaves,
        max_delay=settings.checkpoint_interval_ms / 1000,
    )
    auditor = IntegrityAuditor(store, blobs, checkpoint_verifier(keys))
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
        await client.aclose()
