import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import status_pb2 as _status_pb2
from archive.v1 import common_pb2 as _common_pb2
from archive.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FindDepositsRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[DepositKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[DepositKey, _Mapping]]] = ...) -> None: ...

class DepositKey(_message.Message):
    __slots__ = ("idempotency_key", "sha256_hex")
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SHA256_HEX_FIELD_NUMBER: _ClassVar[int]
    idempotency_key: str
    sha256_hex: str
    def __init__(self, idempotency_key: _Optional[str] = ..., sha256_hex: _Optional[str] = ...) -> None: ...

class FindDepositsResponse(_message.Message):
    __slots__ = ("deposits",)
    DEPOSITS_FIELD_NUMBER: _ClassVar[int]
    deposits: _containers.RepeatedCompositeFieldContainer[FoundDeposit]
    def __init__(self, deposits: _Optional[_Iterable[_Union[FoundDeposit, _Mapping]]] = ...) -> None: ...

class FoundDeposit(_message.Message):
    __slots__ = ("receipt", "absent", "error")
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    receipt: DepositReceipt
    absent: bool
    error: _status_pb2.Status
    def __init__(self, receipt: _Optional[_Union[DepositReceipt, _Mapping]] = ..., absent: _Optional[bool] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class UploadManyResult(_message.Message):
    __slots__ = ("index", "receipt", "error")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    index: int
    receipt: DepositReceipt
    error: _status_pb2.Status
    def __init__(self, index: _Optional[int] = ..., receipt: _Optional[_Union[DepositReceipt, _Mapping]] = ..., error: _Optional[_Union[_status_pb2.Status, _Mapping]] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "chunk", "end")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: bytes
    end: UploadEnd
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[bytes] = ..., end: _Optional[_Union[UploadEnd, _Mapping]] = ...) -> None: ...

class UploadEnd(_message.Message):
    __slots__ = ("size_bytes",)
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    size_bytes: int
    def __init__(self, size_bytes: _Optional[int] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("file_name", "media_type", "metadata", "document_class", "idempotency_key", "scan_provenance", "expected_sha256_hex")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_CLASS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    SCAN_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SHA256_HEX_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    media_type: str
    metadata: _containers.ScalarMap[str, str]
    document_class: str
    idempotency_key: str
    scan_provenance: _events_pb2.ScanProvenance
    expected_sha256_hex: str
    def __init__(self, file_name: _Optional[str] = ..., media_type: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., document_class: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., scan_provenance: _Optional[_Union[_events_pb2.ScanProvenance, _Mapping]] = ..., expected_sha256_hex: _Optional[str] = ...) -> None: ...

class DepositReceipt(_message.Message):
    __slots__ = ("tenant", "document_id", "sha256", "sha512", "size_bytes", "file_name", "media_type", "format", "received_at", "event_position", "replayed")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SHA512_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENT_POSITION_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    document_id: _common_pb2.DocumentId
    sha256: _common_pb2.Digest
    sha512: _common_pb2.Digest
    size_bytes: int
    file_name: str
    media_type: str
    format: _events_pb2.IdentifiedFormat
    received_at: _timestamp_pb2.Timestamp
    event_position: int
    replayed: bool
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., document_id: _Optional[_Union[_common_pb2.DocumentId, _Mapping]] = ..., sha256: _Optional[_Union[_common_pb2.Digest, _Mapping]] = ..., sha512: _Optional[_Union[_common_pb2.Digest, _Mapping]] = ..., size_bytes: _Optional[int] = ..., file_name: _Optional[str] = ..., media_type: _Optional[str] = ..., format: _Optional[_Union[_events_pb2.IdentifiedFormat, _Mapping]] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., event_position: _Optional[int] = ..., replayed: _Optional[bool] = ...) -> None: ...
