"""The one list of the archive's services: which process serves which gRPC services.

Read by the launcher (`archive up` starts these, `archive serve` knows these names), by the
gateway (ARCHIVE_GATEWAY_BACKENDS names a backend per service; the gateway routes each of its
gRPC services there) and by the tests that hold deploy/ to it. Each entry names its gRPC
services through the generated descriptors they are registered with
(`Registration.of(ingest_pb2.DESCRIPTOR.services_by_name["Ingest"], ...)` in its main), so a
renamed or removed proto service breaks here, at import. `archive up` also asks every service
it starts, through gRPC reflection, what it really serves, and refuses to go on when that
differs from its entry (tools/launcher/supervisor.py).

Adding a service: a package services/<name>/ whose main.py has `async def run(settings)`, an
entry below, and deploy/base/<name>.yaml (tests/integration/test_deploy_manifests.py says
what is missing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf.descriptor import ServiceDescriptor

from archive.v1 import ingest_pb2, sealing_pb2, search_pb2, tenancy_pb2

# Not a backend: the gateway serves no API of its own, it routes the services below.
GATEWAY: Final = "gateway"
GATEWAY_DEFAULT_PORT: Final = 7070


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    # Used by `archive serve NAME` when ARCHIVE_GRPC_PORT is not set, so that services started
    # by hand on one machine do not collide; `archive up` and Kubernetes choose their own.
    default_port: int
    descriptors: tuple[ServiceDescriptor, ...]

    @property
    def module(self) -> str:
        """The module whose `run(settings)` serves it."""
        return f"services.{self.name}.main"

    @property
    def grpc_services(self) -> tuple[str, ...]:
        """Full gRPC service names, e.g. ("archive.v1.Search",)."""
        return tuple(descriptor.full_name for descriptor in self.descriptors)


SERVICES: Final[tuple[ServiceEntry, ...]] = (
    ServiceEntry(
        "ingest",
        50061,
        (
            ingest_pb2.DESCRIPTOR.services_by_name["Ingest"],
            tenancy_pb2.DESCRIPTOR.services_by_name["TenantAdmin"],
            tenancy_pb2.DESCRIPTOR.services_by_name["Tenancy"],
        ),
    ),
    ServiceEntry("search", 50062, (search_pb2.DESCRIPTOR.services_by_name["Search"],)),
    ServiceEntry("sealing", 50063, (sealing_pb2.DESCRIPTOR.services_by_name["Sealing"],)),
)
BY_NAME: Final[Mapping[str, ServiceEntry]] = {entry.name: entry for entry in SERVICES}
NAMES: Final[tuple[str, ...]] = tuple(BY_NAME)


class UnknownService(KeyError):
    """A name that is not in the catalog; str() lists the known ones."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown service {self.name!r}; known: {', '.join(NAMES)}"


def entry(name: str) -> ServiceEntry:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownService(name) from None


def host_of(grpc_service: str) -> ServiceEntry:
    """The entry serving a gRPC service (e.g. archive.v1.TenantAdmin -> ingest)."""
    for candidate in SERVICES:
        if grpc_service in candidate.grpc_services:
            return candidate
    raise UnknownService(grpc_service)


def routes(backends: Mapping[str, str]) -> dict[str, str]:
    """{service name: address} -> {gRPC service: address}: each backend gets every gRPC service
    its entry lists."""
    table: dict[str, str] = {}
    for name, address in backends.items():
        for grpc_service in entry(name).grpc_services:
            table[grpc_service] = address
    return table
