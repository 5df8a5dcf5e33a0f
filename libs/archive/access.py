"""Consultations are journalled: every read of a document (its metadata, its content, its
evidence) is a DocumentAccessed event, naming the token that read it, in the document's access
stream `<tenant>.access.<document id>`: not in its `document` stream, which only ingest appends
to (the stream-ownership rule, docs/architecture.md). Callers append it before they return
anything, so an access that cannot be recorded is refused and the journal never misses one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from google.protobuf.timestamp_pb2 import Timestamp

from archive.eventstore import ANY, EventStore, NewEvent, StreamName
from archive.grpcserver import current_correlation_id
from archive.tenancy import Principal
from archive.v1 import common_pb2, events_pb2

ACCESS_CATEGORY: Final = "access"


def access_stream(tenant: str, document_id: str) -> StreamName:
    return StreamName(tenant, ACCESS_CATEGORY, document_id)


async def record_access(
    store: EventStore, principal: Principal, document_id: str, kind: str
) -> None:
    """Append that `principal` read `kind` ("metadata", "content", "evidence") of one of its
    tenant's documents."""
    now = Timestamp()
    now.FromDatetime(datetime.now(UTC))
    event = events_pb2.DocumentAccessed(
        tenant=common_pb2.TenantId(value=principal.tenant),
        document_id=common_pb2.DocumentId(value=document_id),
        accessed_by=principal.token_id,
        access_kind=kind,
        accessed_at=now,
    )
    recorded = NewEvent.of(
        event, correlation_id=current_correlation_id(), metadata={"principal": principal.token_id}
    )
    await store.append(access_stream(principal.tenant, document_id), [recorded], ANY)
