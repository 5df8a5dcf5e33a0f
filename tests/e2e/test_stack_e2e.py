"""End to end over real processes: `archive up` (nats-server, ingest, search, gateway), the
`archivectl` CLI and the SDK against it, as a user and an SRE would use them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from stack_support import Launch

from archive.client import ArchiveClient, ClientConfig, UploadItem, UploadOutcome
from archive.client.errors import ArchiveError
from archive.envfile import read_env_file
from archive.eventstore.jetstream import JetStreamEventStore
from archive.natsserver import free_port
from archive.v1 import events_pb2
from tools.launcher.layout import pid_alive

pytestmark = pytest.mark.integration

PDF = b"%PDF-1.7\n"
ARCHIVECTL = (sys.executable, "-m", "tools.archivectl")


def start_stack(launcher: Callable[..., Launch], nats_port: int) -> tuple[Launch, dict[str, str]]:
    launch = launcher(ARCHIVE_NATS_PORT=str(nats_port))
    launch.wait_until_up()
    env = read_env_file(launch.data / "archive.env")
    return launch, env


def archivectl(env_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    return subprocess.run(
        [sys.executable, "-m", "tools.archivectl", "--env-file", str(env_file), *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def events_of(nats_port: int, type_name: str) -> list[events_pb2.DocumentAccessed]:
    store = await JetStreamEventStore.connect(f"nats://127.0.0.1:{nats_port}")
    try:
        return [e.decode() async for e in store.read_all() if e.type == type_name]  # type: ignore[misc]
    finally:
        await store.close()


def client_for(env: dict[str, str], **overrides: object) -> ArchiveClient:
    return ArchiveClient(
        ClientConfig(endpoint=env["ARCHIVE_ENDPOINT"], token=env["ARCHIVE_TOKEN"], **overrides)  # type: ignore[arg-type]
    )


async def test_deposit_200_documents_with_the_cli_then_retrieve_list_and_page(
    launcher: Callable[..., Launch], tmp_path: Path
) -> None:
    nats_port = free_port()
    launch, env = start_stack(launcher, nats_port)
    env_file = launch.data / "archive.env"
    folder = tmp_path / "statements"
    (folder / "2026-11").mkdir(parents=True)
    originals: dict[str, bytes] = {}
    for i in range(200):
        content = PDF + os.urandom(2_000 + i * 37)
        path = folder / "2026-11" / f"statement-{i:03}.pdf"
        path.write_bytes(content)
        originals[str(path)] = content

    put = await asyncio.to_thread(
        archivectl,
        env_file,
        "put",
        str(folder),
        "--json",
        "--class",
        "statement",
        "--meta",
        "month=2026-11",
        "--concurrency",
        "16",
    )
    assert put.returncode == 0, put.stderr
    lines = [json.loads(line) for line in put.stdout.splitlines()]
    assert len(lines) == 200
    by_file = {line["file"]: line for line in lines}
    assert set(by_file) == set(originals)
    for file, line in by_file.items():
        assert line["sha256"] == hashlib.sha256(originals[file]).hexdigest()
    ids = {line["document_id"]: file for file, line in by_file.items()}
    assert len(ids) == 200

    # Every document back, byte for byte (the SDK verifies SHA-256 and size as it writes).
    out = tmp_path / "out"
    out.mkdir()
    async with client_for(env) as client:
        for document_id, file in ids.items():
            info = await client.download(document_id, out / document_id)
            assert (out / document_id).read_bytes() == originals[file]
            assert info.sha256 == by_file[file]["sha256"]
        # Newest first, in pages of 50, the last page saying there is no other.
        seen: list[str] = []
        token, pages = "", 0
        while True:
            page = await client.list_page(
                page_size=50, page_token=token, document_class="statement"
            )
            seen.extend(d.document_id for d in page.documents)
            pages += 1
            token = page.next_page_token
            if not token:
                break
        assert pages == 4 and len(seen) == 200 and set(seen) == set(ids)
        positions = [(await client.get_document(d)).event_position for d in seen[:20]]
        assert positions == sorted(positions, reverse=True)

    # The CLI's own retrieval and listing, and its exit code for an unknown document.
    some_id = next(iter(ids))
    got = await asyncio.to_thread(archivectl, env_file, "get", some_id, "-o", str(tmp_path / "g"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "g").read_bytes() == originals[ids[some_id]]
    listed = await asyncio.to_thread(archivectl, env_file, "ls", "--json", "--limit", "1000")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 200
    missing = await asyncio.to_thread(
        archivectl,
        env_file,
        "get",
        "00000000-0000-4000-8000-000000000000",
        "-o",
        str(tmp_path / "none"),
    )
    assert missing.returncode == 4 and not (tmp_path / "none").exists()

    # An archive keeps track of consultation: one content access per download.
    accessed = await events_of(nats_port, "archive.v1.DocumentAccessed")
    content_reads = [a for a in accessed if a.access_kind == "content"]
    assert len(content_reads) == 201
    assert {a.document_id.value for a in content_reads} == set(ids)
    assert launch.stop() == 0


async def test_sigkill_of_ingest_mid_uploads_loses_no_receipted_deposit(
    launcher: Callable[..., Launch],
) -> None:
    nats_port = free_port()
    launch, env = start_stack(launcher, nats_port)
    documents = {f"key-{i:03}": PDF + os.urandom(20_000) for i in range(240)}
    receipts: dict[str, object] = {}
    failures: dict[str, ArchiveError] = {}
    killed = asyncio.Event()

    async with client_for(env, max_attempts=1) as client:  # no SDK retries: see raw effects
        queue = list(documents)

        async def worker() -> None:
            while queue:
                key = queue.pop()
                try:
                    receipts[key] = await client.upload(
                        documents[key], file_name=f"{key}.pdf", idempotency_key=key
                    )
                except ArchiveError as exc:
                    failures[key] = exc
                if len(receipts) >= 60 and not killed.is_set():
                    killed.set()
                    ingest_pid = launch.pid("ingest")
                    assert ingest_pid is not None
                    os.kill(ingest_pid, signal.SIGKILL)  # mid-flight: 16 uploads in progress

        await asyncio.gather(*[worker() for _ in range(16)])
        assert killed.is_set()
        assert failures, "the kill should have broken some uploads in flight"

        # The launcher restarts ingest; the client retries what failed, with the same keys.
        async with client_for(env, max_attempts=10, initial_backoff=0.5) as retrying:
            for key in list(failures):
                receipt = await retrying.upload(
                    documents[key], file_name=f"{key}.pdf", idempotency_key=key
                )
                receipts[key] = receipt
            # Retrying keys that had succeeded replays their receipt: no duplicate.
            for key in list(documents)[:10]:
                again = await retrying.upload(
                    documents[key], file_name=f"{key}.pdf", idempotency_key=key
                )
                assert again.replayed
                assert again.document_id == receipts[key].document_id  # type: ignore[attr-defined]

            assert set(receipts) == set(documents)
            for key, receipt in receipts.items():
                data = await retrying.download_bytes(receipt.document_id)  # type: ignore[attr-defined]
                assert data == documents[key]
            # Nothing partial is visible: every listed document is one of ours, whole.
            listed = [d async for d in retrying.list_documents(page_size=500)]
            assert len(listed) == len(documents)
            sha_by_key = {k: hashlib.sha256(v).hexdigest() for k, v in documents.items()}
            assert {d.sha256 for d in listed} == set(sha_by_key.values())

    ingested = await events_of(nats_port, "archive.v1.DocumentIngested")
    assert len(ingested) == len(documents)  # one deposit event per document, no duplicate
    new_pid = launch.pid("ingest")
    assert new_pid is not None and pid_alive(new_pid)
    assert launch.stop() == 0


async def test_sigkill_of_ingest_mid_bulk_upload_is_resumed_by_the_sdk_without_duplicates(
    launcher: Callable[..., Launch],
) -> None:
    nats_port = free_port()
    launch, env = start_stack(launcher, nats_port)
    documents = [PDF + os.urandom(10_000) for _ in range(400)]
    items = [
        UploadItem(content, file_name=f"s{i:03}.pdf", idempotency_key=f"bulk-{i:03}")
        for i, content in enumerate(documents)
    ]
    outcomes: dict[int, UploadOutcome] = {}
    killed_pid = None
    async with client_for(env, max_attempts=20, initial_backoff=0.5) as client:
        async for outcome in client.upload_many(items, streams=4):
            outcomes[outcome.index] = outcome
            if len(outcomes) == 100:
                killed_pid = launch.pid("ingest")
                assert killed_pid is not None
                os.kill(killed_pid, signal.SIGKILL)  # four streams, many documents in flight
        # The other 300 documents went after the kill, over new streams to a new process.
        assert killed_pid is not None and launch.pid("ingest") not in (None, killed_pid)
        assert sorted(outcomes) == list(range(len(items)))
        failed = {i: o.error for i, o in outcomes.items() if o.error is not None}
        assert not failed, failed
        # Every receipt holds: the content is there, whole.
        for index, outcome in outcomes.items():
            assert outcome.receipt is not None
            data = await client.download_bytes(outcome.receipt.document_id)
            assert data == documents[index]
    ingested = await events_of(nats_port, "archive.v1.DocumentIngested")
    assert len(ingested) == len(documents)  # the resent documents were replayed, not copied
    assert len({e.document_id.value for e in ingested}) == len(documents)  # type: ignore[attr-defined]
    assert launch.stop() == 0


async def test_deposit_then_evidence_verifies_offline_and_survives_a_sealer_kill(
    launcher: Callable[..., Launch], tmp_path: Path
) -> None:
    nats_port = free_port()
    launch, env = start_stack(launcher, nats_port)
    env_file = launch.data / "archive.env"
    document = tmp_path / "contract.pdf"
    document.write_bytes(PDF + os.urandom(40_000))

    put = await asyncio.to_thread(archivectl, env_file, "put", str(document), "--json")
    assert put.returncode == 0, put.stderr
    document_id = json.loads(put.stdout)["document_id"]
    bundle = tmp_path / "bundle.zip"
    got = await asyncio.to_thread(archivectl, env_file, "evidence", document_id, "-o", str(bundle))
    assert got.returncode == 0, got.stderr + got.stdout
    verified = await asyncio.to_thread(
        archivectl, env_file, "verify", str(document), "--evidence", str(bundle)
    )
    assert verified.returncode == 0, verified.stderr + verified.stdout
    altered = tmp_path / "altered.pdf"
    data = bytearray(document.read_bytes())
    data[-1] ^= 0x01
    altered.write_bytes(bytes(data))
    refused = await asyncio.to_thread(
        archivectl, env_file, "verify", str(altered), "--evidence", str(bundle)
    )
    assert refused.returncode == 1
    assert "document" in (refused.stderr + refused.stdout).lower()

    # Kill the sealer while deposits keep coming: the restarted sealer seals every one.
    async with client_for(env) as client:
        receipts = [
            await client.upload(PDF + os.urandom(1000), file_name=f"d{i}.pdf") for i in range(20)
        ]
        sealing_pid = launch.pid("sealing")
        assert sealing_pid is not None
        os.kill(sealing_pid, signal.SIGKILL)
        receipts += [
            await client.upload(PDF + os.urandom(1000), file_name=f"e{i}.pdf") for i in range(20)
        ]
        for receipt in receipts:  # waits out the restart (NOT_READY / UNAVAILABLE retried)
            evidence = await client.get_evidence(receipt.document_id)
            assert evidence[:2] == b"PK"
    assert launch.pid("sealing") != sealing_pid
    assert launch.stop() == 0


async def test_put_interrupted_by_a_sigkill_of_ingest_then_run_again_leaves_each_file_once(
    launcher: Callable[..., Launch], tmp_path: Path
) -> None:
    nats_port = free_port()
    launch, _ = start_stack(launcher, nats_port)
    env_file = launch.data / "archive.env"
    folder = tmp_path / "statements"
    folder.mkdir()
    for i in range(300):
        (folder / f"statement-{i:03}.pdf").write_bytes(PDF + os.urandom(8_000))

    # First run: after 100 receipts, ingest is killed and the user presses Ctrl-C.
    killed_pid = await asyncio.to_thread(put_then_kill_ingest, launch, env_file, folder, 100)
    launch.wait_for("a new ingest", lambda: launch.pid("ingest") not in (None, killed_pid))
    launch.wait_for(
        "ingest serving", lambda: archivectl(env_file, "whoami").returncode == 0 or None
    )

    # Second run: the same command, nothing deposited twice.
    again = await asyncio.to_thread(archivectl, env_file, "put", str(folder), "--json")
    assert again.returncode == 0, again.stderr
    lines = [json.loads(line) for line in again.stdout.splitlines()]
    assert len(lines) == 300 and all("document_id" in line for line in lines)
    assert sum(line["replayed"] for line in lines) >= 100
    ingested = await events_of(nats_port, "archive.v1.DocumentIngested")
    assert len(ingested) == 300
    assert len({e.document_id.value for e in ingested}) == 300  # type: ignore[attr-defined]

    # A third run finds every one already archived.
    third = await asyncio.to_thread(archivectl, env_file, "put", str(folder), "--json")
    assert third.returncode == 0, third.stderr
    assert all(json.loads(line)["replayed"] for line in third.stdout.splitlines())
    assert len(await events_of(nats_port, "archive.v1.DocumentIngested")) == 300
    assert launch.stop() == 0


def put_then_kill_ingest(launch: Launch, env_file: Path, folder: Path, after: int) -> int:
    """Runs `archivectl put FOLDER`; after `after` receipts, SIGKILLs ingest and interrupts
    the command as Ctrl-C would. Returns the killed pid."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    first = subprocess.Popen(
        [*ARCHIVECTL, "--env-file", str(env_file), "put", str(folder), "--json"],
        env=clean,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert first.stdout is not None
    receipted = 0
    killed_pid = None
    for line in first.stdout:
        receipted += "document_id" in json.loads(line)
        if receipted == after:
            killed_pid = launch.pid("ingest")
            assert killed_pid is not None
            os.kill(killed_pid, signal.SIGKILL)
            first.send_signal(signal.SIGINT)
            break
    first.stdout.close()
    assert first.wait(60) != 0  # interrupted, not finished
    assert killed_pid is not None
    return killed_pid
