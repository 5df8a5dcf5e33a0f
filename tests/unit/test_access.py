"""archive.access.record_access: the one way search and sealing journal a consultation."""

from __future__ import annotations

from archive.access import access_stream, record_access
from archive.eventstore.memory import InMemoryEventStore
from archive.grpcserver import current_correlation_id
from archive.tenancy import Principal
from archive.v1 import events_pb2


async def test_an_access_names_the_reader_in_the_documents_access_stream() -> None:
    store = InMemoryEventStore()
    reader = Principal("acme", "tok_reader")
    await record_access(store, reader, "doc-1", "evidence")

    [recorded] = [e async for e in store.read_stream(access_stream("acme", "doc-1"))]
    accessed = recorded.decode_as(events_pb2.DocumentAccessed)
    assert (accessed.tenant.value, accessed.document_id.value) == ("acme", "doc-1")
    assert (accessed.accessed_by, accessed.access_kind) == ("tok_reader", "evidence")
    assert accessed.accessed_at.seconds > 0
    # Like every event a caller causes: who (in the metadata too) and which call.
    assert recorded.metadata["principal"] == "tok_reader"
    assert recorded.correlation_id == current_correlation_id()
