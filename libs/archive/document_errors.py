"""What can go wrong with a document, as the services that hold documents raise it.

The gRPC status of each is in archive.grpcserver.errors.ERROR_TABLE; these classes know
nothing of gRPC."""

from __future__ import annotations


class DocumentNotFound(LookupError):
    """No document with this id for the caller's tenant. Another tenant's document answers
    exactly the same, so ids cannot be probed across tenants."""

    def __init__(self, document_id: str) -> None:
        self.document_id = document_id
        super().__init__(f"document {document_id} not found")


class ContentDamaged(Exception):
    """A registered document's content is missing or fails its digest: the archive's own
    failure, reported loudly (and found by integrity audits)."""

    def __init__(self, document_id: str, what: str) -> None:
        self.document_id = document_id
        super().__init__(f"document {document_id}: {what}; the operator has been alerted")


class IdempotencyKeyReused(Exception):
    """A deposit reused an idempotency key of an earlier deposit with different content."""

    def __init__(self, document_id: str) -> None:
        self.document_id = document_id
        super().__init__(
            f"this idempotency key was already used for document {document_id} with different "
            "content; use a new key for a new document"
        )
