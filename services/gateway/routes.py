"""Where the gateway sends each call: a route table {gRPC service: backend address}.

Two ways to say it, which add up:
- ARCHIVE_GATEWAY_BACKENDS="ingest=ingest:50051,search=search:50051": one address per archive
  service of services/catalog.py, which knows the gRPC services each of them serves (what
  `archive up` and deploy/ use);
- ARCHIVE_GATEWAY_ROUTES="archive.v1.Ingest=127.0.0.1:50061,...": gRPC services one by one,
  for backends that are not in the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from services import catalog

ROUTES_VARIABLE: Final = "ARCHIVE_GATEWAY_ROUTES"
BACKENDS_VARIABLE: Final = "ARCHIVE_GATEWAY_BACKENDS"


class RouteError(ValueError):
    """ARCHIVE_GATEWAY_ROUTES or ARCHIVE_GATEWAY_BACKENDS is malformed; the message says
    where."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        self.problem = problem
        super().__init__(f"{variable}: {problem}")


def _pairs(variable: str, text: str) -> list[tuple[str, str]]:
    """'a=host:1, b=host:2' -> [(a, host:1), (b, host:2)]; whitespace and empty items are
    ignored, every address is checked."""
    pairs = []
    for item in text.replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, address = (part.strip() for part in item.partition("="))
        if not sep or not key or not address:
            raise RouteError(variable, f"{item!r} is not name=host:port")
        host, colon, port = address.rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RouteError(variable, f"{address!r} is not host:port")
        pairs.append((key, address))
    return pairs


def parse_routes(text: str) -> dict[str, str]:
    """'archive.v1.Ingest=127.0.0.1:50061,archive.v1.Search=127.0.0.1:50062' ->
    {service: address}."""
    routes: dict[str, str] = {}
    for service, address in _pairs(ROUTES_VARIABLE, text):
        if "/" in service or not all(service.split(".")):
            raise RouteError(
                ROUTES_VARIABLE,
                f"{service!r} is not a full gRPC service name (like archive.v1.Ingest)",
            )
        if service in routes and routes[service] != address:
            raise RouteError(ROUTES_VARIABLE, f"{service} is routed twice")
        routes[service] = address
    return routes


def parse_backends(text: str) -> dict[str, str]:
    """'ingest=ingest:50051,search=search:50051' -> {archive service: address}; names come
    from the catalog."""
    backends: dict[str, str] = {}
    for name, address in _pairs(BACKENDS_VARIABLE, text):
        if name not in catalog.BY_NAME:
            raise RouteError(BACKENDS_VARIABLE, f"{catalog.UnknownService(name)}")
        if name in backends:
            raise RouteError(BACKENDS_VARIABLE, f"{name} is listed twice")
        backends[name] = address
    return backends


def route_table(environ: Mapping[str, str]) -> dict[str, str]:
    """Both variables' routes together; a gRPC service given two different addresses is an
    error."""
    table = catalog.routes(parse_backends(environ.get(BACKENDS_VARIABLE, "")))
    for service, address in parse_routes(environ.get(ROUTES_VARIABLE, "")).items():
        if table.get(service, address) != address:
            raise RouteError(
                ROUTES_VARIABLE,
                f"{service} is routed to {address}, but "
                f"{BACKENDS_VARIABLE} routes it to {table[service]}",
            )
        table[service] = address
    return table
