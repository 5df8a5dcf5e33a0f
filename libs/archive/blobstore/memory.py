"""In-memory blob store for unit tests: same semantics as the real adapters, no durability."""

from __future__ import annotations

from collections.abc import AsyncIterable

from archive.blobstore.errors import BlobNotFound, BlobTooLarge
from archive.blobstore.port import (
    DEFAULT_CHUNK_SIZE,
    BlobDigester,
    BlobInfo,
    BlobStore,
    BlobStream,
    validate_chunk_size,
    validate_key,
    validate_put_arguments,
)


class _MemoryBlobStream(BlobStream):
    def __init__(self, data: bytes, chunk_size: int) -> None:
        self._view: memoryview | None = memoryview(data)
        self._chunk_size = chunk_size

    async def __anext__(self) -> bytes:
        if not self._view:  # closed (None) or fully read (empty view)
            self._view = None
            raise StopAsyncIteration
        chunk = bytes(self._view[: self._chunk_size])
        self._view = self._view[self._chunk_size :]
        return chunk

    async def aclose(self) -> None:
        self._view = None


class InMemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self._blobs: dict[tuple[str, str], tuple[BlobInfo, bytes]] = {}

    def __len__(self) -> int:
        """Number of stored blobs, all tenants together (lets tests check nothing was left)."""
        return len(self._blobs)

    async def put(
        self,
        tenant: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        validate_put_arguments(tenant, expected_sha256, max_size)
        digester = BlobDigester()
        parts: list[bytes] = []
        async for chunk in chunks:
            data = bytes(chunk)  # a copy: the producer may reuse a bytearray it gave us
            if max_size is not None and digester.size + len(data) > max_size:
                raise BlobTooLarge(max_size)
            digester.update(data)
            parts.append(data)
        # Nothing is stored before this point, so every failure above leaves nothing behind.
        info = digester.result(tenant, expected_sha256)
        self._blobs.setdefault((tenant, info.sha256), (info, b"".join(parts)))
        return info

    async def open(
        self, tenant: str, sha256: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobStream:
        validate_chunk_size(chunk_size)
        _, data = self._get(tenant, sha256)
        return _MemoryBlobStream(data, chunk_size)

    async def stat(self, tenant: str, sha256: str) -> BlobInfo:
        info, _ = self._get(tenant, sha256)
        return info

    async def exists(self, tenant: str, sha256: str) -> bool:
        return validate_key(tenant, sha256) in self._blobs

    def _get(self, tenant: str, sha256: str) -> tuple[BlobInfo, bytes]:
        key = validate_key(tenant, sha256)
        try:
            return self._blobs[key]
        except KeyError:
            raise BlobNotFound(tenant, sha256) from None
