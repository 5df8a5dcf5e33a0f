import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from archive.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "tenant", "stream", "type", "version", "recorded_at", "causation_id", "correlation_id", "trace_context", "data", "metadata")
    class TraceContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    CAUSATION_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant: str
    stream: str
    type: str
    version: int
    recorded_at: _timestamp_pb2.Timestamp
    causation_id: str
    correlation_id: str
    trace_context: _containers.ScalarMap[str, str]
    data: bytes
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, event_id: _Optional[str] = ..., tenant: _Optional[str] = ..., stream: _Optional[str] = ..., type: _Optional[str] = ..., version: _Optional[int] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., causation_id: _Optional[str] = ..., correlation_id: _Optional[str] = ..., trace_context: _Optional[_Mapping[str, str]] = ..., data: _Optional[bytes] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TenantCreated(_message.Message):
    __slots__ = ("tenant", "display_name", "created_at")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    display_name: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., display_name: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TenantTokenIssued(_message.Message):
    __slots__ = ("tenant", "token_id", "token_sha256", "description", "issued_at", "roles")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_SHA256_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    token_id: str
    token_sha256: bytes
    description: str
    issued_at: _timestamp_pb2.Timestamp
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., token_id: _Optional[str] = ..., token_sha256: _Optional[bytes] = ..., description: _Optional[str] = ..., issued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class TenantTokenRevoked(_message.Message):
    __slots__ = ("tenant", "token_id", "revoked_at")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    token_id: str
    revoked_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., token_id: _Optional[str] = ..., revoked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScanProvenance(_message.Message):
    __slots__ = ("operator", "scanned_at", "device", "settings")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    SCANNED_AT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    operator: str
    scanned_at: _timestamp_pb2.Timestamp
    device: str
    settings: str
    def __init__(self, operator: _Optional[str] = ..., scanned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., device: _Optional[str] = ..., settings: _Optional[str] = ...) -> None: ...

class IdentifiedFormat(_message.Message):
    __slots__ = ("puid", "media_type", "name", "identified_by")
    PUID_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIED_BY_FIELD_NUMBER: _ClassVar[int]
    puid: str
    media_type: str
    name: str
    identified_by: str
    def __init__(self, puid: _Optional[str] = ..., media_type: _Optional[str] = ..., name: _Optional[str] = ..., identified_by: _Optional[str] = ...) -> None: ...

class DocumentIngested(_message.Message):
    __slots__ = ("tenant", "document_id", "sha256", "sha512", "size_bytes", "file_name", "media_type", "format", "metadata", "document_class", "idempotency_key", "received_at", "scan_provenance")
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
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_FIELD_NUMBER: _ClassVar[int]
    SCAN_PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    document_id: _common_pb2.DocumentId
    sha256: _common_pb2.Digest
    sha512: _common_pb2.Digest
    size_bytes: int
    file_name: str
    media_type: str
    format: IdentifiedFormat
    metadata: _containers.ScalarMap[str, str]
    document_class: str
    idempotency_key: str
    received_at: _timestamp_pb2.Timestamp
    scan_provenance: ScanProvenance
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., document_id: _Optional[_Union[_common_pb2.DocumentId, _Mapping]] = ..., sha256: _Optional[_Union[_common_pb2.Digest, _Mapping]] = ..., sha512: _Optional[_Union[_common_pb2.Digest, _Mapping]] = ..., size_bytes: _Optional[int] = ..., file_name: _Optional[str] = ..., media_type: _Optional[str] = ..., format: _Optional[_Union[IdentifiedFormat, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., document_class: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., received_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scan_provenance: _Optional[_Union[ScanProvenance, _Mapping]] = ...) -> None: ...

class DocumentAccessed(_message.Message):
    __slots__ = ("tenant", "document_id", "accessed_by", "access_kind", "accessed_at")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESSED_BY_FIELD_NUMBER: _ClassVar[int]
    ACCESS_KIND_FIELD_NUMBER: _ClassVar[int]
    ACCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    document_id: _common_pb2.DocumentId
    accessed_by: str
    access_kind: str
    accessed_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., document_id: _Optional[_Union[_common_pb2.DocumentId, _Mapping]] = ..., accessed_by: _Optional[str] = ..., access_kind: _Optional[str] = ..., accessed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DocumentsListed(_message.Message):
    __slots__ = ("tenant", "accessed_by", "document_ids", "document_class_filter", "metadata_filter", "accessed_at")
    class MetadataFilterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ACCESSED_BY_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_CLASS_FILTER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FILTER_FIELD_NUMBER: _ClassVar[int]
    ACCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    accessed_by: str
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    document_class_filter: str
    metadata_filter: _containers.ScalarMap[str, str]
    accessed_at: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., accessed_by: _Optional[str] = ..., document_ids: _Optional[_Iterable[str]] = ..., document_class_filter: _Optional[str] = ..., metadata_filter: _Optional[_Mapping[str, str]] = ..., accessed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LogLeavesAppended(_message.Message):
    __slots__ = ("tenant", "first_index", "leaf_hashes", "event_ids", "event_positions")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASHES_FIELD_NUMBER: _ClassVar[int]
    EVENT_IDS_FIELD_NUMBER: _ClassVar[int]
    EVENT_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    first_index: int
    leaf_hashes: _containers.RepeatedScalarFieldContainer[bytes]
    event_ids: _containers.RepeatedScalarFieldContainer[str]
    event_positions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., first_index: _Optional[int] = ..., leaf_hashes: _Optional[_Iterable[bytes]] = ..., event_ids: _Optional[_Iterable[str]] = ..., event_positions: _Optional[_Iterable[int]] = ...) -> None: ...

