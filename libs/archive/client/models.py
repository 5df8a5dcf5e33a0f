"""Plain result types: what a caller reads, without protobuf in the way.

Digests are lower-case hex strings (what `hashlib.sha256(data).hexdigest()` gives and what
`sha256sum` prints), times are timezone-aware UTC datetimes, sizes are ints. `to_dict()`
gives JSON-ready values (ISO 8601 times), used by `archivectl --json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from archive.v1 import common_pb2, events_pb2, ingest_pb2, sealing_pb2, search_pb2, tenancy_pb2


@dataclass(frozen=True)
class ScanProvenance:
    """Who digitised a paper original, when, on what device and with what settings."""

    operator: str = ""
    scanned_at: datetime | None = None
    device: str = ""
    settings: str = ""

    def to_proto(self) -> events_pb2.ScanProvenance:
        message = events_pb2.ScanProvenance(
            operator=self.operator, device=self.device, settings=self.settings
        )
        if self.scanned_at is not None:
            message.scanned_at.CopyFrom(_timestamp(self.scanned_at))
        return message

    @classmethod
    def from_proto(cls, message: events_pb2.ScanProvenance) -> ScanProvenance:
        return cls(
            operator=message.operator,
            scanned_at=_datetime(message.scanned_at) if message.HasField("scanned_at") else None,
            device=message.device,
            settings=message.settings,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "operator": self.operator,
            "scanned_at": _iso(self.scanned_at),
            "device": self.device,
            "settings": self.settings,
        }


@dataclass(frozen=True)
class Receipt:
    """The archive's answer to a deposit. `replayed` is True when it answers a retry with an
    idempotency key already used: the original receipt, nothing new stored."""

    tenant: str
    document_id: str
    sha256: str
    sha512: str
    size: int
    file_name: str
    media_type: str
    puid: str
    format_name: str
    received_at: datetime | None
    event_position: int
    replayed: bool
    idempotency_key: str

    @classmethod
    def from_proto(cls, message: ingest_pb2.DepositReceipt, idempotency_key: str) -> Receipt:
        return cls(
            tenant=message.tenant.value,
            document_id=message.document_id.value,
            sha256=_hex(message.sha256),
            sha512=_hex(message.sha512),
            size=message.size_bytes,
            # The archive's own identification, falling back to what the client declared.
            media_type=message.format.media_type or message.media_type,
            file_name=message.file_name,
            puid=message.format.puid,
            format_name=message.format.name,
            received_at=_datetime(message.received_at) if message.HasField("received_at") else None,
            event_position=message.event_position,
            replayed=message.replayed,
            idempotency_key=idempotency_key,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **_document_fields(self),
            "received_at": _iso(self.received_at),
            "event_position": self.event_position,
            "replayed": self.replayed,
            "idempotency_key": self.idempotency_key,
        }


@dataclass(frozen=True)
class DocumentInfo:
    """A document as the archive's registry knows it."""

    tenant: str
    document_id: str
    sha256: str
    sha512: str
    size: int
    file_name: str
    media_type: str
    puid: str
    format_name: str
    metadata: dict[str, str] = field(default_factory=dict)
    document_class: str = ""
    received_at: datetime | None = None
    scan_provenance: ScanProvenance | None = None
    event_position: int = 0

    @classmethod
    def from_proto(cls, message: search_pb2.DocumentInfo) -> DocumentInfo:
        return cls(
            tenant=message.tenant.value,
            document_id=message.document_id.value,
            sha256=_hex(message.sha256),
            sha512=_hex(message.sha512),
            size=message.size_bytes,
            file_name=message.file_name,
            media_type=message.format.media_type or message.media_type,
            puid=message.format.puid,
            format_name=message.format.name,
            metadata=dict(message.metadata),
            document_class=message.document_class,
            received_at=_datetime(message.received_at) if message.HasField("received_at") else None,
            scan_provenance=ScanProvenance.from_proto(message.scan_provenance)
            if message.HasField("scan_provenance")
            else None,
            event_position=message.event_position,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **_document_fields(self),
            "metadata": dict(self.metadata),
            "document_class": self.document_class,
            "received_at": _iso(self.received_at),
            "scan_provenance": self.scan_provenance.to_dict() if self.scan_provenance else None,
            "event_position": self.event_position,
        }


@dataclass(frozen=True)
class DocumentPage:
    """One page of a listing; `next_page_token` is empty on the last page."""

    documents: list[DocumentInfo]
    next_page_token: str

    @classmethod
    def from_proto(cls, message: search_pb2.ListDocumentsResponse) -> DocumentPage:
        return cls(
            documents=[DocumentInfo.from_proto(d) for d in message.documents],
            next_page_token=message.page.next_page_token,
        )


