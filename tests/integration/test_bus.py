"""NATS plumbing over a real server: trace context crosses a message, the connection comes back
after a server restart, and shutdown drains what was in flight."""

from __future__ import annotations

import asyncio

from conftest import unique_names
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from archive import bus
from archive.eventstore import ANY, NewEvent, StreamName
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import NatsServer


async def test_trace_context_travels_in_message_headers(nats_server: NatsServer) -> None:
    tracer = TracerProvider().get_tracer("test")
    nc = await bus.connect(nats_server.url, name="test")
    received: asyncio.Future[trace.SpanContext] = asyncio.get_running_loop().create_future()

    async def handler(msg):  # type: ignore[no-untyped-def]
        ctx = bus.context_from(msg)
        received.set_result(trace.get_current_span(ctx).get_span_context())

    await nc.subscribe("trace.test", cb=handler)
    with tracer.start_as_current_span("publisher") as span:
        await bus.publish(nc, "trace.test", b"hi")
        sent = span.get_span_context()
    got = await asyncio.wait_for(received, 5)
    assert got.trace_id == sent.trace_id and got.span_id == sent.span_id
    await bus.close(nc)
    assert nc.is_closed


async def test_connection_and_subscription_survive_a_server_restart(
    own_nats_server: NatsServer,
) -> None:
    names = unique_names()
    store = await JetStreamEventStore.connect(own_nats_server.url, **names)
    s = StreamName("acme", "document", "restart")
    await store.append(s, [NewEvent("t", b"%d" % i) for i in range(10)], ANY)
    subscription = await store.subscribe_all(after=5)
    seen: list[int] = []
    caught_up = asyncio.Event()

    async def consume() -> None:
        async for event in subscription:
            seen.append(event.position)
            if event.position == 10:
                caught_up.set()
            if event.position == 30:
                return

    task = asyncio.create_task(consume())
    await asyncio.wait_for(caught_up.wait(), 10)
    own_nats_server.kill()
    await asyncio.sleep(0.3)
    own_nats_server.start()
    for _ in range(100):  # the same client reconnects by itself
        if store._nc.is_connected:
            break
        await asyncio.sleep(0.1)
    await store.append(s, [NewEvent("t", b"%d" % i) for i in range(20)], ANY)
    await asyncio.wait_for(task, 20)
    assert seen == list(range(6, 31))  # no gap, no duplicate across the restart
    await subscription.close()
    await store.close()


async def test_close_drains_pending_publishes(nats_server: NatsServer) -> None:
    receiver = await bus.connect(nats_server.url, name="receiver")
    got: list[bytes] = []

    async def handler(msg):  # type: ignore[no-untyped-def]
        got.append(msg.data)

    await receiver.subscribe("drain.test", cb=handler)
    await receiver.flush()
    sender = await bus.connect(nats_server.url, name="sender")
    for i in range(500):
        await bus.publish(sender, "drain.test", b"%d" % i)
    await bus.close(sender)  # must flush all 500 before closing
    for _ in range(100):
        if len(got) == 500:
            break
        await asyncio.sleep(0.02)
    assert len(got) == 500
    await bus.close(receiver)
