"""Stream names: "<tenant>.<category>.<id>", each part safe to use as a NATS subject token."""

from __future__ import annotations

import re
from dataclasses import dataclass

from archive.eventstore.errors import InvalidStreamName

TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
# System streams (tenants, tokens) live under this pseudo-tenant, which no tenant id can equal.
SYSTEM_TENANT = "_system"
_CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def is_valid_tenant(tenant: str) -> bool:
    return bool(TENANT_RE.match(tenant))


@dataclass(frozen=True, order=True)
class StreamName:
    tenant: str
    category: str
    id: str

    def __post_init__(self) -> None:
        if not (self.tenant == SYSTEM_TENANT or TENANT_RE.match(self.tenant)):
            raise InvalidStreamName(
                f"tenant {self.tenant!r}: use 1-63 lower-case letters, digits or hyphens"
            )
        if not _CATEGORY_RE.match(self.category):
            raise InvalidStreamName(
                f"category {self.category!r}: use a lower-case letter then letters, digits, _ or -"
            )
        if not _ID_RE.match(self.id):
            raise InvalidStreamName(
                f"stream id {self.id!r}: use 1-128 letters, digits, _ or - (no dots or spaces)"
            )

    @classmethod
    def parse(cls, text: str) -> StreamName:
        parts = text.split(".")
        if len(parts) != 3:
            raise InvalidStreamName(f"stream name {text!r}: expected '<tenant>.<category>.<id>'")
        return cls(*parts)

    @classmethod
    def of(cls, value: StreamName | str) -> StreamName:
        return value if isinstance(value, StreamName) else cls.parse(value)

    def __str__(self) -> str:
        return f"{self.tenant}.{self.category}.{self.id}"


@dataclass(frozen=True)
class StreamFilter:
    """Selects streams for read_all/subscribe_all; None matches any value."""

    tenant: str | None = None
    category: str | None = None

    def matches(self, stream: StreamName) -> bool:
        return (self.tenant is None or stream.tenant == self.tenant) and (
            self.category is None or stream.category == self.category
        )
