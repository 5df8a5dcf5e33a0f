"""The event store contract: every adapter must pass every test here."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from conftest import unique_names

from archive.eventstore import (
    ANY,
    NO_STREAM,
    EventStore,
    EventTooLarge,
    InvalidEvent,
    InvalidStreamName,
    NewEvent,
    RecordedEvent,
    StreamFilter,
    StreamName,
    StreamNotFound,
    WrongExpectedVersion,
)
from archive.eventstore.jetstream import JetStreamEventStore
from archive.eventstore.memory import InMemoryEventStore
from archive.natsserver import NatsServer
from archive.v1 import common_pb2, events_pb2

StoreFactory = Callable[[], Awaitable[EventStore]]


@pytest.fixture(params=["memory", pytest.param("jetstream", marks=pytest.mark.integration)])
async def store_factory(
    request: pytest.FixtureRequest,
) -> AsyncIterator[StoreFactory]:
    """Makes stores that share one underlying store (several clients of it), so tests can
    race independent writers."""
    opened: list[EventStore] = []
    if request.param == "memory":
        shared = InMemoryEventStore()

        async def make() -> EventStore:
            return shared
    else:
        server: NatsServer = request.getfixturevalue("nats_server")
        names = unique_names()

        async def make() -> EventStore:
            store = await JetStreamEventStore.connect(server.url, **names)
            opened.append(store)
            return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(store_factory: StoreFactory) -> EventStore:
    return await store_factory()


def stream(tenant: str = "acme", category: str = "document") -> StreamName:
    return StreamName(tenant, category, uuid.uuid4().hex)


def events(n: int, prefix: str = "e") -> list[NewEvent]:
    return [NewEvent(type="test.Happened", data=f"{prefix}{i}".encode()) for i in range(n)]


async def collect(it: AsyncIterator[RecordedEvent]) -> list[RecordedEvent]:
    return [e async for e in it]


async def test_first_append_creates_stream_at_version_zero(store: EventStore) -> None:
    s = stream()
    result = await store.append(s, events(1), NO_STREAM)
    assert result.version == 0
    assert result.first_position == result.last_position >= 1
    [recorded] = await collect(store.read_stream(s))
    assert (recorded.stream, recorded.version, recorded.data) == (s, 0, b"e0")
    assert recorded.position == result.last_position


async def test_multi_event_append_gets_consecutive_versions_and_positions(
    store: EventStore,
) -> None:
    s = stream()
    result = await store.append(s, events(5), NO_STREAM)
    assert result.version == 4
    assert result.last_position - result.first_position == 4
    recorded = await collect(store.read_stream(s))
    assert [e.version for e in recorded] == [0, 1, 2, 3, 4]
    assert [e.position for e in recorded] == list(
        range(result.first_position, result.last_position + 1)
    )
    tail = await collect(store.read_stream(s, from_version=3))
    assert [e.data for e in tail] == [b"e3", b"e4"]
    assert await collect(store.read_stream(s, from_version=5)) == []


async def test_exact_expected_version_appends_in_sequence(store: EventStore) -> None:
    s = stream()
    await store.append(s, events(2), NO_STREAM)
    result = await store.append(s, events(1, "f"), 1)
    assert result.version == 2
    result = await store.append(s, events(2, "g"), 2)
    assert result.version == 4
    assert [e.data for e in await collect(store.read_stream(s))] == [
        b"e0",
        b"e1",
        b"f0",
        b"g0",
        b"g1",
    ]


async def test_wrong_expected_version_is_refused_and_writes_nothing(store: EventStore) -> None:
    s = stream()
    await store.append(s, events(2), NO_STREAM)
    before = await store.last_position()
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append(s, events(3, "x"), NO_STREAM)
    assert info.value.actual == 1
    with pytest.raises(WrongExpectedVersion):
        await store.append(s, events(3, "x"), 0)
    with pytest.raises(WrongExpectedVersion):
        await store.append(s, events(1, "x"), 7)
    with pytest.raises(WrongExpectedVersion) as info:
        await store.append(stream(), events(1), 0)  # exact version of a stream that is absent
    assert info.value.actual is None
    assert await store.last_position() == before
    assert len(await collect(store.read_stream(s))) == 2


async def test_any_appends_whatever_the_version(store: EventStore) -> None:
    s = stream()
    await store.append(s, events(1), ANY)
    await store.append(s, events(2, "y"), ANY)
    assert [e.version for e in await collect(store.read_stream(s))] == [0, 1, 2]


async def test_append_is_idempotent_by_event_id(store: EventStore) -> None:
    s = stream()
    batch = events(3)
    first = await store.append(s, batch, NO_STREAM)
    again = await store.append(s, batch, NO_STREAM)
    assert again == first
    single = events(1, "s")
    r1 = await store.append(s, single, 2)
    # A retry of an append that was acknowledged long ago, after the stream moved on.
    await store.append(s, events(2, "later"), 3)
    r2 = await store.append(s, single, 2)
    assert r1 == r2
    r3 = await store.append(s, single, ANY)
    assert r3 == r1
    assert len(await collect(store.read_stream(s))) == 6


async def test_event_ids_must_be_unique_within_an_append(store: EventStore) -> None:
    e = NewEvent(type="t", data=b"")
    with pytest.raises(InvalidEvent):
        await store.append(stream(), [e, e], NO_STREAM)
    with pytest.raises(InvalidEvent):
        await store.append(stream(), [], NO_STREAM)


async def test_read_of_absent_stream_raises_stream_not_found(store: EventStore) -> None:
    with pytest.raises(StreamNotFound):
        await collect(store.read_stream(stream()))


async def test_oversized_event_is_refused_and_writes_nothing(store: EventStore) -> None:
    s = stream()
    before = await store.last_position()
    big = NewEvent(type="t", data=b"x" * (store.max_event_bytes + 1))
    with pytest.raises(EventTooLarge):
        await store.append(s, [*events(2), big], NO_STREAM)
    with pytest.raises(EventTooLarge):
        await store.append(s, events(1001), NO_STREAM)
    assert await store.last_position() == before
    with pytest.raises(StreamNotFound):
        await collect(store.read_stream(s))


@pytest.mark.parametrize(
    "bad",
    [
        "acme.document",
        "Acme.document.x",
        "acme.doc ument.x",
        "acme.document.a.b",
        "acme.document.x*",
        "acme.document.>",
        "acme..x",
        "",
        "-acme.document.x",
    ],
)
async def test_malformed_stream_names_are_refused(store: EventStore, bad: str) -> None:
    before = await store.last_position()
    with pytest.raises(InvalidStreamName):
        await store.append(bad, events(1), ANY)
    assert await store.last_position() == before


async def test_atomic_append_stores_all_or_nothing(store: EventStore) -> None:
    s = stream()
    await store.append(s, events(1), NO_STREAM)
    before = await store.last_position()
    with pytest.raises(WrongExpectedVersion):
        await store.append(s, events(50, "batch"), NO_STREAM)
    assert await store.last_position() == before
    await store.append(s, events(50, "batch"), 0)
    assert len(await collect(store.read_stream(s))) == 51


async def test_recorded_event_keeps_envelope_fields(store: EventStore) -> None:
    s = stream()
    message = events_pb2.DocumentAccessed(
        tenant=common_pb2.TenantId(value="acme"),
        document_id=common_pb2.DocumentId(value="d1"),
        accessed_by="tok1",
        access_kind="content",
    )
    new = NewEvent.of(
        message,
        causation_id="c1",
        correlation_id="r1",
        trace_context={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        metadata={"principal": "tok1"},
    )
    await store.append(s, [new], NO_STREAM)
    [recorded] = await collect(store.read_stream(s))
    assert recorded.event_id == new.event_id
    assert recorded.type == "archive.v1.DocumentAccessed"
    assert recorded.tenant == "acme"
    assert (recorded.causation_id, recorded.correlation_id) == ("c1", "r1")
    assert recorded.trace_context == new.trace_context
    assert recorded.metadata == {"principal": "tok1"}
    assert recorded.recorded_at.tzinfo is not None
    assert recorded.decode() == message


async def test_read_all_from_a_position_with_and_without_filter(store: EventStore) -> None:
    start = await store.last_position()
    a, b = stream("tenant-a"), stream("tenant-b", "token")
    await store.append(a, events(3, "a"), NO_STREAM)
    await store.append(b, events(2, "b"), NO_STREAM)
    await store.append(a, events(1, "a2"), 2)
    everything = await collect(store.read_all(after=start))
    assert [e.data for e in everything] == [b"a0", b"a1", b"a2", b"b0", b"b1", b"a20"]
    assert [e.position for e in everything] == list(range(start + 1, start + 7))
    later = await collect(store.read_all(after=start + 4))
    assert [e.data for e in later] == [b"b1", b"a20"]
    only_a = await collect(store.read_all(after=start, filter=StreamFilter(tenant="tenant-a")))
    assert [e.data for e in only_a] == [b"a0", b"a1", b"a2", b"a20"]
    tokens = await collect(store.read_all(after=start, filter=StreamFilter(category="token")))
    assert [e.data for e in tokens] == [b"b0", b"b1"]
    assert await collect(store.read_all(after=await store.last_position())) == []


async def test_concurrent_appenders_exactly_one_wins_per_version(
    store_factory: StoreFactory,
) -> None:
    writers = [await store_factory() for _ in range(4)]
    s = stream()
    await writers[0].append(s, events(1, "seed"), NO_STREAM)
    version = 0
    for round_ in range(5):
        # Every writer races to append two events after the same version.
        results = await asyncio.gather(
            *[w.append(s, events(2, f"w{i}r{round_}-"), version) for i, w in enumerate(writers)],
            return_exceptions=True,
        )
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, WrongExpectedVersion)]
        assert len(winners) == 1, results
        assert len(losers) == len(writers) - 1, results
        assert winners[0].version == version + 2
        version = winners[0].version
    recorded = await collect(writers[2].read_stream(s))
    assert [e.version for e in recorded] == list(range(11))
    # Each round's two events come from one writer: no interleaving of losers' events.
    for first, second in zip(recorded[1::2], recorded[2::2], strict=True):
        assert first.data.split(b"-")[0] == second.data.split(b"-")[0]


async def test_concurrent_any_appenders_all_succeed_without_version_holes(
    store_factory: StoreFactory,
) -> None:
    writers = [await store_factory() for _ in range(3)]
    s = stream()
    await asyncio.gather(
        *[w.append(s, events(1, f"w{i}-{j}"), ANY) for j in range(5) for i, w in enumerate(writers)]
    )
    recorded = await collect(writers[0].read_stream(s))
    assert [e.version for e in recorded] == list(range(15))


async def test_subscriber_starting_mid_stream_sees_no_gap_and_no_duplicate(
    store: EventStore,
) -> None:
    s = stream("sub-tenant")
    start = await store.last_position()
    for i in range(5):
        await store.append(s, events(10, f"old{i}-"), ANY)
    mid = start + 20
    subscription = await store.subscribe_all(after=mid)
    seen: list[RecordedEvent] = []

    async def consume() -> None:
        async for event in subscription:
            seen.append(event)
            if len(seen) == 30 + 50:
                return

    consumer = asyncio.create_task(consume())
    for i in range(10):  # live appends racing the catch-up
        await store.append(s, events(5, f"live{i}-"), ANY)
        await asyncio.sleep(0)
    await asyncio.wait_for(consumer, timeout=30)
    await subscription.close()
    assert [e.position for e in seen] == list(range(mid + 1, start + 101))
    assert [e.version for e in seen] == list(range(20, 100))


async def test_filtered_subscription_sees_only_its_tenant(store: EventStore) -> None:
    start = await store.last_position()
    sub = await store.subscribe_all(after=start, filter=StreamFilter(tenant="only-me"))
    await store.append(stream("someone-else"), events(3), NO_STREAM)
    await store.append(stream("only-me"), events(2, "mine"), NO_STREAM)
    got: list[RecordedEvent] = []
    async with sub:
        async for event in sub:
            got.append(event)
            if len(got) == 2:
                break
    assert [e.data for e in got] == [b"mine0", b"mine1"]
    assert all(e.tenant == "only-me" for e in got)


def test_stream_name_round_trip_and_validation() -> None:
    name = StreamName("acme", "document", "0b7c-11")
    assert StreamName.parse(str(name)) == name
    with pytest.raises(InvalidStreamName):
        StreamName("acme", "document", "a.b")
    assert StreamName("_system", "tenant", "acme").tenant == "_system"
    with pytest.raises(InvalidStreamName):
        StreamName("_other", "tenant", "acme")


async def test_first_event_is_the_streams_first_whatever_follows_and_none_without_one(
    store: EventStore,
) -> None:
    s, other = stream(), stream()
    await store.append(other, events(1, "other"), NO_STREAM)  # an earlier, unrelated subject
    assert await store.first_event(s) is None
    await store.append(s, events(2, "a"), NO_STREAM)
    await store.append(s, events(1, "b"), 1)
    first = await store.first_event(s)
    assert first is not None
    assert (first.stream, first.version, first.data) == (s, 0, b"a0")
    assert first == (await collect(store.read_stream(s)))[0]
