"""In-memory event store, for unit tests only: nothing survives the process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

from archive.eventstore.errors import StreamNotFound, WrongExpectedVersion
from archive.eventstore.port import (
    NO_STREAM,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Subscription,
)
from archive.eventstore.streams import StreamFilter, StreamName


class InMemoryEventStore(EventStore):
    def __init__(self) -> None:
        self._all: list[RecordedEvent] = []
        self._streams: dict[StreamName, list[RecordedEvent]] = {}
        self._event_ids: set[str] = set()
        self._appended = asyncio.Condition()

    async def append(
        self,
        stream: StreamName | str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        name = StreamName.of(stream)
        self._validate(events, expected_version)
        existing = self._streams.get(name, [])
        current = existing[-1].version if existing else None
        conflict = (expected_version is NO_STREAM and current is not None) or (
            isinstance(expected_version, int) and expected_version != current
        )
        if conflict or events[0].event_id in self._event_ids:
            previous = await self._find_previous_append(name, events, expected_version)
            if previous is not None:
                return previous
            if conflict:
                raise WrongExpectedVersion(str(name), expected_version, current)
        now = datetime.now(UTC)
        next_version = 0 if current is None else current + 1
        recorded = [
            RecordedEvent(
                stream=name,
                version=next_version + i,
                position=len(self._all) + 1 + i,
                event_id=e.event_id,
                type=e.type,
                data=e.data,
                recorded_at=now,
                causation_id=e.causation_id,
                correlation_id=e.correlation_id,
                trace_context=dict(e.trace_context),
                metadata=dict(e.metadata),
            )
            for i, e in enumerate(events)
        ]
        self._all.extend(recorded)
        self._streams.setdefault(name, []).extend(recorded)
        self._event_ids.update(e.event_id for e in events)
        async with self._appended:
            self._appended.notify_all()
        return AppendResult(name, recorded[-1].version, recorded[0].position, recorded[-1].position)

    async def read_stream(
        self, stream: StreamName | str, from_version: int = 0
    ) -> AsyncIterator[RecordedEvent]:
        name = StreamName.of(stream)
        if name not in self._streams:
            raise StreamNotFound(str(name))
        for event in list(self._streams[name][from_version:]):
            yield event

    async def read_all(
        self, after: int = 0, filter: StreamFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        for event in self._all[after : len(self._all)]:
            if filter is None or filter.matches(event.stream):
                yield event

    async def subscribe_all(
        self, after: int = 0, filter: StreamFilter | None = None
    ) -> Subscription:
        return _InMemorySubscription(self, after, filter)

    async def last_position(self) -> int:
        return len(self._all)


class _InMemorySubscription(Subscription):
    def __init__(self, store: InMemoryEventStore, after: int, filter: StreamFilter | None) -> None:
        self._store = store
        self._next_index = after  # index in _all of the next event to consider
        self._filter = filter
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        store = self._store
        while not self._closed:
            if self._next_index < len(store._all):
                event = store._all[self._next_index]
                self._next_index += 1
                if self._filter is None or self._filter.matches(event.stream):
                    yield event
                continue
            async with store._appended:
                await store._appended.wait_for(
                    lambda: self._closed or self._next_index < len(store._all)
                )

    async def close(self) -> None:
        self._closed = True
        async with self._store._appended:
            self._store._appended.notify_all()
