"""archivectl, called in-process through main(), against the real servicers on in-memory
stores, served over gRPC from a thread of their own (tests/archive_in_memory.py; the CLI
runs its own asyncio.run)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from archive_in_memory import InMemoryArchive

from tools.archivectl import main
from tools.archivectl.args import EPILOG
from tools.archivectl.output import Progress
from tools.archivectl.put import collect_files, put_key

# ARCHIVE_ENDPOINT, ARCHIVE_TOKEN (tenant acme) and ARCHIVE_OPERATOR_TOKEN point at it.
pytestmark = pytest.mark.usefixtures("archive_env")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """invoices/{a.pdf, b.txt, 2025/{c.bin, d.txt}} plus a symlink that put skips."""
    root = tmp_path / "invoices"
    (root / "2025").mkdir(parents=True)
    (root / "a.pdf").write_bytes(b"%PDF-1.7 a")
    (root / "b.txt").write_bytes(b"bee")
    (root / "2025" / "c.bin").write_bytes(os.urandom(300_000))
    (root / "2025" / "d.txt").write_bytes(b"")
    (root / "link.txt").symlink_to(root / "b.txt")
    return root


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def run(capsys: pytest.CaptureFixture[Any], *argv: str) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); works with capsys and capsysbinary."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    if isinstance(out, bytes):
        return code, out.decode(), err.decode()
    return code, out, err


# ---- put ----


def test_put_dir_json_prints_one_line_per_file_with_matching_digests(
    capsys: pytest.CaptureFixture[str], archive: InMemoryArchive, tree: Path
) -> None:
    code, out, err = run(
        capsys, "put", str(tree), "--json", "--meta", "year=2025", "--class", "invoice"
    )

    assert (code, err) == (0, "")  # stderr is not a terminal: no progress bar
    lines = json_lines(out)
    expected = {
        os.path.join(str(tree), "a.pdf"),
        os.path.join(str(tree), "b.txt"),
        os.path.join(str(tree), "2025", "c.bin"),
        os.path.join(str(tree), "2025", "d.txt"),
    }
    assert {line["file"] for line in lines} == expected
    for line in lines:
        content = Path(line["file"]).read_bytes()
        assert line["sha256"] == hashlib.sha256(content).hexdigest()
        assert line["size"] == len(content)
        assert uuid.UUID(line["document_id"])
        assert line["replayed"] is False
        assert {"media_type", "puid", "received_at"} <= line.keys()
    stored = archive.deposits()
    assert len(stored) == 4
    assert {d.document_class for d in stored} == {"invoice"}
    assert all(dict(d.metadata) == {"year": "2025"} for d in stored)


def test_put_human_output_is_one_line_per_file(
    capsys: pytest.CaptureFixture[str], archive: InMemoryArchive, tree: Path
) -> None:
    code, out, err = run(capsys, "put", str(tree / "a.pdf"), str(tree / "b.txt"))

    assert (code, err) == (0, "")
    lines = sorted(out.splitlines())  # in order of completion
    assert [line.split()[0] for line in lines] == [str(tree / "a.pdf"), str(tree / "b.txt")]
    assert f"sha256:{hashlib.sha256(b'bee').hexdigest()}" in lines[1]


def test_put_run_again_deposits_nothing_twice_and_prints_the_original_receipts(
    capsys: pytest.CaptureFixture[str], archive: InMemoryArchive, tree: Path
) -> None:
    code, out, _ = run(capsys, "put", str(tree), "--json")
    first = {line["file"]: line for line in json_lines(out)}
    assert code == 0 and len(archive.deposits()) == 4

    # The same command again, then one of its files named on its own (its key is its name).
    code, out, _ = run(capsys, "put", str(tree), "--json")
    again = {line["file"]: line for line in json_lines(out)}
    assert code == 0 and len(archive.deposits()) == 4
    assert again.keys() == first.keys()
    for name, line in again.items():
        assert line["replayed"] is True
        assert line["document_id"] == first[name]["document_id"]
        assert line["event_position"] == first[name]["event_position"]
    code, out, _ = run(capsys, "put", str(tree / "b.txt"))
    assert code == 0 and "(already archived: original receipt)" in out
    assert len(archive.deposits()) == 4

    # A changed file is a new document; the others stay as they were.
    (tree / "b.txt").write_bytes(b"bee, second edition")
    code, out, _ = run(capsys, "put", str(tree), "--json")
    replayed = {Path(line["file"]).name: line["replayed"] for line in json_lines(out)}
    assert replayed == {"a.pdf": True, "b.txt": False, "c.bin": True, "d.txt": True}
    assert len(archive.deposits()) == 5

    # --new deposits everything again, on purpose.
    code, out, _ = run(capsys, "put", str(tree), "--json", "--new")
    assert code == 0 and not any(line["replayed"] for line in json_lines(out))
    assert len(archive.deposits()) == 9


def test_put_keys_depend_on_relative_path_and_content_only() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    key = put_key("2025/janvier relevé.pdf", digest)
    assert key.startswith("put:v1:") and key.isascii() and " " not in key and len(key) <= 128
    assert key == put_key("2025/janvier relevé.pdf", digest)
    assert key != put_key("2025/fevrier.pdf", digest)
    assert key != put_key("2025/janvier relevé.pdf", hashlib.sha256(b"y").hexdigest())


def test_directories_are_walked_sorted_regular_files_only(tree: Path) -> None:
    walked = [f.shown for f in collect_files([str(tree)])]
    assert walked == [
        os.path.join(str(tree), "a.pdf"),
        os.path.join(str(tree), "b.txt"),
        os.path.join(str(tree), "2025", "c.bin"),
        os.path.join(str(tree), "2025", "d.txt"),
    ]


@pytest.mark.archive_settings(max_document_bytes=1000)  # c.bin is too large
def test_put_with_some_failures_exits_1_and_reports_each(
    capsys: pytest.CaptureFixture[str], tree: Path
) -> None:
    code, out, err = run(capsys, "put", str(tree), "--json", "--concurrency", "2")

    assert (code, err) == (1, "")
    lines = json_lines(out)
    failed = [line for line in lines if "error" in line]
    assert len(lines) == 4 and len(failed) == 1
    assert failed[0]["file"].endswith("c.bin")
    assert failed[0]["code"] == "RESOURCE_EXHAUSTED" and failed[0]["reason"] == "BLOB_TOO_LARGE"

    code, out, err = run(capsys, "put", str(tree))  # without --json: errors on stderr
    assert code == 1
    assert "c.bin" in err and "BLOB_TOO_LARGE" in err
    assert len(out.splitlines()) == 3


def test_put_usage_errors_exit_2_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], archive: InMemoryArchive, tree: Path
) -> None:
    code, _, err = run(capsys, "put", str(tree), str(tree / "missing.pdf"))
    assert code == 2 and "missing.pdf: no such file or directory" in err

    code, _, err = run(capsys, "put", str(tree), "--meta", "no-equals-sign")
    assert code == 2 and "KEY=VALUE" in err

    code, _, _ = run(capsys, "put", str(tree), "--concurrency", "0")
    assert code == 2
    assert archive.calls == []


def test_missing_endpoint_or_token_exits_2_without_printing_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tree: Path
) -> None:
    monkeypatch.delenv("ARCHIVE_ENDPOINT")
    code, out, err = run(capsys, "whoami")
    assert code == 2 and "ARCHIVE_ENDPOINT is not set" in err

    monkeypatch.setenv("ARCHIVE_ENDPOINT", "127.0.0.1:1")
    token = os.environ["ARCHIVE_TOKEN"]
    monkeypatch.delenv("ARCHIVE_TOKEN")
    code, out, err = run(capsys, "put", str(tree))
    assert code == 2 and err.count("ARCHIVE_TOKEN is not set") == 1
    assert token not in out + err


def test_a_refused_token_exits_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tree: Path
) -> None:
    monkeypatch.setenv("ARCHIVE_TOKEN", "arc_unknown0000_secret")
    assert run(capsys, "whoami")[0] == 3
    code, out, err = run(capsys, "put", str(tree), "--json")
    assert code == 3  # every file failed for the same reason
    assert {line["code"] for line in json_lines(out)} == {"UNAUTHENTICATED"}
    assert "arc_unknown0000_secret" not in out + err

    monkeypatch.setenv("ARCHIVE_OPERATOR_TOKEN", "not-the-operator-token")
    assert run(capsys, "tenant", "create", "globex")[0] == 3


def test_unavailable_exits_5_after_the_retries(
    capsys: pytest.CaptureFixture[str], archive: InMemoryArchive, tree: Path
) -> None:
    code, out, _ = run(capsys, "put", str(tree / "a.pdf"), "--json")
    document_id = json_lines(out)[0]["document_id"]
    archive.store.fail_appends(3)  # the consultation cannot be recorded: info is refused
    archive.calls.clear()
    code, _, err = run(capsys, "info", document_id, "--retries", "1")
    assert code == 5 and "event store is temporarily unavailable" in err
    assert archive.calls == ["GetDocument"] * 2

    code, _, _ = run(capsys, "--endpoint", "127.0.0.1:1", "--retries", "0", "whoami")
    assert code == 5  # nothing listens there


# ---- read side ----


def test_ls_info_get_round_trip(capsysbinary: pytest.CaptureFixture[bytes], tree: Path) -> None:
    capsys = capsysbinary
    code, out, _ = run(capsys, "put", str(tree), "--json", "--class", "invoice")
    assert code == 0
    deposited = {line["document_id"]: line for line in json_lines(out)}

    code, out, _ = run(capsys, "ls", "--json")
    assert code == 0
    listed = json_lines(out)
    assert {line["document_id"] for line in listed} == set(deposited)
    positions = [line["event_position"] for line in listed]
    assert positions == sorted(positions, reverse=True)  # newest first

    code, out, _ = run(capsys, "ls", "--limit", "2", "--class", "invoice")
    assert code == 0 and len(out.splitlines()) == 2
    assert run(capsys, "ls", "--class", "payslip")[1] == ""

    document_id, line = next(iter(deposited.items()))
    code, out, _ = run(capsys, "info", document_id, "--json")
    assert code == 0 and json.loads(out)["sha256"] == line["sha256"]
    code, out, _ = run(capsys, "info", document_id)
    assert code == 0 and f"sha256:         {line['sha256']}" in out

    copy = tree.parent / "copy.bin"
    code, out, _ = run(capsys, "get", document_id, "-o", str(copy))
    assert code == 0 and line["sha256"] in out
    assert copy.read_bytes() == Path(line["file"]).read_bytes()
    assert run(capsys, "get", document_id, "-o", str(tree))[0] == 2  # a directory

    assert main(["get", document_id, "-o", "-"]) == 0
    assert capsysbinary.readouterr().out == Path(line["file"]).read_bytes()


def test_get_unknown_document_exits_4(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "get", str(uuid.uuid4()), "-o", str(tmp_path / "x"))
    assert code == 4 and "DOCUMENT_NOT_FOUND" in err
    assert run(capsys, "info", str(uuid.uuid4()))[0] == 4
    assert run(capsys, "info", "not-a-uuid")[0] == 2  # refused as invalid
    assert list(tmp_path.iterdir()) == []


def test_get_of_damaged_content_exits_6_and_leaves_no_file(
    capsysbinary: pytest.CaptureFixture[bytes], archive: InMemoryArchive, tree: Path
) -> None:
    capsys = capsysbinary
    code, out, _ = run(capsys, "put", str(tree / "a.pdf"), "--json")
    document_id = json_lines(out)[0]["document_id"]
    archive.rot(document_id)
    target = tree.parent / "out"
    target.mkdir()

    code, _, err = run(capsys, "get", document_id, "-o", str(target / "a.pdf"))

    assert code == 6 and "does not match its digest" in err and "CONTENT_DAMAGED" in err
    assert list(target.iterdir()) == []
    assert main(["get", document_id, "-o", "-"]) == 6
    assert b"must not be trusted" in capsysbinary.readouterr().err


# ---- identity and administration ----


def test_tenant_create_json_prints_a_working_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "tenant", "create", "globex", "--display-name", "Globex", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["tenant"] == "globex"
    assert created["token"].startswith(f"arc_{created['token_id']}_")

    monkeypatch.setenv("ARCHIVE_TOKEN", created["token"])
    code, out, _ = run(capsys, "whoami", "--json")
    assert code == 0
    assert json.loads(out) == {
        "tenant": "globex",
        "token_id": created["token_id"],
        "roles": ["audit", "deposit", "read", "retention"],  # a tenant's first token: all
    }

    code, out, err = run(capsys, "token", "issue", "globex", "--description", "ci")
    assert code == 0 and "token:    arc_" in out and "shown only once" in err
    code, out, _ = run(capsys, "token", "revoke", "globex", created["token_id"])
    assert code == 0 and created["token_id"] in out
    assert run(capsys, "whoami")[0] == 3  # the revoked token no longer works
    assert run(capsys, "tenant", "create", "globex")[0] == 1  # already exists
    assert run(capsys, "token", "issue", "nobody")[0] == 4


def test_a_token_with_roles_can_do_what_they_allow_and_nothing_else(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tree: Path
) -> None:
    code, out, _ = run(
        capsys, "token", "issue", "acme", "--role", "retention", "--role", "read", "--json"
    )
    assert code == 0
    issued = json.loads(out)
    assert issued["token"].startswith(f"arc_{issued['token_id']}_")
    assert issued["roles"] == ["read", "retention"]

    monkeypatch.setenv("ARCHIVE_TOKEN", issued["token"])
    code, out, _ = run(capsys, "whoami", "--json")
    assert json.loads(out)["roles"] == ["read", "retention"]
    assert run(capsys, "ls")[0] == 0  # read
    code, out, err = run(capsys, "put", str(tree / "a.pdf"), "--json")
    assert code == 3  # PERMISSION_DENIED: no deposit role
    refused = json_lines(out)[0]
    assert refused["code"] == "PERMISSION_DENIED" and refused["reason"] == "MISSING_ROLE"
    assert "'deposit'" in refused["error"]

    # Without --role: what every token could do before roles existed.
    code, out, _ = run(capsys, "token", "issue", "acme", "--json")
    assert json.loads(out)["roles"] == ["audit", "deposit", "read"]
    code, _, err = run(capsys, "token", "issue", "acme", "--role", "admin")
    assert code == 2 and "invalid choice" in err


def test_env_file_is_read_and_the_environment_wins(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    archive: InMemoryArchive,
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "archive.env"
    env_file.write_text(
        "# written by the launcher\n"
        f"export ARCHIVE_ENDPOINT={archive.endpoint}\n"
        f"ARCHIVE_TOKEN={os.environ['ARCHIVE_TOKEN']}\n"
    )
    monkeypatch.delenv("ARCHIVE_ENDPOINT")
    monkeypatch.delenv("ARCHIVE_TOKEN")
    assert run(capsys, "--env-file", str(env_file), "whoami")[0] == 0
    assert run(capsys, "whoami", "--env-file", str(env_file))[0] == 0  # after the command too

    monkeypatch.setenv("ARCHIVE_ENDPOINT", "127.0.0.1:1")  # the environment wins
    assert run(capsys, "--env-file", str(env_file), "--retries", "0", "whoami")[0] == 5
    assert run(capsys, "--env-file", str(tmp_path / "missing.env"), "whoami")[0] == 2


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "exit codes:" in out and "6  integrity failure" in out
    assert "exit codes:" in EPILOG
    assert run(capsys)[0] == 2  # no command


def test_progress_line() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(stream, total_files=4, total_bytes=4 * 1024 * 1024, clock=lambda: now[0])
    progress.add_bytes(2 * 1024 * 1024)
    progress.file_done(failed=False)
    progress.file_done(failed=True)
    now[0] = 2.0

    assert progress.render() == (
        "[############------------] 2/4 files  2.0 MiB/4.0 MiB  1.0 MiB/s  1 failed"
    )
    progress.draw()
    assert stream.getvalue().startswith("\r[####") and stream.getvalue().endswith("\x1b[K")
