"""Sealing benchmark: throughput (leaves per second) and lag (deposit to covering checkpoint)
while the ingest benchmark's load runs, plus the Merkle library beside pymerkle.

    python -m tools.bench.sealing [--documents 2000] [--concurrency 64] [--streams 8] [--out FILE]

nats-server, the ingest service and the sealing service (default settings: a checkpoint per
1,000 leaves or 500 ms, the built-in TSA in process, a development PKI) run as their own
processes. Deposits of 30 KB PDFs are sent as in tools/bench/ingest.py: once one Upload call
per document, once (twice as many documents) over UploadMany streams, the bulk rate. Afterwards the
tenant's seallog is read back from the store:
- throughput: leaves sealed per second between the first deposit and the last checkpoint;
- lag per deposit: the covering checkpoint's RFC 3161 genTime minus the deposit's
  received_at (both from this machine's clock; genTime has millisecond precision).
The Merkle part runs tools/bench/merkle.py's measurement (ours beside pymerkle, same run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc.aio

from archive.eventstore import StreamName
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import NatsServer, free_port
from archive.v1 import (
    common_pb2,
    events_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
    tenancy_pb2,
    tenancy_pb2_grpc,
)
from tools.bench.ingest import (
    DOC_BYTES,
    OPERATOR,
    PDF_HEADER,
    _requests,
    _run_concurrently,
    _start,
    _wait_port,
)
from tools.bench.report import emit

_SERVE = (
    "import asyncio; from archive.config import Settings; "
    "from services.{name}.main import run; asyncio.run(run(Settings.from_env()))"
)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)


async def bench(documents: int, concurrency: int, streams: int = 0) -> dict[str, Any]:
    """Deposits as `concurrency` Upload calls at once, or, with `streams`, as that many
    UploadMany streams (the bulk load)."""
    docs = [PDF_HEADER + os.urandom(DOC_BYTES - len(PDF_HEADER)) for _ in range(documents)]
    with (
        tempfile.TemporaryDirectory() as tmp_dir,
        NatsServer(store_dir=Path(tmp_dir) / "nats") as server,
    ):
        tmp = Path(tmp_dir)
        ports = {"ingest": free_port(), "sealing": free_port()}
        processes = [
            _start(
                _SERVE.format(name=name),
                {
                    "ARCHIVE_NATS_URL": server.url,
                    "ARCHIVE_GRPC_PORT": str(port),
                    "ARCHIVE_DATA_DIR": str(tmp / name),
                    "ARCHIVE_BLOB_DIR": str(tmp / "blobs"),
                    "ARCHIVE_OPERATOR_TOKEN": OPERATOR,
                    "ARCHIVE_LOG_LEVEL": "WARNING",
                    # The development PKI and the built-in TSA (in process).
                    "ARCHIVE_PROFILE": "development",
                },
                tmp / f"{name}.log",
            )
            for name, port in ports.items()
        ]
        try:
            for port in ports.values():
                await _wait_port(port)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports['ingest']}")
            created = await tenancy_pb2_grpc.TenantAdminStub(channel).CreateTenant(
                tenancy_pb2.CreateTenantRequest(tenant=common_pb2.TenantId(value="bench")),
                metadata=(("authorization", f"Bearer {OPERATOR}"),),
            )
            auth = (("authorization", f"Bearer {created.token.token}"),)
            stub = ingest_pb2_grpc.IngestStub(channel)
            run_id = uuid.uuid4().hex[:8]

            async def one(i: int) -> None:
                await stub.Upload(_requests(docs[i], f"{run_id}-{i}.pdf"), metadata=auth)

            async def one_stream(share: list[int]) -> None:
                def requests() -> Iterator[ingest_pb2.UploadRequest]:
                    for i in share:
                        yield from _requests(docs[i], f"{run_id}-{i}.pdf")

                async for result in stub.UploadMany(requests(), metadata=auth):
                    assert result.WhichOneof("result") == "receipt", result

            started = time.time()
            if streams:
                t = time.perf_counter()
                indexes = list(range(documents))
                await asyncio.gather(*[one_stream(indexes[k::streams]) for k in range(streams)])
                seconds = time.perf_counter() - t
            else:
                seconds = await _run_concurrently(documents, concurrency, one)
            await channel.close()
            store = await JetStreamEventStore.connect(server.url)
            expected_leaves = documents + 2  # + tenant creation and first token
            deadline = time.monotonic() + 120
            checkpoints: list[events_pb2.CheckpointSealed] = []
            leaves: list[events_pb2.LogLeavesAppended] = []
            while time.monotonic() < deadline:
                checkpoints, leaves = [], []
                async for recorded in store.read_stream(StreamName("bench", "seallog", "main")):
                    message = recorded.decode()
                    if isinstance(message, events_pb2.CheckpointSealed):
                        checkpoints.append(message)
                    elif isinstance(message, events_pb2.LogLeavesAppended):
                        leaves.append(message)
                if checkpoints and checkpoints[-1].tree_size >= expected_leaves:
                    break
                await asyncio.sleep(0.5)
            received = {}
            async for recorded in store.read_all():
                if recorded.type == "archive.v1.DocumentIngested":
                    deposit = recorded.decode_as(events_pb2.DocumentIngested)
                    received[recorded.event_id] = deposit.received_at.ToDatetime(tzinfo=UTC)
            await store.close()
        finally:
            for process in processes:
                process.send_signal(2)
                process.wait(20)
    lags = []
    for batch, checkpoint in zip(leaves, checkpoints, strict=True):
        sealed_at = checkpoint.timestamped_at.ToDatetime(tzinfo=UTC)
        for event_id in batch.event_ids:
            if event_id in received:
                lags.append((sealed_at - received[event_id]).total_seconds())
    last_sealed = checkpoints[-1].timestamped_at.ToDatetime(tzinfo=UTC).timestamp()
    sealed = checkpoints[-1].tree_size
    return {
        "deposits": documents,
        "deposited_with": f"UploadMany, {streams} streams" if streams else "Upload per document",
        "deposit_docs_per_s": round(documents / seconds, 1),
        "leaves_sealed": sealed,
        "checkpoints": len(checkpoints),
        "sealing_leaves_per_s": round(sealed / (last_sealed - started), 1),
        "lag_ms": {
            "p50": _percentile(lags, 0.5),
            "p99": _percentile(lags, 0.99),
            "max": _percentile(lags, 1.0),
            "deposits_measured": len(lags),
        },
        "lag_target_ms": 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--streams", type=int, default=8, help="UploadMany calls, bulk load")
    parser.add_argument("--merkle-leaves", type=int, default=100_000)
    parser.add_argument("--out", type=Path)
    ns = parser.parse_args()
    from tools.bench import merkle

    report = {
        "benchmark": "sealing",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "under_ingest_load": asyncio.run(bench(ns.documents, ns.concurrency)),
        "under_bulk_ingest_load": asyncio.run(
            bench(ns.documents * 2, ns.concurrency, streams=ns.streams)
        ),
        "merkle": merkle.bench(ns.merkle_leaves, proofs=2000, repeat=1),
    }
    emit(report, ns.out)


if __name__ == "__main__":
    main()
