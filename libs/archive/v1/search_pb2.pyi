import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from archive.v1 import common_pb2 as _common_pb2
from archive.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DocumentInfo(_message.Message):
    __slots__ = ("tenant", "document_id", "sha256", "sha512", "size_bytes", "file_name", "media_type", "format", "metadata", "document_class", "received_at", "scan_provenance", "event_position")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SHA512_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_CLASS_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    SCAN_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    EVENT_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    document_id: _common_pb2.DocumentId
    sha256: _common_pb2.Digest
    sha512: _common_pb2.Digest
    size_bytes: int
    file_name: str
    media_type: str
    format: _events_pb2.IdentifiedFormat
    metadata: _containers.ScalarMap[str, str]
    document_class: str
    received_at: _timestamp_pb2.Timestamp
    scan_provenance: _events_pb2.ScanProvenance
    event_position: int
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., document_id: _Optional[_Union[_common_pb2.DocumentId, _Mapping]] = ..., sha256: _Optional[_Union[_common_pb2.Digest, _Mapping]] = ..., sha512: _Optional[_Union[_common_pb2.Digest, _Mapping]] = ..., size_bytes: _Optional[int] = ..., file_name: _Optional[str] = ..., media_type: _Optional[str] = ..., format: _Optional[_Union[_events_pb2.IdentifiedFormat, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., document_class: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scan_provenance: _Optional[_Union[_events_pb2.ScanProvenance, _Mapping]] = ..., event_position: _Optional[int] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: _common_pb2.DocumentId
    def __init__(self, document_id: _Optional[_Union[_common_pb2.DocumentId, _Mapping]] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("page", "document_class", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PAGE_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_CLASS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    document_class: str
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ..., document_class: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListDocumentsResponse(_message.Message):
    __slots__ = ("documents", "page")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[DocumentInfo]
    page: _common_pb2.PageResponse
    def __init__(self, documents: _Optional[_Iterable[_Union[DocumentInfo, _Mapping]]] = ..., page: _Optional[_Union[_common_pb2.PageResponse, _Mapping]] = ...) -> None: ...

class DownloadRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: _common_pb2.DocumentId
    def __init__(self, document_id: _Optional[_Union[_common_pb2.DocumentId, _Mapping]] = ...) -> None: ...

class DownloadResponse(_message.Message):
    __slots__ = ("info", "chunk")
    INFO_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    info: DocumentInfo
    chunk: bytes
    def __init__(self, info: _Optional[_Union[DocumentInfo, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...
