"""Document identity and the conversions ingest and search share."""

from __future__ import annotations

import uuid
from typing import Any, Final

from archive.eventstore import StreamName
from archive.grpcserver import InvalidArgument
from archive.v1 import events_pb2, ingest_pb2, search_pb2

DOCUMENT_CATEGORY = "document"
# Deposits with an idempotency key get a document id derived from (tenant, key), so a retry
# lands on the same stream and the store's NO_STREAM check makes it a replay, not a copy.
_IDEMPOTENCY_NAMESPACE = uuid.UUID("6f1f2b7e-8a55-4d55-9a8e-3c5d1f0b7a21")


def document_stream(tenant: str, document_id: str) -> StreamName:
    return StreamName(tenant, DOCUMENT_CATEGORY, document_id)


def new_document_id(tenant: str, idempotency_key: str) -> str:
    if idempotency_key:
        return str(uuid.uuid5(_IDEMPOTENCY_NAMESPACE, f"{tenant}\x00{idempotency_key}"))
    return str(uuid.uuid4())


def parse_document_id(value: str, field: str = "document_id.value") -> str:
    """Canonical text of a document id, or INVALID_ARGUMENT."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidArgument(
            field, "a document id is a UUID, e.g. from a deposit receipt"
        ) from None


# What a deposit receipt and a document's description both repeat from its DocumentIngested.
_DEPOSIT_FIELDS: Final = (
    "tenant",
    "document_id",
    "sha256",
    "sha512",
    "size_bytes",
    "file_name",
    "media_type",
    "format",
    "received_at",
)


def _deposit_fields(event: events_pb2.DocumentIngested) -> dict[str, Any]:
    return {name: getattr(event, name) for name in _DEPOSIT_FIELDS}


def receipt_from(
    event: events_pb2.DocumentIngested, position: int, replayed: bool
) -> ingest_pb2.DepositReceipt:
    return ingest_pb2.DepositReceipt(
        **_deposit_fields(event), event_position=position, replayed=replayed
    )


def info_from(event: events_pb2.DocumentIngested, position: int) -> search_pb2.DocumentInfo:
    return search_pb2.DocumentInfo(
        **_deposit_fields(event),
        metadata=event.metadata,
        document_class=event.document_class,
        scan_provenance=event.scan_provenance,
        event_position=position,
    )
