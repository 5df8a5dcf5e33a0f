"""archivectl: deposit, find and retrieve documents, fetch and check their evidence, and
administer tenants, from a shell.

A thin layer over the Python SDK (`archive.client`): argument parsing, output for people
(one line per thing) or for programs (`--json`, one JSON object per line), a progress bar on a
terminal, and exit codes scripts can rely on (see `archivectl --help` and docs/cli.md).

One module per command group (documents: put, get, ls, info, whoami; evidence: evidence,
verify; journal: checkpoint, verify-extends; audit; admin: tenant, token), `args` for the
options they share, `output` for everything printed and the exit codes, `cli` for `main`.

Tokens come only from the environment or an env file, never from flags: command lines end up in
shell histories and `ps` listings.
"""

from tools.archivectl.cli import main

__all__ = ["main"]
