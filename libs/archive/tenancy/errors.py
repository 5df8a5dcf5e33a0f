"""Typed tenancy errors; the gRPC layer maps each to a status (docs/errors.md)."""

from __future__ import annotations


class TenancyError(Exception):
    """Base class of every tenancy error."""


class InvalidTenancyArgument(TenancyError, ValueError):
    """A request field is malformed. `field_violations` names the field(s), so the gRPC layer
    can return a google.rpc.BadRequest the caller can act on."""

    def __init__(self, field: str, description: str) -> None:
        self.field_violations: tuple[tuple[str, str], ...] = ((field, description),)
        super().__init__(f"{field}: {description}")


class InvalidTenantName(InvalidTenancyArgument):
    def __init__(self, tenant: str, field: str = "tenant.value") -> None:
        self.tenant = tenant
        shown = tenant if len(tenant) <= 70 else tenant[:64] + "..."  # the input may be huge
        super().__init__(
            field,
            f"tenant {shown!r} is not valid: use 1-63 lower-case letters, digits or hyphens, "
            "starting with a letter or digit",
        )


class TenantAlreadyExists(TenancyError):
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant {tenant!r} already exists")


class TenantNotFound(TenancyError):
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"tenant {tenant!r} does not exist")


class TokenNotFound(TenancyError):
    def __init__(self, tenant: str, token_id: str) -> None:
        self.tenant = tenant
        self.token_id = token_id
        super().__init__(f"tenant {tenant!r} has no token {token_id!r}")
