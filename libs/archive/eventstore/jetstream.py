"""NATS JetStream adapter, the default event store.

One JetStream stream holds every event; subject `events.<tenant>.<category>.<id>` names the
event's stream. The engine enforces what we promise:
- `deny_delete` / `deny_purge`: history cannot be rewritten through the API;
- `Nats-Expected-Last-Subject-Sequence`: optimistic concurrency per stream;
- `Nats-Msg-Id` = event id: the server drops a retried event inside its duplicate window, and
  `_find_previous_append` recognises older retries;
- atomic batches (`allow_atomic`, server 2.12+): a multi-event append is stored whole or not.

Durability: a publish is acknowledged once the server has written it to its store file, so an
acknowledged append survives `kill -9` of the server. Surviving a power loss on one node needs
`sync_interval: always` (archive.natsserver.SYNC_ALWAYS) or replicas=3 (see docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RawStreamMsg,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from archive.eventstore import envelope
from archive.eventstore.errors import (
    EventStoreError,
    StoreUnavailable,
    StreamNotFound,
    WrongExpectedVersion,
)
from archive.eventstore.port import (
    ANY,
    NO_STREAM,
    AppendResult,
    EventStore,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    Subscription,
)
from archive.eventstore.streams import StreamFilter, StreamName

DEFAULT_STREAM = "ARCHIVE_EVENTS"
DEFAULT_PREFIX = "events"
VERSION_HEADER = "Archive-Version"
# JetStream API error codes that mean "the subject moved on": a concurrent append won.
_WRONG_LAST_SEQUENCE = {10071, 10164}
_BATCH_DUPLICATE_MSG_ID = 10201
_TAIL_CACHE_SIZE = 100_000
_ANY_RETRIES = 100


class JetStreamEventStore(EventStore):
    def __init__(
        self,
        nc: NATS,
        *,
        stream_name: str = DEFAULT_STREAM,
        subject_prefix: str = DEFAULT_PREFIX,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        request_timeout: float = 5.0,
        fetch_batch: int = 1000,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=request_timeout)
        self._stream_name = stream_name
        self._prefix = subject_prefix
        self._replicas = replicas
        self._duplicate_window = duplicate_window
        self._timeout = request_timeout
        self._fetch_batch = fetch_batch
        # subject -> (last version, last sequence): saves a round trip per append for the
        # usual single writer; a stale entry only costs a retry, never correctness.
        self._tails: OrderedDict[str, tuple[int, int]] = OrderedDict()

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> JetStreamEventStore:
        from archive.bus import connect

        store = cls(await connect(url, name="event-store"), **kwargs)
        store._owns_connection = True
        await store.ensure_stream()
        return store

    _owns_connection = False

    async def close(self) -> None:
        if self._owns_connection:
            from archive.bus import close

            await close(self._nc)

    # ---- setup ----

    def stream_config(self) -> StreamConfig:
        return StreamConfig(
            name=self._stream_name,
            subjects=[f"{self._prefix}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,
            num_replicas=self._replicas,
            duplicate_window=self._duplicate_window,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
            allow_atomic=True,
        )

    async def ensure_stream(self) -> None:
        """Create the stream, or check an existing one keeps history immutable."""
        try:
            info = await self._js.stream_info(self._stream_name)
        except nats.js.errors.NotFoundError:
            await self._js.add_stream(self.stream_config())
            return
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise StoreUnavailable(f"JetStream not available: {exc!r}") from exc
        config = info.config
        if not (config.deny_delete and config.deny_purge and config.allow_atomic):
            raise EventStoreError(
                f"stream {self._stream_name} exists without deny_delete, deny_purge and "
                "allow_atomic: refusing to use a stream whose history can be rewritten"
            )

    # ---- append ----

    def subject(self, stream: StreamName) -> str:
        return f"{self._prefix}.{stream}"

    async def append(
        self,
        stream: StreamName | str,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
    ) -> AppendResult:
        name = StreamName.of(stream)
        self._validate(events, expected_version)
        subject = self.subject(name)
        cached = subject in self._tails
        # A new stream needs no look-up: "expected last subject sequence 0" makes the server
        # itself check that the subject is empty.
        presumed_new = expected_version is NO_STREAM and not cached
        for _attempt in range(_ANY_RETRIES):
            if presumed_new:
                presumed_new = False
                tail = None
            else:
                tail = self._tails.get(subject) if cached else await self._fetch_tail(subject)
            current = tail[0] if tail else None
            if not _matches(expected_version, current):
                if cached:  # our cache may be behind another writer: look before judging
                    cached = False
                    continue
                return await self._conflict(name, events, expected_version, current)
            next_version = 0 if current is None else current + 1
            reply = await self._publish(subject, name, events, next_version, tail[1] if tail else 0)
            error = reply.get("error")
            if error is None:
                if reply.get("duplicate"):
                    # The server already holds an event with this id (a retried append).
                    self._tails.pop(subject, None)
                    return await self._conflict(name, events, expected_version, current)
                last_seq = int(reply["seq"])
                self._remember(subject, next_version + len(events) - 1, last_seq)
                return AppendResult(
                    name, next_version + len(events) - 1, last_seq - len(events) + 1, last_seq
                )
            code = error.get("err_code")
            self._tails.pop(subject, None)
            cached = False
            if code in _WRONG_LAST_SEQUENCE or code == _BATCH_DUPLICATE_MSG_ID:
                if expected_version is ANY and code != _BATCH_DUPLICATE_MSG_ID:
                    await asyncio.sleep(0.001 * _attempt)
                    continue
                # Re-read the tail so the error reports where the stream really is.
                now = await self._fetch_tail(subject)
                if code != _BATCH_DUPLICATE_MSG_ID and _matches(
                    expected_version, now[0] if now else None
                ):
                    continue
                return await self._conflict(name, events, expected_version, now[0] if now else None)
            raise EventStoreError(
                f"JetStream refused the append to {name}: {error.get('description')} (code {code})"
            )
        raise StoreUnavailable(f"append to {name} kept racing other writers; try again")

    async def _conflict(
        self,
        name: StreamName,
        events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
        current: int | None,
    ) -> AppendResult:
        previous = await self._find_previous_append(name, events, expected_version)
        if previous is not None:
            return previous
        raise WrongExpectedVersion(str(name), expected_version, current)

    def _remember(self, subject: str, version: int, seq: int) -> None:
        self._tails[subject] = (version, seq)
        self._tails.move_to_end(subject)
        if len(self._tails) > _TAIL_CACHE_SIZE:
            self._tails.popitem(last=False)

    async def _direct_get(self, subject: str, *, first: bool = False) -> RawStreamMsg | None:
        """The subject's last (or first) message by direct get, or None if it has none."""
        try:
            if first:
                return await self._js.get_msg(
                    self._stream_name, seq=1, subject=subject, direct=True, next=True
                )
            return await self._js.get_last_msg(self._stream_name, subject, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise StoreUnavailable(f"JetStream did not answer: {exc!r}") from exc
        except nats.errors.ConnectionClosedError as exc:
            raise StoreUnavailable("NATS connection is closed") from exc

    async def _fetch_tail(self, subject: str) -> tuple[int, int] | None:
        """(version, sequence) of the subject's last message, or None if it has none."""
        msg = await self._direct_get(subject)
        if msg is None:
            return None
        headers = msg.headers or {}
        if VERSION_HEADER in headers:
            version = int(headers[VERSION_HEADER])
        else:
            version = envelope.decode(msg.data or b"", msg.seq or 0).version
        assert msg.seq is not None
        return version, msg.seq

    async def _publish(
        self,
        subject: str,
        name: StreamName,
        events: Sequence[NewEvent],
        first_version: int,
        expected_last_seq: int,
    ) -> dict[str, Any]:
        now = datetime.now(UTC)
        payloads = envelope.encode_all(name, first_version, events, now)
        batch_id = uuid.uuid4().hex if len(events) > 1 else None
        try:
            for i, (event, payload) in enumerate(zip(events, payloads, strict=True)):
                headers = {
                    "Nats-Msg-Id": event.event_id,
                    VERSION_HEADER: str(first_version + i),
                }
                if i == 0:
                    headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_last_seq)
                if batch_id is not None:
                    headers["Nats-Batch-Id"] = batch_id
                    headers["Nats-Batch-Sequence"] = str(i + 1)
                if i < len(events) - 1:
                    await self._nc.publish(subject, payload, headers=headers)
                    continue
                if batch_id is not None:
                    headers["Nats-Batch-Commit"] = "1"
                reply = await self._nc.request(
                    subject, payload, timeout=self._timeout, headers=headers
                )
                ack: dict[str, Any] = json.loads(reply.data)
                return ack
        except nats.errors.NoRespondersError as exc:
            raise StoreUnavailable(f"no JetStream stream listens on {subject}") from exc
        except (TimeoutError, nats.errors.TimeoutError) as exc:
            raise StoreUnavailable(
                f"no acknowledgement for the append to {name} within {self._timeout}s; "
                "retrying with the same event ids is safe"
            ) from exc
        except (nats.errors.ConnectionClosedError, nats.errors.OutboundBufferLimitError) as exc:
            raise StoreUnavailable(f"NATS connection unusable: {exc!r}") from exc
        raise AssertionError("unreachable: events is never empty")

    # ---- reads ----

    async def read_stream(
        self, stream: StreamName | str, from_version: int = 0
    ) -> AsyncIterator[RecordedEvent]:
        name = StreamName.of(stream)
        subject = self.subject(name)
        tail = await self._fetch_tail(subject)
        if tail is None:
            raise StreamNotFound(str(name))
        last_version, last_seq = tail
        if from_version > last_version:
            return
        async for event in self._replay(subject, 0, stop_at=last_seq):
            if event.version >= from_version:
                yield event

    async def first_event(self, stream: StreamName | str) -> RecordedEvent | None:
        # One direct get (the subject's first message from sequence 1) instead of a consumer.
        msg = await self._direct_get(self.subject(StreamName.of(stream)), first=True)
        if msg is None:
            return None
        assert msg.seq is not None
        return envelope.decode(msg.data or b"", msg.seq)

    async def read_all(
        self, after: int = 0, filter: StreamFilter | None = None
    ) -> AsyncIterator[RecordedEvent]:
        last = await self.last_position()
        if last <= after:
            return
        async for event in self._replay(self._filter_subject(filter), after, stop_at=last):
            yield event

    async def subscribe_all(
        self, after: int = 0, filter: StreamFilter | None = None
    ) -> Subscription:
        return _JetStreamSubscription(self, self._filter_subject(filter), after)

    async def last_position(self) -> int:
        try:
            info = await self._js.stream_info(self._stream_name)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise StoreUnavailable(f"JetStream did not answer: {exc!r}") from exc
        return info.state.last_seq

    def _filter_subject(self, filter: StreamFilter | None) -> str:
        if filter is None:
            return f"{self._prefix}.>"
        return f"{self._prefix}.{filter.tenant or '*'}.{filter.category or '*'}.*"

    async def _replay(
        self, subject: str, after: int, stop_at: int | None
    ) -> AsyncIterator[RecordedEvent]:
        """Events on `subject` with position > after; stops after `stop_at` (or at the end
        of what is stored when it is reached), or runs live when stop_at is None."""
        reader = _PullReader(self, subject, after)
        try:
            async for event in reader.events(stop_at):
                yield event
        finally:
            await reader.close()


