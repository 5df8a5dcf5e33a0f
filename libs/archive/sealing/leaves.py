"""What a leaf of a tenant's Merkle log is: the event as RFC 8785 canonical JSON.

JSON rather than protobuf bytes so that a verifier decades from now needs no schema to read
what was sealed. The encoding is a pure function of the stored event (never of the store's
positions or of the sealer's clock), so two sealers derive the same leaves.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, symbol_database
from google.protobuf.message import Message

from archive.eventstore import SYSTEM_TENANT, RecordedEvent
from archive.sealing.canonical_json import canonicalize
from archive.sealing.merkle import leaf_hash
from archive.v1 import events_pb2

LEAF_FORMAT = "archive.v1.leaf/1"
# Categories whose events are not leaves: the log's own records (sealing them would make every
# checkpoint a new leaf that needs a checkpoint, forever); checkpoints protect them instead.
UNSEALED_CATEGORIES = frozenset({"seallog"})
SYSTEM_TENANT_CATEGORY = "tenant"


def leaf_tenant(event: RecordedEvent) -> str | None:
    """The tenant whose log seals this event, or None if no tenant's log does."""
    stream = event.stream
    if stream.category in UNSEALED_CATEGORIES:
        return None
    if stream.tenant == SYSTEM_TENANT:
        # Tenant creation and token changes belong to the tenant they concern.
        return stream.id if stream.category == SYSTEM_TENANT_CATEGORY else None
    return stream.tenant


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _timestamp(ts: Any) -> str:
    return rfc3339(ts.ToDatetime(tzinfo=UTC))


def _document_ingested(event: events_pb2.DocumentIngested) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tenant": event.tenant.value,
        "document_id": event.document_id.value,
        "sha256": event.sha256.value.hex(),
        "sha512": event.sha512.value.hex(),
        "size": event.size_bytes,
        "received_at": _timestamp(event.received_at),
        "file_name": event.file_name,
        "media_type": event.media_type,
        "document_class": event.document_class,
        "metadata": dict(event.metadata),
        "format": {
            "puid": event.format.puid,
            "media_type": event.format.media_type,
            "name": event.format.name,
            "identified_by": event.format.identified_by,
        },
    }
    if event.HasField("scan_provenance"):
        provenance = event.scan_provenance
        data["scan_provenance"] = {
            "operator": provenance.operator,
            "device": provenance.device,
            "settings": provenance.settings,
            "scanned_at": _timestamp(provenance.scanned_at)
            if provenance.HasField("scanned_at")
            else "",
        }
    return data


def _simplify(value: Any) -> Any:
    """Generic protobuf JSON made plainer: {"value": x} wrappers (ids) become x, digests
    become {"algorithm": name, "hex": ...}."""
    if isinstance(value, dict):
        if set(value) == {"value"} and isinstance(value["value"], str):
            return value["value"]
        if "algorithm" in value and str(value.get("algorithm", "")).startswith("DIGEST_"):
            raw = base64.b64decode(value.get("value", ""))
            return {"algorithm": value["algorithm"], "hex": raw.hex()}
        return {k: _simplify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_simplify(v) for v in value]
    return value


def event_data(event: RecordedEvent) -> dict[str, Any]:
    try:
        cls = symbol_database.Default().GetSymbol(event.type)
    except KeyError:
        return {"unknown_type_base64": base64.b64encode(event.data).decode()}
    message: Message = cls.FromString(event.data)
    if isinstance(message, events_pb2.DocumentIngested):
        return _document_ingested(message)
    plain: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    # An event is never itself an id wrapper or a digest: only its fields are simplified.
    return {key: _simplify(value) for key, value in plain.items()}


def leaf_document(event: RecordedEvent) -> dict[str, Any]:
    return {
        "leaf_format": LEAF_FORMAT,
        "event_id": event.event_id,
        "tenant": leaf_tenant(event) or event.tenant,
        "stream": str(event.stream),
        "version": event.version,
        "type": event.type,
        "recorded_at": rfc3339(event.recorded_at),
        "causation_id": event.causation_id,
        "correlation_id": event.correlation_id,
        "data": event_data(event),
    }


def leaf_bytes(event: RecordedEvent) -> bytes:
    return canonicalize(leaf_document(event))


def leaf_hash_of(event: RecordedEvent) -> bytes:
    return leaf_hash(leaf_bytes(event))

