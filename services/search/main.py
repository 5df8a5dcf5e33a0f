"""The search service: the read side (archive.v1.Search) over the document registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

from archive.blobstore import BlobStore
from archive.blobstore.factory import open_blob_store
from archive.config import Settings
from archive.eventstore import EventStore
from archive.eventstore.factory import open_event_store
from archive.grpcserver import ArchiveServer, Registration, build_server, serve
from archive.projections import ProjectionRunner
from archive.telemetry import configure_from_settings
from archive.tenancy.registry import TenantRegistry
from archive.v1 import search_pb2, search_pb2_grpc
from services.search.registry import DocumentRegistryProjection, RegistryQueries
from services.search.servicer import SearchServicer


def registry_path(settings: Settings) -> Path:
    return settings.data_dir / "search" / "document-registry.sqlite"


def build(
    settings: Settings,
    store: EventStore,
    blobs: BlobStore,
    registry: TenantRegistry,
    runner: ProjectionRunner,
) -> ArchiveServer:
    servicer = SearchServicer(store, blobs, runner, RegistryQueries(registry_path(settings)))
    registration = Registration.of(
        search_pb2.DESCRIPTOR.services_by_name["Search"],
        search_pb2_grpc.add_SearchServicer_to_server,
        servicer,
    )
    return build_server(settings, [registration], event_store=store, registry=registry)


async def run(settings: Settings) -> None:
    configure_from_settings(settings)
    store = await open_event_store(settings)
    blobs = open_blob_store(settings, writer=False)
    runner = ProjectionRunner(store, DocumentRegistryProjection(), registry_path(settings))
    await runner.catch_up()  # serve only once the registry has what the store had at start
    following = asyncio.create_task(runner.run(), name="document-registry")
    try:
        await serve(
            build(settings, store, blobs, TenantRegistry(store), runner), background=[following]
        )
    finally:
        runner.close()
