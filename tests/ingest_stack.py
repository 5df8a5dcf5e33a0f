"""A real ingest and search stack for integration tests: JetStream event store, filesystem
blob store, each service a real gRPC server, tenants `acme` and `globex`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
import pytest
from conftest import unique_names

from archive.blobstore import BlobStore, FilesystemBlobStore, PackBlobStore
from archive.blobstore.pack import RECORD_MAGIC as PACK_RECORD_MAGIC
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
    ingest_blobs: BlobStore  # the ingest server's own blob store, for tests to look behind it

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


# Both durable blob store adapters; each service opens the directory with its own store, as
# the separate processes do (search read-only where the adapter has that mode).
BLOB_STORES: dict[str, tuple[Callable[[Path], BlobStore], Callable[[Path], BlobStore]]] = {
    "pack": (PackBlobStore, lambda root: PackBlobStore(root, writable=False)),
    "filesystem": (FilesystemBlobStore, FilesystemBlobStore),
}


@pytest.fixture(params=list(BLOB_STORES))
async def stack(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    writer, reader = BLOB_STORES[request.param]
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
    ingest_blobs = writer(blob_root)
    runner = ProjectionRunner(search_store, DocumentRegistryProjection(), registry_path(settings))
    servers: list[ArchiveServer] = [
        build_ingest(settings, ingest_store, ingest_blobs, TenantRegistry(ingest_store)),
        build_search(
            settings,
            search_store,
            reader(blob_root),
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
            ingest_blobs,
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


def stored_blobs(root: Path) -> list[str]:
    """What is stored under the root, outside the temporary area: one entry per file, or per
    record for the pack store's segments (written records, committed or not)."""
    stored: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "tmp" in path.relative_to(root).parts:
            continue
        if path.suffix == ".pack":
            count = path.read_bytes().count(PACK_RECORD_MAGIC)
            stored.extend(f"{path}#{n}" for n in range(count))
        else:
            stored.append(str(path))
    return stored


def damage_stored_copy(root: Path, content: bytes, at: int) -> None:
    """Flip one bit of the stored copy of `content` (its own file, or inside a segment)."""
    for path in root.rglob("*"):
        if not path.is_file() or "tmp" in path.relative_to(root).parts:
            continue
        data = bytearray(path.read_bytes())
        start = data.find(content)
        if start >= 0:
            path.chmod(0o600)
            data[start + at] ^= 0x01
            path.write_bytes(bytes(data))
            return
    raise AssertionError("the content is not stored under the root")
