"""archivectl's entry point: the parser (each command group adds its commands), local checks
before anything is sent, the client configuration (flags over the environment over the env
file), and one place where errors become messages and exit codes."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from archive.client import (
    ENV_CA_FILE,
    ENV_ENDPOINT,
    ENV_INSECURE,
    ENV_TLS,
    ArchiveError,
    ClientConfig,
)
from tools.archivectl import admin, audit, documents, evidence, journal, put
from tools.archivectl.args import EPILOG, add_connection_options
from tools.archivectl.output import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    describe,
    exit_code_for,
    print_error,
)

# In the order `archivectl --help` lists them.
COMMAND_GROUPS = (put, documents, evidence, journal, audit, admin)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archivectl",
        description=(
            "Deposit, find and retrieve documents in the archive, fetch and verify their "
            "evidence; administer tenants."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_connection_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error argparse has already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if getattr(args, "local", None) is not None:
            return int(args.local(args))  # offline: no endpoint, no token
        if args.prepare is not None:
            args.prepare(args)  # local checks, before any connection
        config = client_config(args)
        # Fail once, up front, rather than once per file.
        config.check_token_transport()
        if args.needs == "operator":
            config.admin_token()
        else:
            config.tenant_token()
        return int(asyncio.run(args.run(args, config)))
    except (UsageError, ArchiveError) as exc:
        print_error(describe(exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print_error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`archivectl ls | head`); don't let Python complain again at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        print_error(str(exc))
        return EXIT_FAILED


def client_config(args: argparse.Namespace) -> ClientConfig:
    """The SDK's configuration from the environment and --env-file, the flags winning (they
    are set as the variables they stand for, so every rule of from_env applies to them)."""
    environ = dict(os.environ)
    if args.endpoint:
        environ[ENV_ENDPOINT] = args.endpoint
    if getattr(args, "tls", None):
        environ[ENV_TLS] = "1"
    if getattr(args, "ca_file", None):
        environ[ENV_CA_FILE] = args.ca_file
    if getattr(args, "insecure", None):
        environ[ENV_INSECURE] = "1"
    overrides: dict[str, Any] = {"max_attempts": args.retries + 1}
    if args.timeout is not None:
        overrides["timeout"] = args.timeout
    return ClientConfig.from_env(environ, args.env_file, **overrides)
