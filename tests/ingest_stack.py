"""A real ingest and search stack for integration tests: JetStream event store, filesystem
blob store, each service a real gRPC server, tenants `acme` and `globex`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from conftest import unique_names

from archive.blobstore import FilesystemBlobStore
from archive.config import Secret, Settings
from archive.eventstore.jetstream import JetStreamEventStore
from archive.grpcserver import ArchiveServer
from archive.natsserver import NatsServer
from archive.projections import ProjectionRunner
from archive.tenancy.registry import TenantRegistry
from archive.v1 import (
    common_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    search_pb2_grpc,
    tenancy_pb2,
    tenancy_pb2_grpc,
)
from services.ingest.main import build as build_ingest
from services.search.main import build as build_search
from services.search.main import registry_path
from services.search.registry import DocumentRegistryProjection

OPERATOR = "operator-token-for-tests-0123456789"


@dataclass
class Stack:
    store: JetStreamEventStore
    blob_root: Path
    ingest: ingest_pb2_grpc.IngestStub
    search: search_pb2_grpc.SearchStub
    admin: tenancy_pb2_grpc.TenantAdminStub
    tokens: dict[str, str]
    endpoint: str  # the ingest server, host:port

    def auth(self, tenant: str = "acme") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[tenant]}"),)

    async def upload(
        self,
        content: bytes,
        tenant: str = "acme",
        chunk: int = 64 * 1024,
        **header: object,
    ) -> ingest_pb2.DepositReceipt:
        header.setdefault("file_name", "doc.bin")
        return await self.ingest.Upload(
            requests(ingest_pb2.UploadHeader(**header), content, chunk), metadata=self.auth(tenant)
        )

    async def events(self, type_name: str) -> list[object]:
        return [e.decode() async for e in self.store.read_all() if e.type == type_name]


def requests(
    header: ingest_pb2.UploadHeader | None,
    content: bytes,
    chunk: int = 64 * 1024,
    end: int | None = -1,
) -> Iterable[ingest_pb2.UploadRequest]:
    """An upload's messages; `end` None leaves out the UploadEnd, -1 announces the real size."""
    if header is not None:
        yield ingest_pb2.UploadRequest(header=header)
    for i in range(0, len(content), chunk):
        yield ingest_pb2.UploadRequest(chunk=content[i : i + chunk])
    if end is not None:
        size = len(content) if end == -1 else end
        yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=size))


@pytest.fixture
async def stack(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[Stack]:
    names = unique_names()
    settings = Settings(
        data_dir=tmp_path / "data",
        grpc_port=0,
        operator_token=Secret(OPERATOR),
        nats_url=nats_server.url,
        nats_stream=names["stream_name"],
        nats_subject_prefix=names["subject_prefix"],
        shutdown_grace_seconds=1.0,
        max_document_bytes=2 * 1024 * 1024,
        max_metadata_entries=8,
    )
    ingest_store = await JetStreamEventStore.connect(nats_server.url, **names)
    search_store = await JetStreamEventStore.connect(nats_server.url, **names)
    blob_root = tmp_path / "blobs"
    runner = ProjectionRunner(search_store, DocumentRegistryProjection(), registry_path(settings))
    servers: list[ArchiveServer] = [
        build_ingest(
            settings, ingest_store, FilesystemBlobStore(blob_root), TenantRegistry(ingest_store)
        ),
        build_search(
            settings,
            search_store,
            FilesystemBlobStore(blob_root),
            TenantRegistry(search_store),
            runner,
        ),
    ]
    for server in servers:
        await server.start()
    following = asyncio.create_task(runner.run())
    ingest_channel = grpc.aio.insecure_channel(f"127.0.0.1:{servers[0].port}")
    search_channel = grpc.aio.insecure_channel(f"127.0.0.1:{servers[1].port}")
    admin = tenancy_pb2_grpc.TenantAdminStub(ingest_channel)
    tokens = {}
    for tenant in ("acme", "globex"):
        created = await admin.CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=common_pb2.TenantId(value=tenant)),
            metadata=(("authorization", f"Bearer {OPERATOR}"),),
        )
        tokens[tenant] = created.token.token
    try:
        yield Stack(
            ingest_store,
            blob_root,
            ingest_pb2_grpc.IngestStub(ingest_channel),
            search_pb2_grpc.SearchStub(search_channel),
            admin,
            tokens,
            f"127.0.0.1:{servers[0].port}",
        )
    finally:
        following.cancel()
        await ingest_channel.close()
        await search_channel.close()
        for server in servers:
            await server.stop(0)
        runner.close()
        await ingest_store.close()
        await search_store.close()


def stored_blobs(root: Path) -> list[Path]:
    """Complete blobs (and anything else) under the root, ignoring the temporary area."""
    return [p for p in root.rglob("*") if p.is_file() and "tmp" not in p.relative_to(root).parts]
