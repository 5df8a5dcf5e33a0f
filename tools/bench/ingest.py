"""Ingest benchmark: 30 KB deposits end to end (receipt = bytes fsynced and event acknowledged)
with concurrent clients, beside the raw limits of each stage measured in the same run.

    python -m tools.bench.ingest [--documents 3000] [--concurrency 64] [--streams 8] [--out FILE]

Documents are 30 KB PDFs (a PDF header, then random bytes), the statements and invoices of
the mission. The ingest service runs as its own process (as in `make run`), with a real
nats-server and the configured blob store (the pack store by default) under a temporary
directory. Raw stages, each on
the same machine now:
- sha256: hashlib over the same 30 KB documents (one core);
- grpc_client_streaming: the same messages (header + one 30 KB chunk) to a trivial grpc.aio
  servicer in its own process that only counts bytes, with the same concurrency;
- jetstream_publish: plain nats-py publishes of a message the size of our event, awaited
  with the same concurrency;
- grpc_bidi_streaming: the same messages on a few bidirectional streams to a servicer that
  only answers each document (the transport of UploadMany);
- append_fdatasync: 30 KB appends to one open file with one fdatasync per 64, the durability
  floor of the pack blob store (ARCHIVE_BLOB_STORE=pack, the default);
and for reference only, fsync_file_write: write + fsync + rename of one file per document.
Two paths of ours: `ours` is one Upload call per document (`concurrency` at once), `ours_bulk`
UploadMany with `streams` calls each carrying its share of the documents. Each ratio is ours
over the slowest raw stage of that path.

What is measured is ingest alone: the clients call the ingest process directly (no gateway),
and neither search nor sealing runs. Ingest, its nats-server and the JetStream raw stage run
twice, on a fresh server each time: with `sync_interval: always` (our default: fsync before
every acknowledgement) and with `2m` (nats-server's own default, ours before);
`always_over_2m` is each rate with `always` over the same rate with `2m`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import nats

from archive.natsserver import SYNC_ALWAYS, SYNC_NATS_DEFAULT, NatsServer, free_port
from archive.v1 import common_pb2, ingest_pb2, ingest_pb2_grpc, tenancy_pb2, tenancy_pb2_grpc
from tools.bench.raw_disk import append_with_fdatasync, write_file_durably
from tools.bench.report import emit

OPERATOR = "bench-operator-token-0123456789abcdef"
DOC_BYTES = 30 * 1024
PDF_HEADER = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"


def _requests(
    content: bytes, name: str, stamp: list[float] | None = None
) -> Iterator[ingest_pb2.UploadRequest]:
    yield ingest_pb2.UploadRequest(
        header=ingest_pb2.UploadHeader(file_name=name, idempotency_key=name)
    )
    yield ingest_pb2.UploadRequest(chunk=content)
    if stamp is not None:
        stamp.append(time.perf_counter())
    yield ingest_pb2.UploadRequest(end=ingest_pb2.UploadEnd(size_bytes=len(content)))


async def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


async def _run_concurrently(count: int, concurrency: int, one: Any) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    t = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return time.perf_counter() - t


def _start(code: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    # BENCH_PROFILE=out.txt records the service with py-spy (if installed) for a look inside.
    profile = os.environ.get("BENCH_PROFILE")
    prefix = (
        ["py-spy", "record", "--nonblocking", "--gil", "-r", "50", "-f", "raw", "-o", profile, "--"]
        if profile
        else []
    )
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", code],
        env={**os.environ, **env},
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
    )


SYNCS = (SYNC_ALWAYS, SYNC_NATS_DEFAULT)
MEASURED = (
    "the ingest service alone (its own process) on a nats-server, clients calling it directly: "
    "no gateway, no search, no sealing"
)


async def bench(documents: int, concurrency: int, streams: int) -> dict[str, Any]:
    # Statements and invoices: PDF documents (header + incompressible body) of exactly 30 KB.
    docs = [PDF_HEADER + os.urandom(DOC_BYTES - len(PDF_HEADER)) for _ in range(documents)]
    by_sync: dict[str, dict[str, Any]] = {}
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for sync in SYNCS:
            by_sync[sync] = await _bench_ingest_on(tmp / sync, sync, docs, concurrency, streams)
        raw["raw_grpc_client_streaming"] = await _bench_grpc(docs, concurrency)
        raw["raw_grpc_bidi_streaming"] = await _bench_grpc_bulk(docs, streams)
        raw["raw_append_fdatasync"] = _bench_append(tmp / "append.pack", docs)
        # Not a stage of ours any more (the pack blob store appends), kept for comparison.
        reference = {"fsync_file_write": _bench_fsync(tmp / "fsync", docs, concurrency)}
    t = time.perf_counter()
    for d in docs:
        hashlib.sha256(d).digest()
    raw["raw_sha256"] = {"docs_per_s": round(documents / (time.perf_counter() - t), 1)}
    always, interval = (by_sync[sync] for sync in SYNCS)
    met = [
        f"{path} ({sync})"
        for sync, results in by_sync.items()
        for path in ("ours", "ours_bulk")
        if results[path]["docs_per_s"] >= 1000
    ]
    return {
        "benchmark": "ingest",
        "measured": MEASURED,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "document_bytes": DOC_BYTES,
        "documents": documents,
        "concurrency": concurrency,
        "bulk_streams": streams,
        "results": by_sync,
        "raw": raw,
        "reference_not_a_stage": reference,
        "ratios": {sync: _ratios(results, raw) for sync, results in by_sync.items()},
        "always_over_2m": {
            key: round(always[key]["docs_per_s"] / interval[key]["docs_per_s"], 3) for key in always
        },
        "target_docs_per_s": 1000,
        "target_met_by": met,
    }


async def _bench_ingest_on(
    tmp: Path, sync: str, docs: list[bytes], concurrency: int, streams: int
) -> dict[str, Any]:
    """Both paths of ours against an ingest process on a fresh nats-server fsyncing as `sync`
    says, and plain JetStream publishes to that server."""
    results: dict[str, Any] = {}
    with NatsServer(store_dir=tmp / "nats", sync=sync) as server:
        port = free_port()
        ingest = _start(
            "import asyncio; from archive.config import Settings; "
            "from services.ingest.main import run; asyncio.run(run(Settings.from_env()))",
            {
                "ARCHIVE_NATS_URL": server.url,
                "ARCHIVE_GRPC_PORT": str(port),
                "ARCHIVE_DATA_DIR": str(tmp / "ingest"),
                "ARCHIVE_BLOB_DIR": str(tmp / "blobs"),
                "ARCHIVE_OPERATOR_TOKEN": OPERATOR,
                "ARCHIVE_LOG_LEVEL": "WARNING",
            },
            tmp / "ingest.log",
        )
        try:
            await _wait_port(port)
            token = await _create_tenant(port)
            results["ours"] = await _bench_ingest(port, token, docs, concurrency)
            results["ours_bulk"] = await _bench_ingest_bulk(port, token, docs, streams)
        finally:
            ingest.send_signal(2)  # SIGINT: a graceful stop (and py-spy writes its file)
            ingest.wait(20)
        results["raw_jetstream_publish"] = await _bench_jetstream(
            server.url, len(docs), concurrency
        )
    return results


def _ratios(results: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """Each of our paths against the raw stages it is made of: Upload is one client-streaming
    call per document, UploadMany one bidirectional stream for many."""
    stages = {**raw, "raw_jetstream_publish": results["raw_jetstream_publish"]}
    rates = {name: stage["docs_per_s"] for name, stage in stages.items()}
    per_call = {k: v for k, v in rates.items() if k != "raw_grpc_bidi_streaming"}
    bulk = {k: v for k, v in rates.items() if k != "raw_grpc_client_streaming"}
    slowest = min(per_call, key=lambda k: per_call[k])
    slowest_bulk = min(bulk, key=lambda k: bulk[k])
    return {
        "slowest_raw_stage": slowest,
        "ratio_to_slowest_raw": round(results["ours"]["docs_per_s"] / per_call[slowest], 3),
        "bulk_slowest_raw_stage": slowest_bulk,
        "bulk_ratio_to_slowest_raw": round(
            results["ours_bulk"]["docs_per_s"] / bulk[slowest_bulk], 3
        ),
    }


async def _create_tenant(port: int) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        created = await tenancy_pb2_grpc.TenantAdminStub(channel).CreateTenant(
            tenancy_pb2.CreateTenantRequest(tenant=common_pb2.TenantId(value="bench")),
            metadata=(("authorization", f"Bearer {OPERATOR}"),),
        )
    return str(created.token.token)


async def _bench_ingest(
    port: int, token: str, docs: list[bytes], concurrency: int
) -> dict[str, Any]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    auth = (("authorization", f"Bearer {token}"),)
    stub = ingest_pb2_grpc.IngestStub(channel)
    run_id = uuid.uuid4().hex[:8]
    latencies: list[float] = []

    async def one(i: int) -> None:
        t = time.perf_counter()
        receipt = await stub.Upload(_requests(docs[i], f"{run_id}-{i}.bin"), metadata=auth)
        latencies.append(time.perf_counter() - t)
        assert receipt.size_bytes == DOC_BYTES

    await one(0)  # warm up: first call pays for connection and caches
    latencies.clear()
    seconds = await _run_concurrently(len(docs) - 1, concurrency, lambda i: one(i + 1))
    await channel.close()
    latencies.sort()
    return {
        "docs_per_s": round((len(docs) - 1) / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
    }


async def _bench_ingest_bulk(
    port: int, token: str, docs: list[bytes], streams: int
) -> dict[str, Any]:
    """UploadMany: `streams` concurrent calls, each carrying its share of the documents
    without waiting; a document's latency runs from its UploadEnd sent to its receipt."""
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = ingest_pb2_grpc.IngestStub(channel)
    auth = (("authorization", f"Bearer {token}"),)
    run_id = uuid.uuid4().hex[:8]
    latencies: list[float] = []

    async def one_stream(share: list[int]) -> None:
        sent_at: list[float] = []

        def requests() -> Iterator[ingest_pb2.UploadRequest]:
            for i in share:
                yield from _requests(docs[i], f"bulk-{run_id}-{i}.bin", stamp=sent_at)

        async for result in stub.UploadMany(requests(), metadata=auth):
            latencies.append(time.perf_counter() - sent_at[result.index])
            assert result.WhichOneof("result") == "receipt", result
            assert result.receipt.size_bytes == DOC_BYTES

    await one_stream([0])  # warm up
    latencies.clear()
    indexes = list(range(1, len(docs)))
    t = time.perf_counter()
    await asyncio.gather(*[one_stream(indexes[k::streams]) for k in range(streams)])
    seconds = time.perf_counter() - t
    await channel.close()
    latencies.sort()
    return {
        "docs_per_s": round(len(indexes) / seconds, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
    }


async def _bench_jetstream(url: str, count: int, concurrency: int) -> dict[str, Any]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name="RAWBENCH", subjects=["rawbench.>"])
    payload = os.urandom(450)  # about the size of a stored DocumentIngested envelope

    async def one(i: int) -> None:
        await js.publish(f"rawbench.{i % 100}", payload, headers={"Nats-Msg-Id": str(i)})

    seconds = await _run_concurrently(count, concurrency, one)
    await nc.close()
    return {"docs_per_s": round(count / seconds, 1), "message_bytes": len(payload)}


