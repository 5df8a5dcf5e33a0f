"""Event store port, its typed errors and its adapters (chosen by configuration)."""

from archive.eventstore.errors import (
    EventStoreError,
    EventTooLarge,
    InvalidEvent,
    InvalidStreamName,
    StoreUnavailable,
    StreamNotFound,
    WrongExpectedVersion,
)
from archive.eventstore.port import (
    ANY,
    MAX_EVENTS_PER_APPEND,
    NO_STREAM,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Subscription,
    first_event,
)
from archive.eventstore.streams import SYSTEM_TENANT, StreamFilter, StreamName

__all__ = [
    "ANY",
    "MAX_EVENTS_PER_APPEND",
    "NO_STREAM",
    "SYSTEM_TENANT",
    "AppendResult",
    "EventStore",
    "EventStoreError",
    "EventTooLarge",
    "ExpectedVersion",
    "InvalidEvent",
    "InvalidStreamName",
    "NewEvent",
    "RecordedEvent",
    "StoreUnavailable",
    "StreamFilter",
    "StreamName",
    "StreamNotFound",
    "Subscription",
    "WrongExpectedVersion",
    "first_event",
]
