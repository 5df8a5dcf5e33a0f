"""The blob store port: document bytes, content-addressed per tenant.

Semantics every adapter shares (checked by tests/conformance/test_blobstore_conformance.py):
- A blob is addressed by (tenant, lowercase SHA-256 hex). Tenants never see each other's blobs:
  asking for another tenant's digest is `BlobNotFound`, not a permission error.
- `put` streams the bytes once, computing SHA-256, SHA-512 and the size on the way, and is
  all-or-nothing: on a digest mismatch, an oversized stream, a failing chunk iterator or a
  cancellation nothing is left behind, and a reader never sees a partial blob.
- `put` is idempotent: the same content twice (even concurrently) gives the same `BlobInfo`.
- `stat` returns both digests without rehashing the content.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

from archive.blobstore.errors import BlobDigestMismatch, InvalidBlobKey

DEFAULT_CHUNK_SIZE: Final = 64 * 1024

# Keys end up as path components (filesystem) and object names (S3): a strict alphabet rules
# out traversal ("..", "/"), case-folding clashes and odd characters in one place.
_TENANT_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SHA256_RE: Final = re.compile(r"[0-9a-f]{64}")


def validate_tenant(tenant: str) -> str:
    """Return `tenant` if it is a valid tenant name, else raise `InvalidBlobKey`."""
    # fullmatch, not match with "$": "$" also matches before a trailing newline.
    if not isinstance(tenant, str) or _TENANT_RE.fullmatch(tenant) is None:
        raise InvalidBlobKey(
            f"invalid tenant name {tenant!r}: must match [a-z0-9][a-z0-9-]{{0,62}}"
        )
    return tenant


def validate_sha256(sha256: str) -> str:
    """Return `sha256` if it is 64 lowercase hex digits, else raise `InvalidBlobKey`."""
    if not isinstance(sha256, str) or _SHA256_RE.fullmatch(sha256) is None:
        raise InvalidBlobKey(f"invalid sha256 {sha256!r}: must be 64 lowercase hex digits")
    return sha256


def validate_key(tenant: str, sha256: str) -> tuple[str, str]:
    """Return the blob key (tenant, sha256) if both parts are valid, else raise
    `InvalidBlobKey`."""
    return validate_tenant(tenant), validate_sha256(sha256)


def validate_put_arguments(tenant: str, expected_sha256: str | None, max_size: int | None) -> None:
    """Check `put`'s arguments before any byte is read."""
    validate_tenant(tenant)
    if expected_sha256 is not None:
        validate_sha256(expected_sha256)
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")


def validate_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")


@dataclass(frozen=True, slots=True)
class BlobInfo:
    tenant: str
    sha256: str  # lowercase hex, the address
    sha512: str  # lowercase hex, kept for fixity checks that want a second, stronger digest
    size: int


class BlobDigester:
    """SHA-256, SHA-512 and size of a stream, fed chunk by chunk (both digests in one pass)."""

    __slots__ = ("_sha256", "_sha512", "size")

    def __init__(self) -> None:
        self._sha256 = hashlib.sha256()
        self._sha512 = hashlib.sha512()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        self._sha512.update(chunk)
        self.size += len(chunk)

    def result(self, tenant: str, expected_sha256: str | None = None) -> BlobInfo:
        """The final `BlobInfo`; `BlobDigestMismatch` if it is not the announced digest."""
        info = BlobInfo(tenant, self._sha256.hexdigest(), self._sha512.hexdigest(), self.size)
        if expected_sha256 is not None and info.sha256 != expected_sha256:
            raise BlobDigestMismatch(expected_sha256, info.sha256)
        return info


class BlobStream(AsyncIterator[bytes]):
    """The content of one blob, as chunks of at most the requested size.

    It holds an open resource: iterate to the end, or close it with `aclose()` or
    `async with`, e.g. `async with await store.open(t, h) as stream: async for chunk in stream`.
    """

    @abstractmethod
    async def __anext__(self) -> bytes: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Release the underlying resource; further iteration ends at once. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class BlobStore(ABC):
    """Content-addressed, write-once storage of document bytes, partitioned by tenant."""

    @abstractmethod
    async def put(
        self,
        tenant: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_sha256: str | None = None,
        max_size: int | None = None,
    ) -> BlobInfo:
        """Store the streamed bytes under (tenant, their SHA-256) and return their `BlobInfo`.

        Raises `InvalidBlobKey` (before reading anything), `BlobDigestMismatch` if
        `expected_sha256` is given and differs, `BlobTooLarge` as soon as more than `max_size`
        bytes arrived. In every failure case nothing is stored. Storing content that is already
        there succeeds and returns the same `BlobInfo`.
        """

    @abstractmethod
    async def open(
        self, tenant: str, sha256: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> BlobStream:
        """Open a blob for streaming. `BlobNotFound` is raised here, not at the first chunk."""

    @abstractmethod
    async def stat(self, tenant: str, sha256: str) -> BlobInfo:
        """Digests and size of a stored blob, without reading it; `BlobNotFound` if absent."""

    @abstractmethod
    async def exists(self, tenant: str, sha256: str) -> bool:
        """Whether the blob is stored completely (a put still in progress does not count)."""