@dataclass(frozen=True)
class Identity:
    """Who a tenant token belongs to (`whoami`)."""

    tenant: str
    token_id: str
    roles: tuple[str, ...] = ()  # what the token may do: deposit, read, audit, retention

    def to_dict(self) -> dict[str, Any]:
        return {"tenant": self.tenant, "token_id": self.token_id, "roles": list(self.roles)}


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued tenant token. `token` is the secret, shown once by the archive and
    never retrievable again: store it now. It is left out of repr() so logs don't catch it."""

    tenant: str
    token_id: str
    token: str = field(repr=False)
    issued_at: datetime | None = None
    roles: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, tenant: str, message: tenancy_pb2.IssuedToken) -> IssuedToken:
        return cls(
            tenant=tenant,
            token_id=message.token_id,
            token=message.token,
            issued_at=_datetime(message.issued_at) if message.HasField("issued_at") else None,
            roles=tuple(message.roles),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "token_id": self.token_id,
            "token": self.token,
            "issued_at": _iso(self.issued_at),
            "roles": list(self.roles),
        }


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint of the tenant's journal as the archive sealed it: the C2SP checkpoint text,
    the detached CMS seal over it (DER), the RFC 3161 time-stamp response over it (DER), and
    the PEM certificates to check both (`archive.verify.verify_signed_checkpoint`): the seal's
    chain and root, the time-stamp authority's chain and its own root."""

    checkpoint: bytes
    seal: bytes
    timestamp_response: bytes
    seal_chain_pem: str
    tsa_chain_pem: str
    root_pem: str
    tsa_root_pem: str = ""

    @classmethod
    def from_proto(cls, message: sealing_pb2.SignedCheckpoint) -> SignedCheckpoint:
        return cls(
            checkpoint=message.checkpoint,
            seal=message.seal,
            timestamp_response=message.timestamp_response,
            seal_chain_pem=message.seal_chain_pem,
            tsa_chain_pem=message.tsa_chain_pem,
            root_pem=message.root_pem,
            tsa_root_pem=message.tsa_root_pem,
        )

    @property
    def tree_size(self) -> int:
        """The size line of the checkpoint text (0 if it has none)."""
        lines = self.checkpoint.split(b"\n")
        return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between two checkpointed sizes, with both checkpoints."""

    from_size: int
    to_size: int
    hashes: tuple[bytes, ...]
    from_checkpoint: SignedCheckpoint
    to_checkpoint: SignedCheckpoint

    @classmethod
    def from_proto(cls, message: sealing_pb2.ConsistencyProof) -> ConsistencyProof:
        return cls(
            from_size=message.from_size,
            to_size=message.to_size,
            hashes=tuple(message.hashes),
            from_checkpoint=SignedCheckpoint.from_proto(message.from_checkpoint),
            to_checkpoint=SignedCheckpoint.from_proto(message.to_checkpoint),
        )


@dataclass(frozen=True)
class IntegrityFailure:
    """One problem an integrity audit found: `kind` is content (a stored copy fails its
    digest), journal (an event no longer hashes to its sealed leaf), log (root vs checkpoint)
    or seal (signature or time stamp)."""

    kind: str
    description: str
    document_id: str = ""
    leaf_index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "document_id": self.document_id,
            "leaf_index": self.leaf_index,
            "description": self.description,
        }


@dataclass(frozen=True)
class IntegrityAuditReport:
    """The result of an integrity audit (`IntegrityAuditCompleted`); `ok` when no failure."""

    tenant: str
    audit_id: str
    trigger: str
    started_at: datetime | None
    completed_at: datetime | None
    documents_checked: int
    bytes_rehashed: int
    events_checked: int
    tree_size: int
    root_hash: str
    failures: tuple[IntegrityFailure, ...] = ()  # the first ones (the server lists 100)
    failures_not_listed: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.failures_not_listed

    @property
    def failure_count(self) -> int:
        return len(self.failures) + self.failures_not_listed

    @classmethod
    def from_proto(cls, message: events_pb2.IntegrityAuditCompleted) -> IntegrityAuditReport:
        return cls(
            tenant=message.tenant.value,
            audit_id=message.audit_id,
            trigger=message.trigger,
            started_at=_datetime(message.started_at) if message.HasField("started_at") else None,
            completed_at=(
                _datetime(message.completed_at) if message.HasField("completed_at") else None
            ),
            documents_checked=message.documents_checked,
            bytes_rehashed=message.bytes_rehashed,
            events_checked=message.events_checked,
            tree_size=message.tree_size,
            root_hash=message.root_hash.hex(),
            failures=tuple(
                IntegrityFailure(
                    kind=f.kind,
                    description=f.description,
                    document_id=f.document_id,
                    leaf_index=f.leaf_index,
                )
                for f in message.failures
            ),
            failures_not_listed=message.failures_not_listed,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tenant": self.tenant,
            "audit_id": self.audit_id,
            "trigger": self.trigger,
            "started_at": _iso(self.started_at),
            "completed_at": _iso(self.completed_at),
            "documents_checked": self.documents_checked,
            "bytes_rehashed": self.bytes_rehashed,
            "events_checked": self.events_checked,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "failures": [failure.to_dict() for failure in self.failures],
            "failures_not_listed": self.failures_not_listed,
        }


def _hex(digest: common_pb2.Digest) -> str:
    return digest.value.hex()


def _datetime(timestamp: Timestamp) -> datetime:
    return timestamp.ToDatetime(tzinfo=UTC)


def _timestamp(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        raise ValueError("scanned_at must be timezone-aware (e.g. datetime.now(UTC))")
    timestamp = Timestamp()
    timestamp.FromDatetime(moment)
    return timestamp


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def _document_fields(document: Receipt | DocumentInfo) -> dict[str, Any]:
    """What a receipt and a document's record both say of the document, in one order."""
    return {
        "tenant": document.tenant,
        "document_id": document.document_id,
        "sha256": document.sha256,
        "sha512": document.sha512,
        "size": document.size,
        "file_name": document.file_name,
        "media_type": document.media_type,
        "puid": document.puid,
        "format_name": document.format_name,
    }
