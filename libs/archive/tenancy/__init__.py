"""Tenants and their bearer tokens: commands that append tenancy events and the registry that
authenticates callers from those events. The gRPC servicers that expose them live with the
service that hosts them (services/ingest/tenancy_servicer.py)."""

from archive.tenancy.commands import (
    CreatedTenant,
    IssuedToken,
    create_tenant,
    issue_token,
    revoke_token,
    tenant_stream,
)
from archive.tenancy.errors import (
    InvalidTenancyArgument,
    InvalidTenantName,
    TenancyError,
    TenantAlreadyExists,
    TenantNotFound,
    TokenNotFound,
)
from archive.tenancy.registry import OPERATOR, Principal, TenantRegistry, TokenCheck, Verification

__all__ = [
    "OPERATOR",
    "CreatedTenant",
    "InvalidTenancyArgument",
    "InvalidTenantName",
    "IssuedToken",
    "Principal",
    "TenancyError",
    "TenantAlreadyExists",
    "TenantNotFound",
    "TenantRegistry",
    "TokenCheck",
    "TokenNotFound",
    "Verification",
    "create_tenant",
    "issue_token",
    "revoke_token",
    "tenant_stream",
]
