"""What the JetStream adapter promises beyond the port: acknowledged appends survive SIGKILL of
the server, history cannot be deleted or purged, and an absent server is a typed error."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from pathlib import Path

import nats
import nats.js.errors
import pytest
from conftest import unique_names

from archive.eventstore import ANY, NO_STREAM, NewEvent, StoreUnavailable, StreamName
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import SYNC_NATS_DEFAULT, NatsServer, free_port, sync_from_env

pytestmark = pytest.mark.integration


async def test_acknowledged_appends_survive_sigkill_of_the_server(
    own_nats_server: NatsServer,
) -> None:
    names = unique_names()
    store = await JetStreamEventStore.connect(own_nats_server.url, **names)
    acknowledged: list[str] = []
    for i in range(200):
        batch = [NewEvent(type="t", data=b"%d" % i) for _ in range(1 + i % 5)]
        await store.append(StreamName("acme", "document", f"d{i % 17}"), batch, ANY)
        acknowledged.extend(e.event_id for e in batch)
    own_nats_server.kill()  # SIGKILL: no shutdown, no flush
    for _ in range(200):  # let the client notice, so closing it does not try to drain
        if not store._nc.is_connected:
            break
        await asyncio.sleep(0.01)
    await store.close()

    own_nats_server.start()  # same port, same store directory
    reopened = await JetStreamEventStore.connect(own_nats_server.url, **names)
    stored = [e.event_id async for e in reopened.read_all()]
    assert stored == acknowledged
    # Versions went on from where they were: the tail survived too.
    result = await reopened.append(StreamName("acme", "document", "d0"), [NewEvent("t", b"")], ANY)
    assert result.last_position == len(acknowledged) + 1
    await reopened.close()


async def test_history_cannot_be_deleted_or_purged(jetstream_store: JetStreamEventStore) -> None:
    await jetstream_store.append(
        StreamName("acme", "document", uuid.uuid4().hex), [NewEvent("t", b"x")], NO_STREAM
    )
    jsm = jetstream_store._js
    name = jetstream_store._stream_name
    info = await jsm.stream_info(name)
    assert info.config.deny_delete and info.config.deny_purge
    with pytest.raises(nats.js.errors.APIError):
        await jsm.delete_msg(name, 1)
    with pytest.raises(nats.js.errors.APIError):
        await jsm.purge_stream(name)
    assert (await jsm.stream_info(name)).state.messages == 1


async def test_existing_stream_without_immutability_is_refused(
    nats_server: NatsServer,
) -> None:
    names = unique_names()
    nc = await nats.connect(nats_server.url)
    await nc.jetstream().add_stream(
        name=names["stream_name"], subjects=[f"{names['subject_prefix']}.>"]
    )
    with pytest.raises(Exception, match="deny_delete"):
        await JetStreamEventStore.connect(nats_server.url, **names)
    await nc.close()


async def test_append_without_a_server_raises_store_unavailable(
    own_nats_server: NatsServer,
) -> None:
    store = await JetStreamEventStore.connect(
        own_nats_server.url, request_timeout=0.5, **unique_names()
    )
    s = StreamName("acme", "document", "x")
    await store.append(s, [NewEvent("t", b"")], NO_STREAM)
    own_nats_server.stop()
    with pytest.raises(StoreUnavailable):
        await store.append(s, [NewEvent("t", b"")], 0)
    with pytest.raises(StoreUnavailable):
        await store.append(StreamName("acme", "document", "y"), [NewEvent("t", b"")], ANY)
    await store.close()


async def test_retry_inside_duplicate_window_is_recognised(
    jetstream_store: JetStreamEventStore,
) -> None:
    s = StreamName("acme", "document", uuid.uuid4().hex)
    event = NewEvent("t", b"once")
    first = await jetstream_store.append(s, [event], NO_STREAM)
    jetstream_store._tails.clear()  # a fresh client retrying after a lost acknowledgement
    assert await jetstream_store.append(s, [event], NO_STREAM) == first
    assert await jetstream_store.append(s, [event], ANY) == first
    assert [e.data async for e in jetstream_store.read_stream(s)] == [b"once"]


def jetstream_config(server: NatsServer) -> dict[str, object]:
    """What the running server says of its JetStream configuration (/varz)."""
    url = f"http://{server.host}:{server.monitor_port}/varz"
    with urllib.request.urlopen(url, timeout=5) as response:
        config: dict[str, object] = json.load(response)["jetstream"]["config"]
    return config


def test_the_embedded_server_fsyncs_before_every_acknowledgement_by_default(
    tmp_path: Path,
) -> None:
    with NatsServer(store_dir=tmp_path / "always", monitor_port=free_port()) as server:
        assert jetstream_config(server)["sync_always"] is True
    interval = NatsServer(store_dir=tmp_path / "2m", sync="2m", monitor_port=free_port())
    with interval as server:
        config = jetstream_config(server)
    assert not config.get("sync_always")
    assert config["sync_interval"] == 120 * 10**9  # nanoseconds


def test_archive_nats_sync_is_always_or_an_interval() -> None:
    assert sync_from_env({}) == "always"
    assert sync_from_env({"ARCHIVE_NATS_SYNC": " Always "}) == "always"
    assert sync_from_env({"ARCHIVE_NATS_SYNC": SYNC_NATS_DEFAULT}) == "2m"
    assert sync_from_env({"ARCHIVE_NATS_SYNC": "500ms"}) == "500ms"
    for wrong in ("default", "sometimes", "2", "0s", "2 m"):
        with pytest.raises(ValueError, match="ARCHIVE_NATS_SYNC"):
            sync_from_env({"ARCHIVE_NATS_SYNC": wrong})
