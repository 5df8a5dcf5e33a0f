"""The event store port: a small abstract interface that every adapter implements.

Semantics every adapter shares (checked by tests/conformance/test_eventstore_conformance.py):
- Stream versions start at 0; global positions start at 1 and only grow.
- `append` is all-or-nothing for the events it is given and is idempotent by event id: appending
  events that are already stored, at the same place, returns the original result.
- `read_all(after=p)` and `subscribe_all(after=p)` yield events whose position is > p, so a
  projection that stored the position it applied resumes with `after=applied`.
"""

from __future__ import annotations

import builtins
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, TypedDict, TypeVar, Unpack

from google.protobuf import symbol_database
from google.protobuf.message import Message

from archive.eventstore.errors import EventTooLarge, InvalidEvent, StreamNotFound
from archive.eventstore.streams import StreamFilter, StreamName

_M = TypeVar("_M", bound=Message)

# NATS' default max_payload is 1 MiB; the envelope and headers need room beside the data.
DEFAULT_MAX_EVENT_BYTES: Final = 512 * 1024
# JetStream atomic batches hold at most 1,000 messages; every adapter keeps the same limit.
MAX_EVENTS_PER_APPEND: Final = 1000


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    __str__ = __repr__


NO_STREAM: Final = _Sentinel("NO_STREAM")  # the stream must not exist yet
ANY: Final = _Sentinel("ANY")  # no concurrency check
ExpectedVersion = int | _Sentinel  # an int: the stream's last version must be exactly this


class _EventFields(TypedDict, total=False):
    """The fields of a NewEvent besides its type and data (NewEvent.of's keywords)."""

    event_id: str
    causation_id: str
    correlation_id: str
    trace_context: Mapping[str, str]
    metadata: Mapping[str, str]


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: bytes
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    causation_id: str = ""
    correlation_id: str = ""
    trace_context: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, message: Message, **kwargs: Unpack[_EventFields]) -> NewEvent:
        """Wrap a domain event message; its type is its protobuf full name."""
        return cls(
            type=message.DESCRIPTOR.full_name,
            data=message.SerializeToString(deterministic=True),
            **kwargs,
        )

    def size(self) -> int:
        return (
            len(self.data)
            + len(self.type)
            + sum(len(k) + len(v) for k, v in self.metadata.items())
            + sum(len(k) + len(v) for k, v in self.trace_context.items())
        )


@dataclass(frozen=True)
class RecordedEvent:
    stream: StreamName
    version: int
    position: int
    event_id: str
    type: str
    data: bytes
    recorded_at: datetime
    causation_id: str = ""
    correlation_id: str = ""
    trace_context: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def tenant(self) -> str:
        return self.stream.tenant

    def decode(self) -> Message:
        """The domain event as its protobuf message (its module must have been imported)."""
        cls = symbol_database.Default().GetSymbol(self.type)
        message = cls()
        message.ParseFromString(self.data)
        return message

    # `builtins.type`: the field `type` above shadows the builtin inside this class.
    def decode_as(self, cls: builtins.type[_M]) -> _M:
        """The domain event as the message type the caller expects; InvalidEvent when the
        stored event is of another type (a stream holding what it should not)."""
        if cls.DESCRIPTOR.full_name != self.type:
            raise InvalidEvent(
                f"event {self.event_id} of {self.stream} is a {self.type}, "
                f"not a {cls.DESCRIPTOR.full_name}"
            )
        message = cls()
        message.ParseFromString(self.data)
        return message


@dataclass(frozen=True)
class AppendResult:
    stream: StreamName
    # Version of the last event appended (the next expected version for the caller).
    version: int
    # Global positions of the first and last events appended.
    first_position: int
    last_position: int


class Subscription(ABC):
    """Catch-up then live stream of recorded events; iterate it, close it when done."""

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[RecordedEvent]: ...

    @abstractmethod
    async def close(self) -> None: ...

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class EventStore(ABC):
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES

    @abstractmethod
    async def append(
        self,
        stream: StreamName | str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        """Append events atomically. Raises WrongExpectedVersion, EventTooLarge, InvalidEvent,
        InvalidStreamName, StoreUnavailable."""

    @abstractmethod
    def read_stream(
        self, stream: StreamName | str, from_version: int = 0
    ) -> AsyncIterator[RecordedEvent]:
        """Events of one stream from a version, in order. Raises StreamNotFound."""

    @abstractmethod
    def read_all(
        self, after: int = 0, filter: StreamFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        """Every event with position > after, up to the end of the store when called."""

    @abstractmethod
    async def subscribe_all(
        self, after: int = 0, filter: StreamFilter | None = None
    ) -> Subscription:
        """Events with position > after: first those stored, then live ones, without a gap
        or a duplicate at the seam."""

    @abstractmethod
    async def last_position(self) -> int:
        """Position of the newest event in the store (0 when empty)."""

    async def first_event(self, stream: StreamName | str) -> RecordedEvent | None:
        """The first event of a stream (e.g. a document's deposit), or None if it has none.
        Adapters override it when they can answer in one round trip: a re-run of a bulk
        deposit asks this once per document."""
        try:
            async for recorded in self.read_stream(stream):
                return recorded
        except StreamNotFound:
            return None
        return None

    async def close(self) -> None:
        """Release connections; the default has nothing to release."""

    # ---- shared helpers for adapters ----

    def _validate(self, events: Sequence[NewEvent], expected_version: ExpectedVersion) -> None:
        if not events:
            raise InvalidEvent("an append needs at least one event")
        if len(events) > MAX_EVENTS_PER_APPEND:
            raise EventTooLarge(
                f"{len(events)} events in one append; at most {MAX_EVENTS_PER_APPEND}"
            )
        if isinstance(expected_version, int) and expected_version < 0:
            raise InvalidEvent(f"expected version {expected_version} is negative")
        seen: set[str] = set()
        for event in events:
            if not event.type:
                raise InvalidEvent("event type is empty")
            if not event.event_id or len(event.event_id) > 128:
                raise InvalidEvent(f"event id {event.event_id!r}: 1-128 characters expected")
            if event.event_id in seen:
                raise InvalidEvent(f"event id {event.event_id} appears twice in one append")
            seen.add(event.event_id)
            if event.size() > self.max_event_bytes:
                raise EventTooLarge(
                    f"event {event.event_id} of type {event.type} is {event.size()} bytes; "
                    f"the limit is {self.max_event_bytes} (store large content as a blob)"
                )

    async def _find_previous_append(
        self, stream: StreamName, events: Sequence[NewEvent], expected_version: ExpectedVersion
    ) -> AppendResult | None:
        """If these exact events were appended before at the expected place, the original
        result, else None. This makes retries after a lost acknowledgement safe forever, not
        only inside a deduplication window."""
        if expected_version is NO_STREAM:
            start = 0
        elif isinstance(expected_version, int):
            start = expected_version + 1
        else:
            start = None  # ANY: the events may be anywhere in the stream
        ids = [e.event_id for e in events]
        matched: list[RecordedEvent] = []
        try:
            async for recorded in self.read_stream(stream, start or 0):
                if not matched and start is None and recorded.event_id != ids[0]:
                    continue
                if recorded.event_id != ids[len(matched)]:
                    return None
                matched.append(recorded)
                if len(matched) == len(ids):
                    return AppendResult(
                        stream, matched[-1].version, matched[0].position, matched[-1].position
                    )
        except StreamNotFound:
            return None
        return None


async def first_event(store: EventStore, stream: StreamName | str) -> RecordedEvent | None:
    """The first event of a stream, or None if it has none (`EventStore.first_event`)."""
    return await store.first_event(stream)
