"""Typed event store errors: callers catch what they mean."""

from __future__ import annotations


class EventStoreError(Exception):
    """Base class of every event store error."""


class WrongExpectedVersion(EventStoreError):
    """The stream is not at the version the caller expected: someone else appended first."""

    def __init__(self, stream: str, expected: object, actual: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.actual = actual
        shown = "no stream" if actual is None else f"version {actual}"
        super().__init__(f"stream {stream!r}: expected {expected}, but it is at {shown}")


class StreamNotFound(EventStoreError):
    def __init__(self, stream: str) -> None:
        self.stream = stream
        super().__init__(f"stream {stream!r} does not exist")


class EventTooLarge(EventStoreError):
    """One event is over the size limit, or an append carries too many events."""


class InvalidStreamName(EventStoreError):
    pass


class InvalidEvent(EventStoreError):
    """An event is malformed (empty type, bad id, duplicate id inside one append)."""


class StoreUnavailable(EventStoreError):
    """The store cannot be reached or did not answer in time; the append may or may not
    have happened, and retrying with the same event ids is safe (appends are idempotent)."""
