"""What a tenant token may do: its roles, and the role each tenant method needs.

- `deposit`: put documents in (Ingest).
- `read`: find, list and download documents (Search).
- `audit`: the journal, evidence, checkpoints, audits and certificates, never content
  (Sealing).
- `retention`: retention rules, legal holds, disposals and erasure requests (the retention
  service).

Every method of an `archive.v1` service that a tenant token may call is listed in
METHOD_ROLES; one that is not is refused (a new RPC must say which role it needs: a test
walks every service of the catalog). Methods that need the operator token are the
interceptor's business, not this table's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from archive.tenancy.errors import InvalidTenancyArgument

DEPOSIT: Final = "deposit"
READ: Final = "read"
AUDIT: Final = "audit"
RETENTION: Final = "retention"
ALL_ROLES: Final = frozenset({DEPOSIT, READ, AUDIT, RETENTION})
# What every token could do before roles existed; tokens issued then, and tokens issued
# without naming roles, keep exactly that.
LEGACY_ROLES: Final = frozenset({DEPOSIT, READ, AUDIT})
# A tenant's first token (CreateTenant) is its owner's: every role.
FIRST_TOKEN_ROLES: Final = ALL_ROLES

# None: any valid tenant token (the caller asking about itself).
METHOD_ROLES: Final[Mapping[str, str | None]] = {
    "/archive.v1.Ingest/Upload": DEPOSIT,
    "/archive.v1.Ingest/UploadMany": DEPOSIT,
    "/archive.v1.Ingest/FindDeposits": DEPOSIT,
    "/archive.v1.Search/GetDocument": READ,
    "/archive.v1.Search/ListDocuments": READ,
    "/archive.v1.Search/Download": READ,
    "/archive.v1.Sealing/GetEvidence": AUDIT,
    "/archive.v1.Sealing/GetCheckpoint": AUDIT,
    "/archive.v1.Sealing/GetConsistencyProof": AUDIT,
    "/archive.v1.Sealing/RunIntegrityAudit": AUDIT,
    "/archive.v1.Tenancy/WhoAmI": None,
}
ARCHIVE_PREFIX: Final = "/archive.v1."


def parse_roles(values: Iterable[str], field: str = "roles") -> frozenset[str]:
    """The roles asked for, checked; none asked for means LEGACY_ROLES."""
    roles = frozenset(values)
    unknown = sorted(roles - ALL_ROLES)
    if unknown:
        raise InvalidTenancyArgument(
            field, f"unknown role {unknown[0]!r}; roles are {', '.join(sorted(ALL_ROLES))}"
        )
    return roles or LEGACY_ROLES


def roles_of_event(stored: Iterable[str]) -> frozenset[str]:
    """The roles a TenantTokenIssued grants: an event from before roles holds none."""
    return frozenset(stored) or LEGACY_ROLES
