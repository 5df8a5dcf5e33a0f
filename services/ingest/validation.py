"""Checks on an UploadHeader, before a single byte of content is accepted."""

from __future__ import annotations

import re
import unicodedata

from archive.config import Settings
from archive.grpcserver import InvalidArgument
from archive.v1 import ingest_pb2

MAX_FILE_NAME_CHARS = 255
MAX_MEDIA_TYPE_CHARS = 255
MAX_IDEMPOTENCY_KEY_CHARS = 128
MAX_METADATA_KEY_CHARS = 128
MAX_PROVENANCE_CHARS = 1024
_METADATA_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_CLASS = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][\w.+-]*/[A-Za-z0-9][\w.+-]*(\s*;.*)?$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,128}$")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def validate_header(header: ingest_pb2.UploadHeader, settings: Settings) -> None:
    name = header.file_name
    if not name:
        raise InvalidArgument("header.file_name", "give the document's file name, e.g. invoice.pdf")
    if len(name) > MAX_FILE_NAME_CHARS:
        raise InvalidArgument(
            "header.file_name", f"{len(name)} characters; at most {MAX_FILE_NAME_CHARS}"
        )
    if "/" in name or "\\" in name or name in (".", ".."):
        raise InvalidArgument(
            "header.file_name", "a bare file name is expected, without directories ('/' or '\\')"
        )
    if _has_control(name):
        raise InvalidArgument("header.file_name", "control characters are not allowed")
    if header.media_type and (
        len(header.media_type) > MAX_MEDIA_TYPE_CHARS or not _MEDIA_TYPE.match(header.media_type)
    ):
        raise InvalidArgument("header.media_type", "a media type like application/pdf is expected")
    if header.document_class and not _CLASS.match(header.document_class):
        raise InvalidArgument(
            "header.document_class",
            "1-64 lower-case letters, digits, '_', '.' or '-' (e.g. invoice, payslip)",
        )
    if header.idempotency_key and not _IDEMPOTENCY_KEY.match(header.idempotency_key):
        raise InvalidArgument(
            "header.idempotency_key",
            f"1-{MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters without spaces",
        )
    if header.expected_sha256_hex and not _SHA256_HEX.match(header.expected_sha256_hex):
        raise InvalidArgument("header.expected_sha256_hex", "64 lower-case hex characters")
    _validate_metadata(header, settings)
    provenance = header.scan_provenance
    for field in ("operator", "device", "settings"):
        value = getattr(provenance, field)
        if len(value) > MAX_PROVENANCE_CHARS or _has_control(value.replace("\n", " ")):
            raise InvalidArgument(
                f"header.scan_provenance.{field}",
                f"at most {MAX_PROVENANCE_CHARS} characters, no control characters",
            )


def _validate_metadata(header: ingest_pb2.UploadHeader, settings: Settings) -> None:
    if len(header.metadata) > settings.max_metadata_entries:
        raise InvalidArgument(
            "header.metadata",
            f"{len(header.metadata)} entries; at most {settings.max_metadata_entries}",
        )
    for key, value in header.metadata.items():
        if not _METADATA_KEY.match(key):
            raise InvalidArgument(
                f"header.metadata[{key[:40]!r}]",
                f"keys are 1-{MAX_METADATA_KEY_CHARS} letters, digits, '_', '.', ':' or '-'",
            )
        if len(value) > settings.max_metadata_value_chars:
            raise InvalidArgument(
                f"header.metadata[{key!r}]",
                f"value of {len(value)} characters; at most {settings.max_metadata_value_chars}",
            )
        if _has_control(value.replace("\n", " ").replace("\t", " ")):
            raise InvalidArgument(f"header.metadata[{key!r}]", "control characters are not allowed")


MAX_KEYS_PER_FIND = 1000


def validate_find_request(request: ingest_pb2.FindDepositsRequest) -> None:
    """The whole request is refused at the door when one key is malformed: a re-run that
    sends bad keys has a bug to fix, not documents to skip."""
    if not request.keys:
        raise InvalidArgument("keys", "give at least one idempotency key to look up")
    if len(request.keys) > MAX_KEYS_PER_FIND:
        raise InvalidArgument(
            "keys", f"{len(request.keys)} keys; at most {MAX_KEYS_PER_FIND} per call"
        )
    for index, key in enumerate(request.keys):
        if not _IDEMPOTENCY_KEY.match(key.idempotency_key):
            raise InvalidArgument(
                f"keys[{index}].idempotency_key", "1-128 printable ASCII characters, no spaces"
            )
        if not _SHA256_HEX.match(key.sha256_hex):
            raise InvalidArgument(
                f"keys[{index}].sha256_hex",
                "the SHA-256 of the content, 64 lower-case hex characters",
            )
