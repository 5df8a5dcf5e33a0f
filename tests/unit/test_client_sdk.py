"""The Python SDK against an in-memory archive served over real gRPC (tests/fake_archive.py)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from fake_archive import OPERATOR_TOKEN, FakeArchive, FakeArchiveServer
from fake_archive_fixtures import make_config

from archive.client import (
    AlreadyExists,
    ArchiveClient,
    ArchiveError,
    ClientConfig,
    ConfigurationError,
    Conflict,
    DigestMismatch,
    IntegrityError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ScanProvenance,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    read_env_file,
)

PDF = b"%PDF-1.7\n" + b"invoice body " * 5000 + b"\n%%EOF\n"


# ---- upload ----


async def test_upload_bytes_returns_a_receipt_matching_the_content(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    receipt = await client.upload(
        PDF, file_name="invoice.pdf", metadata={"customer": "c-1"}, document_class="invoice"
    )

    assert receipt.sha256 == hashlib.sha256(PDF).hexdigest()
    assert receipt.sha512 == hashlib.sha512(PDF).hexdigest()
    assert receipt.size == len(PDF)
    assert receipt.tenant == "acme"
    assert uuid.UUID(receipt.document_id)
    assert (receipt.puid, receipt.media_type) == ("fmt/276", "application/pdf")
    assert receipt.received_at is not None and receipt.received_at.tzinfo is not None
    assert receipt.replayed is False
    assert receipt.event_position == 1
    header = archive.upload_headers[-1]
    assert header.expected_sha256_hex == receipt.sha256  # the server checks end to end
    assert header.idempotency_key == receipt.idempotency_key != ""
    assert receipt.to_dict()["received_at"].endswith("Z")


async def test_upload_path_hashes_first_and_names_the_document_after_the_file(
    client: ArchiveClient, archive: FakeArchive, tmp_path: Path
) -> None:
    path = tmp_path / "payslip-2025-01.pdf"
    path.write_bytes(PDF)
    scanned = ScanProvenance("j.doe", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "scanner-7", "")
    chunks_before = len(archive.upload_headers)

    receipt = await client.upload(
        path, document_class="payslip", chunk_size=4096, scan_provenance=scanned
    )

    assert len(archive.upload_headers) == chunks_before + 1
    header = archive.upload_headers[-1]
    assert header.file_name == "payslip-2025-01.pdf"
    assert header.expected_sha256_hex == hashlib.sha256(PDF).hexdigest()
    info = await client.get_document(receipt.document_id)
    assert info.document_class == "payslip"
    assert info.sha256 == receipt.sha256 and info.size == len(PDF)
    assert info.scan_provenance == scanned


async def test_upload_async_iterable_reports_progress(client: ArchiveClient) -> None:
    async def parts() -> AsyncIterator[bytes]:
        for n in range(5):
            yield bytes([n]) * 10_000

    seen: list[int] = []
    receipt = await client.upload(
        parts(), file_name="stream.bin", chunk_size=3000, on_progress=seen.append
    )

    expected = b"".join(bytes([n]) * 10_000 for n in range(5))
    assert receipt.sha256 == hashlib.sha256(expected).hexdigest()
    assert sum(seen) == len(expected) and max(seen) <= 3000


async def test_upload_needs_a_file_name_unless_the_source_is_a_path(client: ArchiveClient) -> None:
    with pytest.raises(ValueError, match="file_name"):
        await client.upload(b"x")
    with pytest.raises(TypeError):
        await client.upload("not a path", file_name="x")  # type: ignore[arg-type]


async def test_a_lost_answer_is_retried_with_the_same_key_and_replayed(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    archive.fail_after_store = 1  # stored, but the receipt never reaches the client
    progress: list[int] = []

    receipt = await client.upload(PDF, file_name="a.pdf", on_progress=progress.append)

    assert receipt.replayed is True
    assert archive.document_count("acme") == 1  # stored once, not twice
    keys = {h.idempotency_key for h in archive.upload_headers}
    assert keys == {receipt.idempotency_key}
    assert len(archive.upload_headers) == 2
    assert sum(progress) == len(PDF)  # the failed attempt's bytes were taken back


async def test_the_same_idempotency_key_returns_the_original_receipt(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    first = await client.upload(b"hello", file_name="a.txt", idempotency_key="order-42")
    again = await client.upload(b"hello", file_name="a.txt", idempotency_key="order-42")

    assert (first.replayed, again.replayed) == (False, True)
    assert again.document_id == first.document_id
    assert archive.document_count("acme") == 1


async def test_retries_are_bounded_and_the_error_carries_the_key(
    server: FakeArchiveServer, token: str, archive: FakeArchive
) -> None:
    archive.inject("Upload", grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", times=10)
    async with ArchiveClient(make_config(server, token, max_attempts=3)) as client:
        with pytest.raises(Unavailable) as caught:
            await client.upload(b"data", file_name="a.txt", idempotency_key="k-1")
    assert caught.value.attempts == 3
    assert caught.value.idempotency_key == "k-1"
    assert archive.calls.count("Upload") == 3


async def test_an_async_iterable_is_spooled_so_it_can_be_announced_and_retried(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    archive.inject("Upload", grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")

    async def once() -> AsyncIterator[bytes]:
        yield b"only "
        yield b"once"

    receipt = await client.upload(once(), file_name="a.txt")

    assert receipt.sha256 == hashlib.sha256(b"only once").hexdigest()
    assert archive.calls.count("Upload") == 2
    assert archive.upload_headers[-1].expected_sha256_hex == receipt.sha256


async def test_a_tampered_upload_is_refused_as_digest_mismatch(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    archive.inject(
        "Upload",
        grpc.StatusCode.INVALID_ARGUMENT,
        "DIGEST_MISMATCH",
        metadata={"expected": "aa", "actual": "bb"},
    )
    with pytest.raises(IntegrityError) as caught:
        await client.upload(b"x", file_name="a.txt")
    assert isinstance(caught.value, DigestMismatch) and isinstance(caught.value, InvalidArgument)
    assert (caught.value.expected, caught.value.actual) == ("aa", "bb")


async def test_a_refused_token_is_reported_even_in_the_middle_of_a_large_upload(
    server: FakeArchiveServer, token: str
) -> None:
    async with ArchiveClient(make_config(server, "arc_unknown_token")) as stranger:
        for _ in range(5):  # the server may refuse while chunks are still being written
            with pytest.raises(Unauthenticated):
                await stranger.upload(b"x" * (8 * 1024 * 1024), file_name="big.bin")


async def test_a_failing_source_raises_its_own_error_and_stores_nothing(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"first part"
        raise OSError("disk read failed")

    with pytest.raises(OSError, match="disk read failed"):
        await client.upload(broken(), file_name="a.txt")
    assert archive.document_count("acme") == 0
    assert archive.calls == []  # spooled first: a broken source never reaches the archive


# ---- listing ----


async def test_list_documents_follows_pages_newest_first(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    ids = [
        (await client.upload(f"doc {n}".encode(), file_name=f"{n}.txt")).document_id
        for n in range(7)
    ]
    archive.calls.clear()

    listed = [info.document_id async for info in client.list_documents(page_size=3)]

    assert listed == list(reversed(ids))
    assert archive.calls.count("ListDocuments") == 3
    first = await client.list_page(page_size=3)
    assert len(first.documents) == 3 and first.next_page_token
    last = await client.list_page(page_size=10)
    assert last.next_page_token == ""


async def test_list_documents_filters_by_class_and_metadata(client: ArchiveClient) -> None:
    await client.upload(b"1", file_name="1", document_class="invoice", metadata={"y": "2024"})
    wanted = await client.upload(
        b"2", file_name="2", document_class="invoice", metadata={"y": "2025", "z": "1"}
    )
    await client.upload(b"3", file_name="3", document_class="payslip", metadata={"y": "2025"})

    found = [
        d.document_id
        async for d in client.list_documents(document_class="invoice", metadata={"y": "2025"})
    ]
    assert found == [wanted.document_id]


# ---- download ----


async def test_download_writes_verified_content_and_no_temporary_file(
    client: ArchiveClient, tmp_path: Path
) -> None:
    receipt = await client.upload(PDF, file_name="invoice.pdf")
    dest = tmp_path / "out" / "copy.pdf"
    dest.parent.mkdir()

    info = await client.download(receipt.document_id, dest)

    assert dest.read_bytes() == PDF
    assert info.sha256 == receipt.sha256 and info.file_name == "invoice.pdf"
    assert [p.name for p in dest.parent.iterdir()] == ["copy.pdf"]
    assert await client.download_bytes(receipt.document_id) == PDF
    async with client.open_download(receipt.document_id) as download:
        assert download.info.size == len(PDF)
        assert b"".join([chunk async for chunk in download]) == PDF


async def test_corrupted_content_raises_integrity_error_and_leaves_no_file(
    client: ArchiveClient, archive: FakeArchive, tmp_path: Path
) -> None:
    receipt = await client.upload(PDF, file_name="invoice.pdf")
    archive.corrupt_downloads = True
    dest = tmp_path / "copy.pdf"

    with pytest.raises(IntegrityError) as caught:
        await client.download(receipt.document_id, dest)

    assert caught.value.expected == receipt.sha256
    assert list(tmp_path.iterdir()) == []
    dest.write_bytes(b"previous")  # an existing file is not replaced by bad content
    with pytest.raises(IntegrityError):
        await client.download(receipt.document_id, dest)
    assert dest.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [dest]
    with pytest.raises(IntegrityError):
        await client.download_bytes(receipt.document_id)


async def test_a_download_interrupted_by_unavailability_is_retried(
    client: ArchiveClient, archive: FakeArchive, tmp_path: Path
) -> None:
    receipt = await client.upload(PDF, file_name="invoice.pdf")
    archive.inject("Download", grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE", times=2)

    await client.download(receipt.document_id, tmp_path / "copy.pdf")

    assert (tmp_path / "copy.pdf").read_bytes() == PDF
    assert archive.calls.count("Download") == 3


# ---- errors ----


async def test_invalid_argument_carries_field_violations_and_correlation_id(
    client: ArchiveClient, archive: FakeArchive
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await client.get_document("not-a-uuid")
    error = caught.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    assert error.field_violations == (("document_id.value", "a UUID in canonical text form"),)
    assert error.correlation_id == archive.correlation_ids[-1]  # the id the client sent


async def test_error_types_from_real_server_answers(
    server: FakeArchiveServer, client: ArchiveClient, archive: FakeArchive
) -> None:
    with pytest.raises(NotFound) as not_found:
        await client.get_document(str(uuid.uuid4()))
    assert not_found.value.reason == "DOCUMENT_NOT_FOUND"

    async with ArchiveClient(make_config(server, "arc_unknown_token")) as stranger:
        with pytest.raises(Unauthenticated):
            await stranger.whoami()
    async with ArchiveClient(make_config(server, OPERATOR_TOKEN)) as operator:
        with pytest.raises(PermissionDenied):
            await operator.whoami()

    await client.create_tenant("globex")
    with pytest.raises(AlreadyExists) as exists:
        await client.create_tenant("globex")
    assert exists.value.metadata["tenant"] == "globex"

    archive.max_size_bytes = 10
    with pytest.raises(ResourceExhausted) as too_large:
        await client.upload(b"x" * 100, file_name="big.bin")
    assert too_large.value.reason == "BLOB_TOO_LARGE"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgument),
        (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, AlreadyExists),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhausted),
        (grpc.StatusCode.ABORTED, Conflict),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.UNIMPLEMENTED, Unimplemented),
        (grpc.StatusCode.INTERNAL, ArchiveError),
    ],
)
async def test_each_status_code_maps_to_its_exception(
    client: ArchiveClient,
    archive: FakeArchive,
    code: grpc.StatusCode,
    expected: type[ArchiveError],
) -> None:
    archive.inject("WhoAmI", code, f"REASON_{code.name}", "what happened", times=10, retry_delay=0)
    with pytest.raises(expected) as caught:
        await client.whoami()
    assert type(caught.value) is expected
    assert caught.value.code is code
    assert caught.value.reason == f"REASON_{code.name}"
    assert str(caught.value) == "what happened"
    assert caught.value.retry_delay == 0


async def test_calls_without_the_needed_token_fail_before_sending(
    server: FakeArchiveServer, archive: FakeArchive
) -> None:
    async with ArchiveClient(make_config(server, None, operator_token=None)) as client:
        with pytest.raises(ConfigurationError, match="ARCHIVE_TOKEN"):
            await client.whoami()
        with pytest.raises(ConfigurationError, match="ARCHIVE_OPERATOR_TOKEN"):
            await client.create_tenant("x")
    assert archive.calls == []


# ---- identity and administration ----


async def test_tenant_administration_round_trip(
    server: FakeArchiveServer, client: ArchiveClient
) -> None:
    assert (await client.whoami()).tenant == "acme"

    first = await client.create_tenant("globex", "Globex Inc")
    assert first.tenant == "globex" and first.token.startswith(f"arc_{first.token_id}_")
    assert first.token not in repr(first)
    second = await client.issue_token("globex", "backup job")
    async with ArchiveClient(make_config(server, second.token)) as globex:
        identity = await globex.whoami()
        assert (identity.tenant, identity.token_id) == ("globex", second.token_id)
        await client.revoke_token("globex", second.token_id)
        with pytest.raises(Unauthenticated):
            await globex.whoami()
    with pytest.raises(NotFound) as missing:
        await client.revoke_token("globex", "nosuchtoken0")
    assert missing.value.reason == "TOKEN_NOT_FOUND"
    with pytest.raises(InvalidArgument) as bad_name:
        await client.create_tenant("Not Valid")
    assert bad_name.value.field_violations[0][0] == "tenant.value"


# ---- configuration ----


def test_env_file_parsing(tmp_path: Path) -> None:
    env_file = tmp_path / "archive.env"
    env_file.write_text(
        "# written by the launcher\n"
        "\n"
        "export ARCHIVE_ENDPOINT=localhost:50051\n"
        "ARCHIVE_TOKEN='arc_abc_secret#not-a-comment'\n"
        'ARCHIVE_OPERATOR_TOKEN = "op token"  # trailing comment\n'
        "OTHER=value # comment\n"
        "EMPTY=\n"
    )
    assert read_env_file(env_file) == {
        "ARCHIVE_ENDPOINT": "localhost:50051",
        "ARCHIVE_TOKEN": "arc_abc_secret#not-a-comment",
        "ARCHIVE_OPERATOR_TOKEN": "op token",
        "OTHER": "value",
        "EMPTY": "",
    }


def test_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "archive.env"
    env_file.write_text("ARCHIVE_ENDPOINT=file:1\nARCHIVE_TOKEN=file-token\n")

    config = ClientConfig.from_env({"ARCHIVE_ENDPOINT": "env:2", "ARCHIVE_TOKEN": ""}, env_file)

    assert config.endpoint == "env:2"
    assert config.tenant_token() == "file-token"  # an empty variable counts as unset
    assert config.operator_token is None
    assert "file-token" not in repr(config)
    assert ClientConfig.from_env({}, env_file).endpoint == "file:1"


def test_configuration_errors_name_the_problem_not_the_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ARCHIVE_ENDPOINT is not set"):
        ClientConfig.from_env({"ARCHIVE_TOKEN": "t"})
    with pytest.raises(ConfigurationError, match="cannot read env file"):
        ClientConfig.from_env({}, tmp_path / "missing.env")
    bad = tmp_path / "bad.env"
    bad.write_text("ARCHIVE_ENDPOINT=x:1\narc_secret_token_pasted_alone\n")
    with pytest.raises(ConfigurationError) as caught:
        read_env_file(bad)
    assert f"{bad}:2" in str(caught.value) and "arc_secret" not in str(caught.value)
    with pytest.raises(ConfigurationError):
        ClientConfig("has space:1")
