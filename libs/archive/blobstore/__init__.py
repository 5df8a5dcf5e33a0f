"""Blob store port for document bytes (content-addressed per tenant), its errors and adapters."""

from archive.blobstore.errors import (
    BlobDigestMismatch,
    BlobNotFound,
    BlobStoreError,
    BlobTooLarge,
    InvalidBlobKey,
)
from archive.blobstore.filesystem import FilesystemBlobStore
from archive.blobstore.memory import InMemoryBlobStore
from archive.blobstore.pack import PackBlobStore
from archive.blobstore.port import (
    DEFAULT_CHUNK_SIZE,
    BlobDigester,
    BlobInfo,
    BlobStore,
    BlobStream,
    validate_sha256,
    validate_tenant,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BlobDigestMismatch",
    "BlobDigester",
    "BlobInfo",
    "BlobNotFound",
    "BlobStore",
    "BlobStoreError",
    "BlobStream",
    "BlobTooLarge",
    "FilesystemBlobStore",
    "InMemoryBlobStore",
    "InvalidBlobKey",
    "PackBlobStore",
    "validate_sha256",
    "validate_tenant",
]
