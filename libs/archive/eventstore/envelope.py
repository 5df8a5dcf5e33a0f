"""Wire form of a stored event: the archive.v1.EventEnvelope protobuf message."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from archive.eventstore.port import NewEvent, RecordedEvent
from archive.eventstore.streams import StreamName
from archive.v1.events_pb2 import EventEnvelope


def encode(stream: StreamName, version: int, event: NewEvent, recorded_at: datetime) -> bytes:
    ts = Timestamp()
    ts.FromDatetime(recorded_at)
    envelope = EventEnvelope(
        event_id=event.event_id,
        tenant=stream.tenant,
        stream=str(stream),
        type=event.type,
        version=version,
        recorded_at=ts,
        causation_id=event.causation_id,
        correlation_id=event.correlation_id,
        trace_context=dict(event.trace_context),
        data=event.data,
        metadata=dict(event.metadata),
    )
    return envelope.SerializeToString(deterministic=True)


def encode_all(
    stream: StreamName, first_version: int, events: Sequence[NewEvent], recorded_at: datetime
) -> list[bytes]:
    return [encode(stream, first_version + i, e, recorded_at) for i, e in enumerate(events)]


def decode(payload: bytes, position: int) -> RecordedEvent:
    envelope = EventEnvelope.FromString(payload)
    return RecordedEvent(
        stream=StreamName.parse(envelope.stream),
        version=envelope.version,
        position=position,
        event_id=envelope.event_id,
        type=envelope.type,
        data=envelope.data,
        recorded_at=envelope.recorded_at.ToDatetime(tzinfo=UTC),
        causation_id=envelope.causation_id,
        correlation_id=envelope.correlation_id,
        trace_context=dict(envelope.trace_context),
        metadata=dict(envelope.metadata),
    )
