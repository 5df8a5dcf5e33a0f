"""Event store benchmark: our JetStream adapter beside plain nats-py on the same server, in the
same run, with the ratio between them; once for each fsync setting of the server.

    python -m tools.bench.eventstore [--out docs/benchmarks/eventstore.json]

Everything below runs twice, on a fresh nats-server each time: with `sync_interval: always`
(our default: fsync before every acknowledgement) and with `2m` (nats-server's own default,
ours before). `always_over_2m` gives, for each figure, the rate with `always` over the rate
with `2m`: the cost of durable acknowledgements.

Measures (events of --event-bytes of data, published to a real nats-server on loopback):
- single: one event per append, each awaited before the next (optimistic concurrency on);
  raw: `js.publish` of a same-size message, each awaited.
- batch100: atomic appends of 100 events, each awaited; raw: 100 messages sent with
  `publish_async` and their acks awaited (the fastest plain way, but not atomic), and, for
  reference, a plain atomic batch of 100 sent with nothing but nats-py core calls.
- replay: read_all from position 0 to the end; raw: pull consumer `fetch(1000)` of the same
  number of same-size messages, without decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from archive.eventstore import ANY, NewEvent, StreamName
from archive.eventstore import envelope as envelope_codec
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import SYNC_ALWAYS, SYNC_NATS_DEFAULT, NatsServer
from tools.bench.report import emit


def _events(n: int, size: int) -> list[NewEvent]:
    return [NewEvent(type="archive.v1.Bench", data=os.urandom(size)) for _ in range(n)]


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1)


SYNCS = (SYNC_ALWAYS, SYNC_NATS_DEFAULT)


async def bench(event_bytes: int, singles: int, batches: int) -> dict[str, Any]:
    by_sync: dict[str, dict[str, Any]] = {}
    wire_size = 0
    for sync in SYNCS:
        wire_size, by_sync[sync] = await _bench_server(sync, event_bytes, singles, batches)
    always, interval = (by_sync[sync] for sync in SYNCS)
    return {
        "benchmark": "eventstore",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "event_data_bytes": event_bytes,
        "stored_message_bytes": wire_size,
        "nats_server_sync": {
            SYNC_ALWAYS: "fsync before every acknowledgement (our default; survives power loss)",
            SYNC_NATS_DEFAULT: "fsync every 2 minutes (nats-server's default; survives kill -9 "
            "of the server, not a power loss)",
        },
        "results": by_sync,
        "always_over_2m": {
            test: {
                key: round(always[test][key] / interval[test][key], 3)
                for key in always[test]
                if key.endswith("_per_s")
            }
            for test in always
        },
    }


async def _bench_server(
    sync: str, event_bytes: int, singles: int, batches: int
) -> tuple[int, dict[str, Any]]:
    """(stored message size, results) on a fresh server fsyncing as `sync` says."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        NatsServer(store_dir=Path(tmp), sync=sync) as server,
    ):
        store = await JetStreamEventStore.connect(server.url)
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(
                name="RAW", subjects=["raw.>"], storage=StorageType.FILE, allow_atomic=True
            )
        )
        # Raw messages have the size of our stored envelope, so both move the same bytes.
        sample = _events(1, event_bytes)[0]
        wire_size = len(
            envelope_codec.encode(StreamName("t", "c", "i"), 0, sample, datetime.now(UTC))
        )
        payload = os.urandom(wire_size)
        results: dict[str, Any] = {}

        # --- single appends, one at a time
        stream = StreamName("bench", "single", uuid.uuid4().hex)
        events = _events(singles, event_bytes)
        t = time.perf_counter()
        for i, event in enumerate(events):
            await store.append(stream, [event], i - 1 if i else _no_stream())
        ours = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(singles):
            await js.publish("raw.single", payload, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        raw = time.perf_counter() - t
        results["single_append"] = {
            "events": singles,
            "ours_events_per_s": _rate(singles, ours),
            "raw_publish_awaited_per_s": _rate(singles, raw),
            "ratio": round(raw / ours, 3),
        }

        # --- atomic batches of 100
        batch_events = [_events(100, event_bytes) for _ in range(batches)]
        t = time.perf_counter()
        for i, batch in enumerate(batch_events):
            await store.append(StreamName("bench", "batch", f"s{i % 10}"), batch, ANY)
        ours = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(batches):
            futures = [
                await js.publish_async(
                    "raw.batch", payload, headers={"Nats-Msg-Id": uuid.uuid4().hex}
                )
                for _ in range(100)
            ]
            await asyncio.gather(*futures)
        raw_async = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(batches):
            await _raw_atomic_batch(nc, "raw.atomic", payload, 100)
        raw_atomic = time.perf_counter() - t
        n = batches * 100
        results["batch100_append"] = {
            "events": n,
            "ours_events_per_s": _rate(n, ours),
            "raw_publish_async_per_s": _rate(n, raw_async),
            "raw_atomic_batch_per_s": _rate(n, raw_atomic),
            "ratio": round(raw_async / ours, 3),
            "ratio_to_raw_atomic": round(raw_atomic / ours, 3),
            "target_ratio": 0.5,
        }

        # --- replay from position 0
        total = await store.last_position()
        t = time.perf_counter()
        count = 0
        async for _ in store.read_all(after=0):
            count += 1
        ours = time.perf_counter() - t
        assert count == total, (count, total)
        raw_total = (await js.stream_info("RAW")).state.messages
        sub = await js.pull_subscribe(
            "raw.>", stream="RAW", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        t = time.perf_counter()
        got = 0
        while got < raw_total:
            got += len(await sub.fetch(1000, timeout=5))
        raw = time.perf_counter() - t
        results["replay_from_zero"] = {
            "ours_events": total,
            "ours_events_per_s": _rate(total, ours),
            "raw_messages": raw_total,
            "raw_fetch_per_s": _rate(raw_total, raw),
            "ratio": round((total / ours) / (raw_total / raw), 3),
        }
        await nc.close()
        await store.close()
    return wire_size, results


def _no_stream() -> Any:
    from archive.eventstore import NO_STREAM

    return NO_STREAM


async def _raw_atomic_batch(nc: Any, subject: str, payload: bytes, n: int) -> None:
    batch_id = uuid.uuid4().hex
    for i in range(1, n):
        await nc.publish(
            subject, payload, headers={"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i)}
        )
    reply = await nc.request(
        subject,
        payload,
        timeout=5,
        headers={
            "Nats-Batch-Id": batch_id,
            "Nats-Batch-Sequence": str(n),
            "Nats-Batch-Commit": "1",
        },
    )
    if b"error" in reply.data:
        raise RuntimeError(reply.data.decode())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--event-bytes", type=int, default=256)
    parser.add_argument("--singles", type=int, default=3000)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args()
    report = asyncio.run(bench(ns.event_bytes, ns.singles, ns.batches))
    emit(report, ns.out)


if __name__ == "__main__":
    main()
