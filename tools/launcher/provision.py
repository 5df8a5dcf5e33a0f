"""First start of a data directory: the operator token, the demo tenant (created over gRPC
through the gateway, as any client would) and archive.env; later starts keep them."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Final, TypeVar

import grpc

from archive.config import ConfigError, Settings
from archive.envfile import read_env_file, write_env_file
from archive.files import atomic_write
from archive.v1 import tenancy_pb2, tenancy_pb2_grpc
from archive.v1.common_pb2 import TenantId
from tools.launcher.errors import Interrupted, LaunchError, UsageError
from tools.launcher.layout import Layout

log = logging.getLogger("archive.launcher")

DEMO_TENANT: Final = "demo"
ENV_KEYS: Final = ("ARCHIVE_ENDPOINT", "ARCHIVE_TENANT", "ARCHIVE_TOKEN", "ARCHIVE_OPERATOR_TOKEN")
T = TypeVar("T")


def operator_token(layout: Layout, environ: Mapping[str, str] = os.environ) -> str:
    """ARCHIVE_OPERATOR_TOKEN if set, else the one kept in secrets/operator-token, else a new
    one written there (0600; first start)."""
    explicit = environ.get("ARCHIVE_OPERATOR_TOKEN", "").strip()
    if explicit:
        try:  # same rules as the services will apply, checked before anything starts
            Settings.from_env({"ARCHIVE_OPERATOR_TOKEN": explicit})
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        return explicit
    if layout.token_file.exists():
        token = layout.token_file.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    atomic_write(layout.token_file, (token + "\n").encode("utf-8"))
    log.info("generated the operator token in %s", layout.shown(layout.token_file))
    return token


def env_values(layout: Layout) -> dict[str, str]:
    """What archive.env holds, or nothing before the first start wrote it."""
    return read_env_file(layout.env_file) if layout.env_file.exists() else {}


class Provisioner:
    """Talks to the gateway (`channel`) with the operator token; gives up on `stop`."""

    def __init__(
        self,
        layout: Layout,
        endpoint: str,
        token: str,
        channel: Callable[[], grpc.Channel],
        stop: threading.Event,
    ) -> None:
        self.layout = layout
        self.endpoint = endpoint
        self.token = token
        self.channel = channel
        self.stop = stop

    def provision(self) -> None:
        """First start: create tenant demo through the gateway and write archive.env.
        Later starts: keep archive.env, refreshing the endpoint and operator token lines if
        they changed, and re-provision only if its tenant token no longer works."""
        env_file = self.layout.shown(self.layout.env_file)
        values = env_values(self.layout)
        if values.get("ARCHIVE_TOKEN") and values.get("ARCHIVE_TENANT"):
            if self._token_works(values["ARCHIVE_TOKEN"]):
                updated = {
                    **values,
                    "ARCHIVE_ENDPOINT": self.endpoint,
                    "ARCHIVE_OPERATOR_TOKEN": self.token,
                }
                if updated != values:
                    write_env_file(self.layout.env_file, updated)
                    log.info("updated %s", env_file)
                return
            log.warning(
                "the tenant token in %s is no longer accepted (data directory reset?); "
                "issuing a new one",
                env_file,
            )
        tenant = values.get("ARCHIVE_TENANT") or DEMO_TENANT
        tenant_token = self._tenant_token(tenant)
        fresh = dict(zip(ENV_KEYS, (self.endpoint, tenant, tenant_token, self.token), strict=True))
        write_env_file(self.layout.env_file, fresh)
        log.info("wrote %s", env_file)

    def _rpc(self, call: Callable[[grpc.Channel], T]) -> T:
        """`call(channel)` against the gateway, retried while it is UNAVAILABLE (a backend's
        channel may still be connecting)."""
        deadline = time.monotonic() + 15
        while True:
            try:
                return call(self.channel())
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
            if self.stop.wait(0.2):
                raise Interrupted

    def _token_works(self, tenant_token: str) -> bool:
        def who_am_i(channel: grpc.Channel) -> tenancy_pb2.WhoAmIResponse:
            # The generated stubs are untyped: the annotation says what the call returns.
            response: tenancy_pb2.WhoAmIResponse = tenancy_pb2_grpc.TenancyStub(channel).WhoAmI(
                tenancy_pb2.WhoAmIRequest(), metadata=bearer(tenant_token), timeout=5
            )
            return response

        try:
            self._rpc(who_am_i)
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return False
            log.warning("could not check the tenant token in archive.env: %s", exc.code().name)
        return True

    def _tenant_token(self, tenant: str) -> str:
        """Create the tenant and return its first token; a tenant that exists already (its
        archive.env was removed) gets a fresh token."""
        def create(channel: grpc.Channel) -> tenancy_pb2.CreateTenantResponse:
            request = tenancy_pb2.CreateTenantRequest(
                tenant=TenantId(value=tenant), display_name="Demo tenant (archive up)"
            )
            admin = tenancy_pb2_grpc.TenantAdminStub(channel)
            response: tenancy_pb2.CreateTenantResponse = admin.CreateTenant(
                request, metadata=bearer(self.token), timeout=10
            )
            return response

        def issue(channel: grpc.Channel) -> tenancy_pb2.IssueTokenResponse:
            request = tenancy_pb2.IssueTokenRequest(
                tenant=TenantId(value=tenant), description="archive up (archive.env)"
            )
            admin = tenancy_pb2_grpc.TenantAdminStub(channel)
            response: tenancy_pb2.IssueTokenResponse = admin.IssueToken(
                request, metadata=bearer(self.token), timeout=10
            )
            return response

        try:
            created = self._rpc(create)
            log.info("created tenant %s", tenant)
            return str(created.token.token)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise LaunchError(
                    f"could not create tenant {tenant}: {exc.code().name}: {exc.details()}"
                ) from None
        issued = self._rpc(issue)
        log.info("tenant %s exists; issued it a new token", tenant)
        return str(issued.token.token)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
