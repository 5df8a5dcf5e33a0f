"""The integrity audit on in-memory adapters with real keys and a real (in-process) TSA: an
event altered after it was sealed is reported, naming the document; the report is an event."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

from archive.blobstore import InMemoryBlobStore
from archive.eventstore import NO_STREAM, NewEvent, StreamName
from archive.eventstore.memory import InMemoryEventStore
from archive.sealing.cms import seal_detached
from archive.sealing.keys import DevelopmentPKI
from archive.sealing.timestamping import (
    TimeStampAuthority,
    build_request,
    verify_timestamp_response,
)
from archive.v1 import common_pb2, events_pb2
from services.sealing.audit import run_audit
from services.sealing.main import checkpoint_verifier
from services.sealing.sealer import Sealer


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def test_audit_reports_an_event_altered_after_sealing(tmp_path: Path) -> None:
    pki = DevelopmentPKI.ensure(tmp_path / "pki")
    tsa = TimeStampAuthority(pki.tsa_signer())
    seal_signer = pki.seal_signer()

    async def timestamp(data: bytes) -> tuple[bytes, datetime]:
        response = tsa.respond(build_request(data).der)
        verified = verify_timestamp_response(response, data, [pki.root_certificate])
        assert verified.gen_time is not None
        return response, verified.gen_time

    store, blobs = InMemoryEventStore(), InMemoryBlobStore()
    documents = {}
    for content in (b"first document", b"second document"):
        blob = await blobs.put("acme", one_chunk(content))
        document_id = str(uuid.uuid4())
        event = events_pb2.DocumentIngested(
            tenant=common_pb2.TenantId(value="acme"),
            document_id=common_pb2.DocumentId(value=document_id),
            sha256=common_pb2.Digest(value=bytes.fromhex(blob.sha256)),
            sha512=common_pb2.Digest(value=bytes.fromhex(blob.sha512)),
            size_bytes=blob.size,
        )
        await store.append(
            StreamName("acme", "document", document_id), [NewEvent.of(event)], NO_STREAM
        )
        documents[document_id] = event

    sealer = Sealer(
        store,
        origin="archive.test",
        seal=lambda data: seal_detached(data, seal_signer),
        timestamp=timestamp,
        max_leaves=10,
        max_delay=0.0,
    )
    task = asyncio.create_task(sealer.run(tick=0.01))
    async with asyncio.timeout(10):
        while "acme" not in sealer.logs or sealer.logs["acme"].size < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    verify = checkpoint_verifier(pki.root_certificate)

    clean = await run_audit(store, blobs, sealer.logs["acme"], verify, trigger="on-demand")
    assert list(clean.failures) == [] and clean.events_checked == 2

    # Someone with access to the storage rewrites the second deposit's recorded size.
    victim_id = list(documents)[1]
    index = next(i for i, e in enumerate(store._all) if victim_id in str(e.stream))
    forged = events_pb2.DocumentIngested()
    forged.CopyFrom(documents[victim_id])
    forged.size_bytes += 1
    store._all[index] = dataclasses.replace(store._all[index], data=forged.SerializeToString())
    report = await run_audit(store, blobs, sealer.logs["acme"], verify, trigger="on-demand")
    assert [(f.kind, f.document_id) for f in report.failures] == [("journal", victim_id)]
    assert "differs from what was sealed" in report.failures[0].description
    # The report is itself an event of the tenant, so the next checkpoint seals it.
    audits = [e async for e in store.read_all() if e.stream.category == "audit"]
    assert len(audits) == 2
    assert audits[-1].decode().audit_id == report.audit_id