class CheckpointSealed(_message.Message):
    __slots__ = ("tenant", "tree_size", "root_hash", "checkpoint", "seal", "timestamp_response", "timestamped_at", "previous_checkpoint_sha256", "previous_tree_size", "consistency_proof", "tsa_chain_pem", "tsa_root_pem")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPED_AT_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CHECKPOINT_SHA256_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_PROOF_FIELD_NUMBER: _ClassVar[int]
    TSA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    TSA_ROOT_PEM_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    tree_size: int
    root_hash: bytes
    checkpoint: bytes
    seal: bytes
    timestamp_response: bytes
    timestamped_at: _timestamp_pb2.Timestamp
    previous_checkpoint_sha256: bytes
    previous_tree_size: int
    consistency_proof: _containers.RepeatedScalarFieldContainer[bytes]
    tsa_chain_pem: str
    tsa_root_pem: str
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., checkpoint: _Optional[bytes] = ..., seal: _Optional[bytes] = ..., timestamp_response: _Optional[bytes] = ..., timestamped_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_checkpoint_sha256: _Optional[bytes] = ..., previous_tree_size: _Optional[int] = ..., consistency_proof: _Optional[_Iterable[bytes]] = ..., tsa_chain_pem: _Optional[str] = ..., tsa_root_pem: _Optional[str] = ...) -> None: ...

class SealerCursorAdvanced(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class IntegrityFailure(_message.Message):
    __slots__ = ("kind", "document_id", "leaf_index", "description")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    kind: str
    document_id: str
    leaf_index: int
    description: str
    def __init__(self, kind: _Optional[str] = ..., document_id: _Optional[str] = ..., leaf_index: _Optional[int] = ..., description: _Optional[str] = ...) -> None: ...

class IntegrityAuditCompleted(_message.Message):
    __slots__ = ("tenant", "audit_id", "started_at", "completed_at", "trigger", "documents_checked", "bytes_rehashed", "events_checked", "tree_size", "root_hash", "failures", "failures_not_listed", "checks")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    BYTES_REHASHED_FIELD_NUMBER: _ClassVar[int]
    EVENTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    FAILURES_NOT_LISTED_FIELD_NUMBER: _ClassVar[int]
    CHECKS_FIELD_NUMBER: _ClassVar[int]
    tenant: _common_pb2.TenantId
    audit_id: str
    started_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    trigger: str
    documents_checked: int
    bytes_rehashed: int
    events_checked: int
    tree_size: int
    root_hash: bytes
    failures: _containers.RepeatedCompositeFieldContainer[IntegrityFailure]
    failures_not_listed: int
    checks: _containers.RepeatedCompositeFieldContainer[IntegrityCheckCount]
    def __init__(self, tenant: _Optional[_Union[_common_pb2.TenantId, _Mapping]] = ..., audit_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trigger: _Optional[str] = ..., documents_checked: _Optional[int] = ..., bytes_rehashed: _Optional[int] = ..., events_checked: _Optional[int] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., failures: _Optional[_Iterable[_Union[IntegrityFailure, _Mapping]]] = ..., failures_not_listed: _Optional[int] = ..., checks: _Optional[_Iterable[_Union[IntegrityCheckCount, _Mapping]]] = ...) -> None: ...

class IntegrityCheckCount(_message.Message):
    __slots__ = ("kind", "checked", "failed")
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    checked: int
    failed: int
    def __init__(self, kind: _Optional[str] = ..., checked: _Optional[int] = ..., failed: _Optional[int] = ...) -> None: ...
