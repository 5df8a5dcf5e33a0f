"""Choose the event store adapter from configuration (ARCHIVE_EVENT_STORE)."""

from __future__ import annotations

from archive.config import Settings
from archive.eventstore.port import EventStore


async def open_event_store(settings: Settings) -> EventStore:
    if settings.event_store == "memory":
        from archive.eventstore.memory import InMemoryEventStore

        return InMemoryEventStore()
    from archive.eventstore.jetstream import JetStreamEventStore

    return await JetStreamEventStore.connect(
        settings.nats_url,
        stream_name=settings.nats_stream,
        subject_prefix=settings.nats_subject_prefix,
        replicas=settings.nats_replicas,
    )
