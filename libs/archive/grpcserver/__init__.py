"""gRPC server scaffolding shared by every service: build_server, the error table, auth."""

from archive.grpcserver.auth import AuthInterceptor, current_principal
from archive.grpcserver.errors import (
    ERROR_TABLE,
    ErrorInterceptor,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
    current_correlation_id,
    status_for,
)
from archive.grpcserver.server import ArchiveServer, Registration, build_server, serve

__all__ = [
    "ERROR_TABLE",
    "ArchiveServer",
    "AuthInterceptor",
    "ErrorInterceptor",
    "InvalidArgument",
    "PermissionDenied",
    "Registration",
    "Unauthenticated",
    "build_server",
    "current_correlation_id",
    "current_principal",
    "serve",
    "status_for",
]
