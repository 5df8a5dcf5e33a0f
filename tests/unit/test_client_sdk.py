"""The Python SDK against the real servicers on in-memory stores, over real gRPC
(tests/archive_in_memory.py): deposits, retries with the same key, listing, verified
downloads, typed errors, administration and configuration."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import grpc.aio
import pytest
from archive_in_memory import InMemoryArchive
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2

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
    error_from_rpc,
    read_env_file,
)

PDF = b"%PDF-1.7\n" + b"invoice body " * 5000 + b"\n%%EOF\n"


# ---- upload ----


async def test_upload_bytes_returns_a_receipt_matching_the_content(
    client: ArchiveClient, archive: InMemoryArchive
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
    assert receipt.event_position > 0
    [stored] = archive.deposits()
    assert stored.idempotency_key == receipt.idempotency_key != ""  # a key was sent
    assert stored.document_id.value == receipt.document_id
    assert dict(stored.metadata) == {"customer": "c-1"}
    assert receipt.to_dict()["received_at"].endswith("Z")


async def test_upload_path_hashes_first_and_names_the_document_after_the_file(
    client: ArchiveClient, archive: InMemoryArchive, tmp_path: Path
) -> None:
    path = tmp_path / "payslip-2025-01.pdf"
    path.write_bytes(PDF)
    scanned = ScanProvenance("j.doe", datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "scanner-7", "")
    archive.calls.clear()

    receipt = await client.upload(
        path, document_class="payslip", chunk_size=4096, scan_provenance=scanned
    )

    assert archive.calls == ["Upload"]
    assert [d.file_name for d in archive.deposits()] == ["payslip-2025-01.pdf"]
    info = await client.get_document(receipt.document_id)
    assert info.document_class == "payslip" and info.file_name == "payslip-2025-01.pdf"
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
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    # The deposit is recorded, but the store's acknowledgement is lost: the archive answers
    # UNAVAILABLE although the document is stored.
    archive.store.fail_appends(1, after_commit=True)
    archive.calls.clear()
    progress: list[int] = []

    receipt = await client.upload(PDF, file_name="a.pdf", on_progress=progress.append)

    assert receipt.replayed is True
    assert [d.idempotency_key for d in archive.deposits()] == [receipt.idempotency_key]
    assert archive.calls == ["Upload", "Upload"]  # stored once, not twice
    assert sum(progress) == len(PDF)  # the failed attempt's bytes were taken back


async def test_the_same_idempotency_key_returns_the_original_receipt(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    first = await client.upload(b"hello", file_name="a.txt", idempotency_key="order-42")
    again = await client.upload(b"hello", file_name="a.txt", idempotency_key="order-42")

    assert (first.replayed, again.replayed) == (False, True)
    assert again.document_id == first.document_id
    assert len(archive.deposits()) == 1


async def test_retries_are_bounded_and_the_error_carries_the_key(
    archive: InMemoryArchive, token: str
) -> None:
    archive.store.fail_appends(10)
    archive.calls.clear()
    async with ArchiveClient(archive.config(token, max_attempts=3)) as client:
        with pytest.raises(Unavailable) as caught:
            await client.upload(b"data", file_name="a.txt", idempotency_key="k-1")
    assert caught.value.attempts == 3
    assert caught.value.idempotency_key == "k-1"
    assert caught.value.reason == "STORE_UNAVAILABLE"
    assert archive.calls == ["Upload"] * 3
    assert archive.deposits() == []


async def test_an_async_iterable_is_spooled_so_it_can_be_announced_and_retried(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    archive.store.fail_appends(1)
    archive.calls.clear()

    async def once() -> AsyncIterator[bytes]:
        yield b"only "
        yield b"once"

    receipt = await client.upload(once(), file_name="a.txt")

    assert receipt.sha256 == hashlib.sha256(b"only once").hexdigest()
    assert archive.calls == ["Upload", "Upload"]
    assert [d.sha256.value.hex() for d in archive.deposits()] == [receipt.sha256]


async def test_a_file_changed_while_it_is_sent_is_refused_as_digest_mismatch(
    client: ArchiveClient, archive: InMemoryArchive, tmp_path: Path
) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(PDF)
    changed = PDF[:4096] + PDF[4096:].replace(b"invoice", b"INVOICE")

    def overwrite_after_the_first_chunk(sent: int) -> None:
        if sent > 0 and path.read_bytes() == PDF:
            path.write_bytes(changed)  # same size, other bytes, after hashing

    with pytest.raises(IntegrityError) as caught:
        await client.upload(path, chunk_size=4096, on_progress=overwrite_after_the_first_chunk)
    assert isinstance(caught.value, DigestMismatch) and isinstance(caught.value, InvalidArgument)
    assert caught.value.expected == hashlib.sha256(PDF).hexdigest()  # announced in the header
    assert caught.value.actual == hashlib.sha256(changed).hexdigest()  # what arrived
    assert archive.deposits() == []


async def test_a_refused_token_is_reported_even_in_the_middle_of_a_large_upload(
    archive: InMemoryArchive,
) -> None:
    async with ArchiveClient(archive.config("arc_unknown_token")) as stranger:
        for _ in range(5):  # the server may refuse while chunks are still being written
            with pytest.raises(Unauthenticated):
                await stranger.upload(b"x" * (8 * 1024 * 1024), file_name="big.bin")


async def test_a_failing_source_raises_its_own_error_and_stores_nothing(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    archive.calls.clear()

    async def broken() -> AsyncIterator[bytes]:
        yield b"first part"
        raise OSError("disk read failed")

    with pytest.raises(OSError, match="disk read failed"):
        await client.upload(broken(), file_name="a.txt")
    assert archive.deposits() == []
    assert archive.calls == []  # spooled first: a broken source never reaches the archive


# ---- listing ----


async def test_list_documents_follows_pages_newest_first(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    ids = [
        (await client.upload(f"doc {n}".encode(), file_name=f"{n}.txt")).document_id
        for n in range(7)
    ]
    archive.calls.clear()

    listed = [info.document_id async for info in client.list_documents(page_size=3)]

    assert listed == list(reversed(ids))
    assert archive.calls == ["ListDocuments"] * 3
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


async def test_damaged_content_raises_integrity_error_and_leaves_no_file(
    client: ArchiveClient, archive: InMemoryArchive, tmp_path: Path
) -> None:
    receipt = await client.upload(PDF, file_name="invoice.pdf")
    archive.rot(receipt.document_id)  # the archive's copy, not the bytes on the wire
    dest = tmp_path / "copy.pdf"

    with pytest.raises(IntegrityError) as caught:
        await client.download(receipt.document_id, dest)

    assert caught.value.code is grpc.StatusCode.DATA_LOSS
    assert caught.value.reason == "CONTENT_DAMAGED"
    assert list(tmp_path.iterdir()) == []
    dest.write_bytes(b"previous")  # an existing file is not replaced by bad content
    with pytest.raises(IntegrityError):
        await client.download(receipt.document_id, dest)
    assert dest.read_bytes() == b"previous" and list(tmp_path.iterdir()) == [dest]
    with pytest.raises(IntegrityError):
        await client.download_bytes(receipt.document_id)


async def test_a_download_refused_while_the_store_is_unavailable_is_retried(
    client: ArchiveClient, archive: InMemoryArchive, tmp_path: Path
) -> None:
    receipt = await client.upload(PDF, file_name="invoice.pdf")
    archive.store.fail_appends(2)  # the access cannot be recorded, so nothing is served
    archive.calls.clear()

    await client.download(receipt.document_id, tmp_path / "copy.pdf")

    assert (tmp_path / "copy.pdf").read_bytes() == PDF
    assert archive.calls == ["Download"] * 3


# ---- errors ----


async def test_invalid_argument_carries_field_violations_and_correlation_id(
    client: ArchiveClient, archive: InMemoryArchive
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await client.get_document("not-a-uuid")
    error = caught.value
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_ARGUMENT"
    [(field, description)] = error.field_violations
    assert field == "document_id.value" and "UUID" in description
    assert error.correlation_id == archive.correlation_ids[-1]  # the id the client sent


@pytest.mark.archive_settings(max_document_bytes=10)
async def test_error_types_from_real_server_answers(
    archive: InMemoryArchive, client: ArchiveClient
) -> None:
    with pytest.raises(NotFound) as not_found:
        await client.get_document(str(uuid.uuid4()))
    assert not_found.value.reason == "DOCUMENT_NOT_FOUND"

    async with ArchiveClient(archive.config("arc_unknown_token")) as stranger:
        with pytest.raises(Unauthenticated):
            await stranger.whoami()
    async with ArchiveClient(archive.config(archive.operator_token)) as operator:
        with pytest.raises(PermissionDenied):
            await operator.whoami()

    await client.create_tenant("globex")
    with pytest.raises(AlreadyExists) as exists:
        await client.create_tenant("globex")
    assert exists.value.reason == "TENANT_ALREADY_EXISTS"

    with pytest.raises(ResourceExhausted) as too_large:
        await client.upload(b"x" * 100, file_name="big.bin")
    assert too_large.value.reason == "BLOB_TOO_LARGE"


def rpc_error(code: grpc.StatusCode, reason: str, message: str) -> grpc.aio.AioRpcError:
    """A failed call as grpc hands it over, with the details our servers attach."""
    status = status_pb2.Status(code=code.value[0], message=message)
    info = error_details_pb2.ErrorInfo(reason=reason, metadata={"correlation_id": "c-1"})
    status.details.add().Pack(info)
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=Duration(seconds=0)))
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=message)


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
        (grpc.StatusCode.DATA_LOSS, IntegrityError),
        (grpc.StatusCode.INTERNAL, ArchiveError),
    ],
)
def test_each_status_code_maps_to_its_exception(
    code: grpc.StatusCode, expected: type[ArchiveError]
) -> None:
    error = error_from_rpc(rpc_error(code, f"REASON_{code.name}", "what happened"))
    assert type(error) is expected
    assert error.code is code
    assert error.reason == f"REASON_{code.name}"
    assert str(error) == "what happened"
    assert error.retry_delay == 0
    assert error.correlation_id == "c-1"


async def test_calls_without_the_needed_token_fail_before_sending(
    archive: InMemoryArchive,
) -> None:
    archive.calls.clear()
    async with ArchiveClient(archive.config(None, operator_token=None)) as client:
        with pytest.raises(ConfigurationError, match="ARCHIVE_TOKEN"):
            await client.whoami()
        with pytest.raises(ConfigurationError, match="ARCHIVE_OPERATOR_TOKEN"):
            await client.create_tenant("x")
    assert archive.calls == []


# ---- identity and administration ----


async def test_tenant_administration_round_trip(
    archive: InMemoryArchive, client: ArchiveClient
) -> None:
    assert (await client.whoami()).tenant == "acme"

    first = await client.create_tenant("globex", "Globex Inc")
    assert first.tenant == "globex" and first.token.startswith(f"arc_{first.token_id}_")
    assert first.token not in repr(first)
    second = await client.issue_token("globex", "backup job")
    async with ArchiveClient(archive.config(second.token)) as globex:
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
