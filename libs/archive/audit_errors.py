"""What can go wrong when asking for an integrity audit, as the sealing service raises it.

The gRPC status is in archive.grpcserver.errors.ERROR_TABLE; this knows nothing of gRPC."""

from __future__ import annotations


class AuditAlreadyRunning(Exception):
    """An audit of this tenant is under way: audits re-read everything, so one at a time."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(
            f"an integrity audit of tenant {tenant} is already running; retry when it ends"
        )
