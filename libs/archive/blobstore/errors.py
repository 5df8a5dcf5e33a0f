"""Typed blob store errors: callers catch what they mean."""

from __future__ import annotations


class BlobStoreError(Exception):
    """Base class of every blob store error."""


class BlobNotFound(BlobStoreError):
    """No blob with this digest for this tenant (another tenant's blob is not found either)."""

    def __init__(self, tenant: str, sha256: str) -> None:
        self.tenant = tenant
        self.sha256 = sha256
        super().__init__(f"no blob {sha256} for tenant {tenant!r}")


class BlobDigestMismatch(BlobStoreError):
    """The bytes received do not hash to the SHA-256 the caller announced; nothing was stored."""

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"expected sha256 {expected}, received content hashes to {actual}")


class BlobTooLarge(BlobStoreError):
    """The stream went over the size limit; nothing was stored."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        super().__init__(f"blob is larger than the limit of {max_size} bytes")


class InvalidBlobKey(BlobStoreError, ValueError):
    """A tenant name or a digest is malformed. Keys become path components and object names,
    so anything outside the allowed alphabet is refused before it gets near a path."""
