"""Python SDK for the archive: `ArchiveClient` over gRPC, typed errors, plain result types.

    from archive.client import ArchiveClient, ClientConfig, NotFound

    async with ArchiveClient(ClientConfig.from_env(env_file="var/archive.env")) as archive:
        receipt = await archive.upload(Path("invoice.pdf"), document_class="invoice")

See docs/cli.md for `archivectl`, the command line built on it.
"""

from archive.client.bulk import UploadItem, UploadOutcome
from archive.client.client import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    ArchiveClient,
    DownloadStream,
    UploadSource,
)
from archive.client.config import (
    ENV_CA_FILE,
    ENV_ENDPOINT,
    ENV_INSECURE,
    ENV_OPERATOR_TOKEN,
    ENV_TLS,
    ENV_TOKEN,
    ClientConfig,
    is_local_endpoint,
    read_env_file,
)
from archive.client.errors import (
    AlreadyExists,
    ArchiveError,
    ConfigurationError,
    Conflict,
    DeadlineExceeded,
    DigestMismatch,
    IntegrityError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    TlsHandshakeFailed,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    error_from_rpc,
)
from archive.client.models import (
    DocumentInfo,
    DocumentPage,
    Identity,
    IssuedToken,
    Receipt,
    ScanProvenance,
)

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "ENV_CA_FILE",
    "ENV_ENDPOINT",
    "ENV_INSECURE",
    "ENV_OPERATOR_TOKEN",
    "ENV_TLS",
    "ENV_TOKEN",
    "MAX_CHUNK_SIZE",
    "AlreadyExists",
    "ArchiveClient",
    "ArchiveError",
    "ClientConfig",
    "ConfigurationError",
    "Conflict",
    "DeadlineExceeded",
    "DigestMismatch",
    "DocumentInfo",
    "DocumentPage",
    "DownloadStream",
    "Identity",
    "IntegrityError",
    "InvalidArgument",
    "IssuedToken",
    "NotFound",
    "PermissionDenied",
    "Receipt",
    "ResourceExhausted",
    "ScanProvenance",
    "TlsHandshakeFailed",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UploadItem",
    "UploadOutcome",
    "UploadSource",
    "error_from_rpc",
    "is_local_endpoint",
    "read_env_file",
]