def _matches(expected: ExpectedVersion, current: int | None) -> bool:
    if expected is ANY:
        return True
    if expected is NO_STREAM:
        return current is None
    return current == expected


class _PullReader:
    """An ephemeral, unacknowledged pull consumer from a start position. If the consumer
    vanishes (server restart), it is recreated from the last position delivered, so the
    caller sees neither a gap nor a duplicate."""

    def __init__(self, store: JetStreamEventStore, subject: str, after: int) -> None:
        self._store = store
        self._subject = subject
        self._after = after
        self._sub: Any = None
        self._closed = False

    async def _open(self) -> None:
        store = self._store
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self._after + 1,
            filter_subject=self._subject,
            mem_storage=True,
            inactive_threshold=60.0,
            max_waiting=16,
        )
        self._sub = await store._js.pull_subscribe(
            self._subject, stream=store._stream_name, config=config
        )

    async def events(self, stop_at: int | None, poll: float = 1.0) -> AsyncIterator[RecordedEvent]:
        store = self._store
        while (stop_at is None or self._after < stop_at) and not self._closed:
            if self._sub is None:
                try:
                    await self._open()
                except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
                    if stop_at is not None:
                        raise StoreUnavailable(f"JetStream did not answer: {exc!r}") from exc
                    await asyncio.sleep(poll)
                    continue
            try:
                msgs: list[Msg] = await self._sub.fetch(store._fetch_batch, timeout=poll)
            except (TimeoutError, nats.errors.TimeoutError):
                if not await self._consumer_alive():
                    await self._drop()  # lost with a server restart: recreate where we were
                    continue
                if stop_at is not None and await self._caught_up(stop_at):
                    return
                continue
            except nats.js.errors.NotFoundError:
                await self._drop()  # the consumer is gone: recreate it where we were
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                if self._closed:
                    return  # closed under our feet by Subscription.close()
                if stop_at is not None:
                    raise StoreUnavailable(f"JetStream read failed: {exc!r}") from exc
                # A live subscription rides out a server restart: retry from where it was.
                await self._drop()
                await asyncio.sleep(poll)
                continue
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq <= self._after:
                    continue  # defensive: never hand out a position twice
                self._after = seq
                yield envelope.decode(msg.data, seq)
                if stop_at is not None and seq >= stop_at:
                    return
            if stop_at is not None and msgs and msgs[-1].metadata.num_pending == 0:
                return

    async def _consumer_alive(self) -> bool:
        try:
            await self._sub.consumer_info()
        except nats.js.errors.NotFoundError:
            return False
        except (nats.errors.Error, nats.js.errors.Error):
            return False
        return True

    async def _caught_up(self, stop_at: int) -> bool:
        try:
            info = await self._sub.consumer_info()
        except (nats.errors.Error, nats.js.errors.Error):
            return False
        return info.num_pending == 0 or self._after >= stop_at

    async def close(self) -> None:
        self._closed = True
        await self._drop()

    async def _drop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception:
                pass


class _JetStreamSubscription(Subscription):
    def __init__(self, store: JetStreamEventStore, subject: str, after: int) -> None:
        self._reader = _PullReader(store, subject, after)

    async def __aiter__(self) -> AsyncIterator[RecordedEvent]:
        async for event in self._reader.events(stop_at=None, poll=0.5):
            yield event

    async def close(self) -> None:
        await self._reader.close()
