from archive.v1 import common_pb2 as _common_pb2
from archive.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetEvidenceRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: _common_pb2.DocumentId
    def __init__(self, document_id: _Optional[_Union[_common_pb2.DocumentId, _Mapping]] = ...) -> None: ...

class EvidenceBundle(_message.Message):
    __slots__ = ("zip", "leaf_index", "tree_size")
    ZIP_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    zip: bytes
    leaf_index: int
    tree_size: int
    def __init__(self, zip: _Optional[bytes] = ..., leaf_index: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("tree_size",)
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    def __init__(self, tree_size: _Optional[int] = ...) -> None: ...

class SignedCheckpoint(_message.Message):
    __slots__ = ("checkpoint", "seal", "timestamp_response", "seal_chain_pem", "tsa_chain_pem", "root_pem", "tsa_root_pem")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    SEAL_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    SEAL_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    TSA_CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    ROOT_PEM_FIELD_NUMBER: _ClassVar[int]
    TSA_ROOT_PEM_FIELD_NUMBER: _ClassVar[int]
    checkpoint: bytes
    seal: bytes
    timestamp_response: bytes
    seal_chain_pem: str
    tsa_chain_pem: str
    root_pem: str
    tsa_root_pem: str
    def __init__(self, checkpoint: _Optional[bytes] = ..., seal: _Optional[bytes] = ..., timestamp_response: _Optional[bytes] = ..., seal_chain_pem: _Optional[str] = ..., tsa_chain_pem: _Optional[str] = ..., root_pem: _Optional[str] = ..., tsa_root_pem: _Optional[str] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("from_size", "to_size")
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    TO_SIZE_FIELD_NUMBER: _ClassVar[int]
    from_size: int
    to_size: int
    def __init__(self, from_size: _Optional[int] = ..., to_size: _Optional[int] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("from_size", "to_size", "hashes", "from_checkpoint", "to_checkpoint")
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    TO_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    FROM_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TO_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    from_size: int
    to_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    from_checkpoint: SignedCheckpoint
    to_checkpoint: SignedCheckpoint
    def __init__(self, from_size: _Optional[int] = ..., to_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ..., from_checkpoint: _Optional[_Union[SignedCheckpoint, _Mapping]] = ..., to_checkpoint: _Optional[_Union[SignedCheckpoint, _Mapping]] = ...) -> None: ...

class RunIntegrityAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RunStoreIntegrityAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
