"""`archive`: run the whole platform on one machine, or one service of it.

    archive up              nats-server, every service and the gateway, supervised (make run)
    archive serve NAME      one service in this process (what `up` runs for each service)
    archive status          what runs from a data directory
    archive down            stop the `archive up` of a data directory

`archive up` keeps everything under one data directory (ARCHIVE_DATA_DIR, default ./var; see
`layout`), so that `set -a; . var/archive.env; set +a` is all a shell needs to talk to the
archive. Every child runs in its own process group, so a Ctrl-C in the terminal reaches only
the launcher, which then stops things in order: gateway, services, nats-server. Children are
also asked by the kernel to stop if the launcher dies without cleaning up (Linux).

Other variables: ARCHIVE_SERVICES (default: every service of services/catalog.py),
ARCHIVE_GATEWAY_PORT (default 7070), ARCHIVE_NATS_PORT (default 4222, or a free port when 4222
is taken), ARCHIVE_NATS_SYNC (default `always`: fsync before every acknowledgement; or an
interval such as `2m`, see docs/decisions.md D4), ARCHIVE_PROFILE (default `development`
here, and only here: sealing may generate its own PKI and stamp with the built-in TSA; `archive
serve` alone defaults to `production`); every other ARCHIVE_* variable reaches the services.

Modules, one job each: `layout` (the data directory and pid files), `child` (one supervised
process), `supervisor` (start in order, restart, stop), `provision` (operator token, demo
tenant, archive.env), `commands` (the command line).
"""

from tools.launcher.commands import main

__all__ = ["main"]
