"""Ingest.FindDeposits: the receipts of earlier deposits by idempotency key, so that a re-run
of a bulk deposit sends only what is new.

A key names its document (`new_document_id` derives the id from tenant and key), so each
lookup is one read of that document's first event, never a scan; the tenant is the caller's,
so another tenant's deposits cannot be probed."""

from __future__ import annotations

import asyncio
from typing import Final

from archive.document_errors import IdempotencyKeyReused
from archive.documents import document_stream, new_document_id, receipt_from
from archive.eventstore import EventStore
from archive.grpcserver import current_correlation_id
from archive.grpcserver.errors import status_proto_for
from archive.v1 import events_pb2, ingest_pb2

# Lookups of one call in flight at once: enough to hide the store's round trip.
CONCURRENT_LOOKUPS: Final = 64


async def find_deposits(
    store: EventStore, tenant: str, keys: list[ingest_pb2.DepositKey]
) -> ingest_pb2.FindDepositsResponse:
    gate = asyncio.Semaphore(CONCURRENT_LOOKUPS)

    async def one(key: ingest_pb2.DepositKey) -> ingest_pb2.FoundDeposit:
        async with gate:
            return await _find_one(store, tenant, key)

    found = await asyncio.gather(*(one(key) for key in keys))
    return ingest_pb2.FindDepositsResponse(deposits=found)


async def _find_one(
    store: EventStore, tenant: str, key: ingest_pb2.DepositKey
) -> ingest_pb2.FoundDeposit:
    document_id = new_document_id(tenant, key.idempotency_key)
    original = await store.first_event(document_stream(tenant, document_id))
    if original is None:
        return ingest_pb2.FoundDeposit(absent=True)
    event = original.decode_as(events_pb2.DocumentIngested)
    if event.sha256.value.hex() != key.sha256_hex:
        error = IdempotencyKeyReused(document_id)
        return ingest_pb2.FoundDeposit(error=status_proto_for(error, current_correlation_id()))
    return ingest_pb2.FoundDeposit(receipt=receipt_from(event, original.position, replayed=True))
