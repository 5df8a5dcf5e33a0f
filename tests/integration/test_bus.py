"""NATS plumbing over a real server: the connection comes back after a server restart, and
shutdown drains what was in flight."""

from __future__ import annotations

import asyncio

import pytest
from conftest import unique_names
from waiting import eventually

from archive import bus
from archive.eventstore import ANY, NewEvent, StreamName
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import NatsServer

pytestmark = pytest.mark.integration


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
    # The client must have noticed, or the restart proves nothing about reconnecting.
    await eventually(lambda: not store._nc.is_connected, what="the client to see the loss")
    own_nats_server.start()
    await eventually(lambda: store._nc.is_connected, what="the client to reconnect by itself")
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
        await sender.publish("drain.test", b"%d" % i)
    await bus.close(sender)  # must flush all 500 before closing
    await eventually(lambda: len(got) == 500, what="all 500 messages")
    assert got == [b"%d" % i for i in range(500)]
    await bus.close(receiver)