_SINK = """
import asyncio, grpc, sys
from archive.v1 import ingest_pb2, ingest_pb2_grpc
class Sink(ingest_pb2_grpc.IngestServicer):
    async def Upload(self, it, context):
        n = 0
        async for m in it:
            n += len(m.chunk)
        return ingest_pb2.DepositReceipt(size_bytes=n)
    async def UploadMany(self, it, context):
        i = n = 0
        async for m in it:
            n += len(m.chunk)
            if m.WhichOneof("part") == "end":
                receipt = ingest_pb2.DepositReceipt(size_bytes=n)
                yield ingest_pb2.UploadManyResult(index=i, receipt=receipt)
                i += 1
                n = 0
async def main():
    server = grpc.aio.server()
    ingest_pb2_grpc.add_IngestServicer_to_server(Sink(), server)
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


@contextlib.asynccontextmanager
async def _sink() -> AsyncIterator[ingest_pb2_grpc.IngestStub]:
    """A servicer that only counts bytes and answers, in its own process; a stub to it."""
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", _SINK, str(port)])  # noqa: ASYNC220
    try:
        await _wait_port(port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield ingest_pb2_grpc.IngestStub(channel)
    finally:
        sink.terminate()
        sink.wait(10)


async def _bench_grpc(docs: list[bytes], concurrency: int) -> dict[str, Any]:
    """The same messages, one client-streaming call per document: the transport of Upload."""
    async with _sink() as stub:

        async def one(i: int) -> None:
            await stub.Upload(_requests(docs[i], f"{i}.bin"))

        await one(0)
        seconds = await _run_concurrently(len(docs), concurrency, one)
    return {"docs_per_s": round(len(docs) / seconds, 1)}


async def _bench_grpc_bulk(docs: list[bytes], streams: int) -> dict[str, Any]:
    """The same messages on `streams` bidirectional streams to a servicer that only counts
    bytes and answers each document: the transport floor of UploadMany."""
    async with _sink() as stub:

        async def one_stream(share: list[int]) -> None:
            def requests() -> Iterator[ingest_pb2.UploadRequest]:
                for i in share:
                    yield from _requests(docs[i], f"{i}.bin")

            async for result in stub.UploadMany(requests()):
                assert result.receipt.size_bytes == DOC_BYTES

        await one_stream([0])
        indexes = list(range(len(docs)))
        t = time.perf_counter()
        await asyncio.gather(*[one_stream(indexes[k::streams]) for k in range(streams)])
        seconds = time.perf_counter() - t
    return {"docs_per_s": round(len(docs) / seconds, 1), "streams": streams}


def _bench_append(path: Path, docs: list[bytes], group: int = 64) -> dict[str, Any]:
    """The durability floor of the pack blob store: append each document to one open file,
    one fdatasync per `group` documents (no hashing, no framing)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    t = time.perf_counter()
    try:
        append_with_fdatasync(fd, docs, group)
    finally:
        os.close(fd)
    return {"docs_per_s": round(len(docs) / (time.perf_counter() - t), 1), "per_fdatasync": group}


def _bench_fsync(root: Path, docs: list[bytes], concurrency: int) -> dict[str, Any]:
    """What the blob store must do for each document, with as many in flight as clients:
    write, fsync, rename into a sharded directory, fsync that directory."""

    def one(i: int) -> None:
        directory = root / f"{i % 256:02x}"
        directory.mkdir(parents=True, exist_ok=True)
        write_file_durably(directory, f"{i}.bin", docs[i])

    t = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(len(docs))))
    return {"docs_per_s": round(len(docs) / (time.perf_counter() - t), 1), "threads": concurrency}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8, help="UploadMany calls at once")
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args()
    report = asyncio.run(bench(ns.documents, ns.concurrency, ns.streams))
    emit(report, ns.out)


if __name__ == "__main__":
    main()
