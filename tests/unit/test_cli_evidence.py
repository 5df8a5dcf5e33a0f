"""The SDK's sealing calls and archivectl's evidence, checkpoint, verify-extends and audit
commands, against the real servicers on in-memory stores (tests/archive_in_memory.py): a
running sealer with the development PKI, so bundles, checkpoints, consistency proofs and
audits are the sealing service's own."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from archive_in_memory import ORIGIN, InMemoryArchive
from waiting import eventually

from archive.client import ArchiveClient
from archive.client.errors import NotReady
from archive.client.models import SignedCheckpoint
from archive.sealing.keys import DevelopmentPKI
from archive.verify import layout, verify_consistency_between, verify_evidence
from tools.archivectl import main

CONTENT = b"%PDF-1.7\n" + b"evidence body " * 400 + b"\n%%EOF\n"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def put(capsys: pytest.CaptureFixture[str], folder: Path, name: str = "invoice.pdf") -> str:
    """Deposit CONTENT (plus the name, so each differs) with the CLI; its document id."""
    file = folder / name
    file.write_bytes(CONTENT + name.encode())
    code, out, err = run(capsys, "put", str(file), "--json")
    assert code == 0, err
    return str(json.loads(out)["document_id"])


def checkpoint_of(archive: InMemoryArchive, size: int = 0) -> SignedCheckpoint:
    async def get() -> SignedCheckpoint:
        async with ArchiveClient(archive.config(archive.tokens["acme"])) as client:
            return await client.get_checkpoint(size)

    return asyncio.run(get())


def tree_size(out: str) -> int:
    found = re.search(r"^tree_size:\s+(\d+)$", out, flags=re.MULTILINE)
    assert found is not None, out
    return int(found.group(1))


# ---- the SDK ----


async def test_sdk_get_evidence_waits_while_not_ready(
    archive: InMemoryArchive, client: ArchiveClient
) -> None:
    archive.tsa_up = False  # nothing gets sealed: the archive answers NOT_READY_YET
    archive.evidence_wait = 0.05
    receipt = await client.upload(CONTENT, file_name="invoice.pdf")

    with pytest.raises(NotReady) as raised:
        await client.get_evidence(receipt.document_id, not_ready_attempts=2)
    assert raised.value.reason == "NOT_READY_YET" and raised.value.retry_delay == 1.0
    assert archive.calls.count("GetEvidence") == 2

    waiting = asyncio.create_task(client.get_evidence(receipt.document_id, not_ready_attempts=999))
    await eventually(lambda: archive.calls.count("GetEvidence") >= 4, what="a refused retry")
    archive.tsa_up = True
    zipped = await waiting
    assert verify_evidence(CONTENT, zipped, document_id=receipt.document_id).ok


async def test_sdk_checkpoints_proofs_and_audit(
    archive: InMemoryArchive, client: ArchiveClient
) -> None:
    first = await client.upload(CONTENT, file_name="a.pdf")
    await client.get_evidence(first.document_id)  # once sealed
    old = await client.get_checkpoint()
    for number in range(3):
        await client.upload(CONTENT + bytes([number]), file_name=f"{number}.pdf")

    async def grown() -> bool:
        return (await client.get_checkpoint()).tree_size > old.tree_size

    await eventually(grown, what="a checkpoint of the grown log")
    latest = await client.get_checkpoint()
    again = await client.get_checkpoint(old.tree_size)
    proof = await client.get_consistency_proof(old.tree_size, latest.tree_size)
    audit = await client.run_integrity_audit()

    assert again.checkpoint == old.checkpoint
    assert (proof.from_size, proof.to_size) == (old.tree_size, latest.tree_size)
    assert verify_consistency_between(old.checkpoint, latest.checkpoint, proof.hashes).ok
    assert audit.ok and uuid.UUID(audit.audit_id) and audit.documents_checked == 4
    assert audit.tree_size >= latest.tree_size


# ---- archivectl ----

pytestmark = pytest.mark.usefixtures("archive_env")


def test_cli_evidence_saves_a_checked_bundle_that_verify_accepts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document_id = put(capsys, tmp_path)
    target = tmp_path / "evidence.zip"
    code, out, err = run(capsys, "evidence", document_id.upper(), "-o", str(target))
    assert code == 0, err
    assert document_id in out and re.search(r"leaf \d+ of \d+", out), out
    assert "archivectl verify FILE --evidence" in err

    document = tmp_path / "invoice.pdf"
    assert run(capsys, "verify", str(document), "--evidence", str(target))[0] == 0


def test_cli_evidence_warns_and_exits_6_on_a_bundle_that_does_not_verify(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document_id = put(capsys, tmp_path)
    other_root = DevelopmentPKI.ensure(tmp_path / "other", "Somebody Else").directory
    target = tmp_path / "evidence.zip"
    code, out, err = run(
        capsys,
        "evidence",
        document_id,
        "-o",
        str(target),
        "--trust-root",
        str(other_root / DevelopmentPKI.ROOT),
        "--json",
    )
    assert code == 6
    assert "warning" in err and "seal:" in err
    assert json.loads(out)["verified"] is False
    # Kept, for a report: it is the archive's own bundle, good under the root it ships.
    assert run(capsys, "verify", str(tmp_path / "invoice.pdf"), "--evidence", str(target))[0] == 0


def test_cli_evidence_of_an_unknown_document_exits_4(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(capsys, "evidence", str(uuid.uuid4()), "-o", str(tmp_path / "e.zip"))
    assert code == 4 and "not found" in err and "DOCUMENT_NOT_FOUND" in err
    assert not (tmp_path / "e.zip").exists()


def test_cli_checkpoint_then_verify_extends(
    archive: InMemoryArchive, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kept = tmp_path / "kept"
    code, out, err = run(capsys, "checkpoint", "-o", str(kept))
    assert code == 0, err
    for name in layout.EXPECTED_FILES[2:8]:
        assert (kept / name).is_file(), name
    size = tree_size(out)
    assert (kept / "checkpoint.txt").read_bytes() == checkpoint_of(archive, size).checkpoint

    code, out, _ = run(capsys, "checkpoint", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["ok"] and shown["checkpoint"].startswith(f"{ORIGIN}/acme\n")

    # The log grows: the latest checkpoint extends the one kept.
    for name in ("a.pdf", "b.pdf"):
        document_id = put(capsys, tmp_path, name)
    archive.wait_sealed(document_id)
    newer = tmp_path / "newer"
    code, out, err = run(capsys, "verify-extends", str(kept), "-o", str(newer))
    assert code == 0, out + err
    assert re.search(r"^ok\s+consistency\s", out, flags=re.MULTILINE), out
    assert f"extends the kept checkpoint of {size} leaves" in out
    latest = checkpoint_of(archive)
    assert latest.tree_size > size
    assert (newer / "checkpoint.txt").read_bytes() == latest.checkpoint

    code, out, _ = run(capsys, "verify-extends", str(kept), "--json")
    result = json.loads(out)
    assert code == 0 and result["ok"] and result["consistency"]["ok"]
    assert result["new"]["tree_size"] == latest.tree_size


def test_cli_verify_extends_catches_a_rewritten_log_and_a_forged_kept_checkpoint(
    archive: InMemoryArchive,
    start_archive: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    kept = tmp_path / "kept"
    code, out, _ = run(capsys, "checkpoint", "-o", str(kept))
    assert code == 0
    size = tree_size(out)

    # Another archive of the same provider (same keys, same origin) with another history of
    # acme, which has a checkpoint of the same size: a rewritten log, properly signed.
    fork: InMemoryArchive = start_archive()
    assert checkpoint_of(fork).tree_size == size
    monkeypatch.setenv("ARCHIVE_ENDPOINT", fork.endpoint)
    monkeypatch.setenv("ARCHIVE_TOKEN", fork.tokens["acme"])
    fork.wait_sealed(put(capsys, tmp_path))
    code, out, err = run(capsys, "verify-extends", str(kept))
    assert code == 1
    assert "journal: consistency:" in err and "rewritten" in err, err
    assert re.search(r"^FAILED\s+consistency\s", out, flags=re.MULTILINE), out

    # A kept checkpoint altered on disk fails its own seal.
    text = kept / "checkpoint.txt"
    text.write_bytes(text.read_bytes().replace(b"acme", b"acne"))
    code, _, err = run(capsys, "verify-extends", str(kept))
    assert code == 1 and "kept checkpoint: seal:" in err and str(text) in err

    assert run(capsys, "verify-extends", str(tmp_path / "nowhere"))[0] == 2


def test_cli_audit_exit_codes(
    archive: InMemoryArchive, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document_id = put(capsys, tmp_path)
    archive.wait_sealed(document_id)
    code, out, err = run(capsys, "audit")
    assert (code, err) == (0, "")
    assert "no failure" in out and "1 checked" in out

    archive.rot(document_id)
    code, out, err = run(capsys, "audit")
    assert code == 1 and "1 failure" in err
    assert f"FAILED  content document {document_id}" in out

    code, out, _ = run(capsys, "audit", "--json")
    report: dict[str, Any] = json.loads(out)
    assert code == 1 and report["ok"] is False and report["failures"][0]["kind"] == "content"
