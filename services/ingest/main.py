"""The ingest service: deposits (archive.v1.Ingest) and tenant administration
(archive.v1.TenantAdmin, archive.v1.Tenancy)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from archive.blobstore import BlobStore, FilesystemBlobStore
from archive.blobstore.filesystem import syncfs_available
from archive.config import Settings
from archive.eventstore import EventStore
from archive.eventstore.factory import open_event_store
from archive.grpcserver import ArchiveServer, Registration, build_server, serve
from archive.telemetry import configure_from_settings
from archive.tenancy.registry import TenantRegistry
from archive.tenancy.servicer import tenancy_registrations
from archive.v1 import ingest_pb2, ingest_pb2_grpc
from services.ingest.upload import IngestServicer

# Threads for the blob store's blocking calls. Per-file commits need many fsyncs in flight for
# the journal to merge them (measured: 760/s one at a time, 2,000-3,700/s with 16-64 threads);
# group commits need few: more threads only contend (measured, 30 KB puts on 2 cores: 1,581/s
# at 517 us CPU each with 2 threads, 942/s at 1,610 us with 64).
BLOB_IO_THREADS = {"group": 4, "per-file": 64}


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
    mode = "group" if syncfs_available() else "per-file"
    blobs = FilesystemBlobStore(
        settings.blob_root,
        executor=ThreadPoolExecutor(BLOB_IO_THREADS[mode], thread_name_prefix="blob-io"),
        commit=mode,
    )
    server = build(settings, store, blobs, TenantRegistry(store))
    await serve(server)
