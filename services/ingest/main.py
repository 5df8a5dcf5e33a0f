"""The ingest service: deposits (archive.v1.Ingest) and tenant administration
(archive.v1.TenantAdmin, archive.v1.Tenancy)."""

from __future__ import annotations

from archive.blobstore import BlobStore
from archive.blobstore.factory import open_blob_store
from archive.config import Settings
from archive.eventstore import EventStore
from archive.eventstore.factory import open_event_store
from archive.grpcserver import ArchiveServer, Registration, build_server, serve
from archive.telemetry import configure_from_settings
from archive.tenancy.registry import TenantRegistry
from archive.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.servicer import IngestServicer
from services.ingest.tenancy_servicer import tenancy_registrations


def build(
    settings: Settings, store: EventStore, blobs: BlobStore, registry: TenantRegistry
) -> ArchiveServer:
    registrations = [
        Registration.of(
            ingest_pb2.DESCRIPTOR.services_by_name["Ingest"],
            ingest_pb2_grpc.add_IngestServicer_to_server,
            IngestServicer(store, blobs, settings),
        ),
        *tenancy_registrations(store),
    ]
    return build_server(settings, registrations, event_store=store, registry=registry)


async def run(settings: Settings) -> None:
    configure_from_settings(settings)
    store = await open_event_store(settings)
    blobs = open_blob_store(settings, writer=True)
    server = build(settings, store, blobs, TenantRegistry(store))
    await serve(server)
