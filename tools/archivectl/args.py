"""archivectl's command line: the help texts (environment, exit codes, examples), the
argument types, the connection options every remote command takes (endpoint, TLS, timeouts,
retries), and `add_command`, with which each command group adds its commands."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias

from archive.client import ClientConfig

DEFAULT_RETRIES: Final = 4


_ENVIRONMENT: Final = """\
environment:
  ARCHIVE_ENDPOINT        host:port of the archive
  ARCHIVE_TOKEN           tenant token (put, get, ls, info, whoami, evidence, checkpoint,
                          verify-extends, audit); verify needs nothing, it is offline
  ARCHIVE_OPERATOR_TOKEN  operator token (tenant, token)
  ARCHIVE_TLS=1           speak TLS, checking the archive against the system's roots
  ARCHIVE_CA_FILE         ... or against this CA (PEM); TLS is on with it alone
  ARCHIVE_INSECURE=1      allow plaintext to an address other than loopback (tokens
                          then cross the network in clear: refused without it)
  --env-file FILE reads KEY=VALUE lines (such as the launcher's var/archive.env);
  a variable set in the environment wins over the file, a flag over both.
"""


_EXIT_CODES: Final = """\
exit codes:
  0  success
  1  some operations failed (e.g. one of several files of a put); verify,
     verify-extends: a check failed (the reason says which); audit: it found failures
  2  usage or configuration error (bad arguments, ARCHIVE_ENDPOINT or token not set,
     a token to send in clear to another machine, file not found, request refused as
     invalid)
  3  authentication or permission refused
  4  not found
  5  service unavailable, or evidence not ready yet (after retries); the TLS
     handshake failed (certificate not trusted: check --ca-file)
  6  integrity failure (content does not match its SHA-256 or size; the evidence or
     checkpoint received does not verify: saved anyway, for a report)
  When every file of a put fails for the same kind of reason, put exits with that
  reason's code.
"""


_EXAMPLES: Final = """\
examples:
  export ARCHIVE_ENDPOINT=localhost:50051 ARCHIVE_TOKEN=arc_...
  archivectl --endpoint archive.example.org:443 --ca-file provider-ca.pem whoami
  archivectl put invoices/ --class invoice --meta year=2025
  archivectl ls --class invoice --limit 10
  archivectl get 3f1c...-uuid -o copy.pdf
  archivectl evidence 3f1c...-uuid -o evidence.zip
  archivectl verify copy.pdf --evidence evidence.zip --trust-root provider-root.pem
  archivectl checkpoint -o kept/ ; later: archivectl verify-extends kept/
  archivectl --env-file var/archive.env tenant create acme --json   (operator token)
"""


EPILOG: Final = f"{_ENVIRONMENT}\n{_EXIT_CODES}\n{_EXAMPLES}"


SUBCOMMAND_EPILOG: Final = f"{_ENVIRONMENT}\n{_EXIT_CODES}"


def meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def non_negative(text: str) -> int:
    return 0 if text.strip() == "0" else positive(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def add_connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the command; after it, they only count when given
    # (SUPPRESS keeps a subcommand's default from hiding a value given before it).
    default: Any = None if top else argparse.SUPPRESS
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--env-file",
        metavar="FILE",
        default=default,
        help="read ARCHIVE_* settings from FILE (the environment wins)",
    )
    group.add_argument(
        "--endpoint",
        metavar="HOST:PORT",
        default=default,
        help="archive address (overrides ARCHIVE_ENDPOINT)",
    )
    group.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=seconds,
        default=default,
        help="deadline of each request other than transfers (default 30)",
    )
    group.add_argument(
        "--retries",
        metavar="N",
        type=non_negative,
        default=DEFAULT_RETRIES if top else argparse.SUPPRESS,
        help=f"retries when the archive is unavailable (default {DEFAULT_RETRIES})",
    )
    group.add_argument(
        "--tls",
        action="store_true",
        default=default,
        help="speak TLS, checking the archive's certificate against the system's roots "
        "(ARCHIVE_TLS=1)",
    )
    group.add_argument(
        "--ca-file",
        metavar="CA.pem",
        default=default,
        help="speak TLS, checking the archive's certificate against this CA (ARCHIVE_CA_FILE)",
    )
    group.add_argument(
        "--insecure",
        action="store_true",
        default=default,
        help="allow plaintext to an address other than loopback: tokens then cross the "
        "network in clear (ARCHIVE_INSECURE=1)",
    )


Run = Callable[[argparse.Namespace, ClientConfig], Awaitable[int]]
Prepare = Callable[[argparse.Namespace], None]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command(
    parent: Commands,
    name: str,
    help_text: str,
    run: Run | None,
    *,
    needs: str = "tenant",
    prepare: Prepare | None = None,
) -> argparse.ArgumentParser:
    """A command (or, with no `run`, a group of subcommands). `needs` names the token it
    sends ("tenant" or "operator"); `prepare(args)` checks local input before anything is
    sent, raising UsageError."""
    sub: argparse.ArgumentParser = parent.add_parser(
        name,
        help=help_text,
        description=help_text,
        epilog=SUBCOMMAND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if run is not None:
        sub.set_defaults(run=run, needs=needs, prepare=prepare)
        add_connection_options(sub, top=False)
    return sub


def json_flag(sub: argparse.ArgumentParser, text: str = "one JSON object per line") -> None:
    sub.add_argument("--json", action="store_true", help=text)


def meta_option(sub: argparse.ArgumentParser, text: str) -> None:
    sub.add_argument(
        "--meta", type=meta, action="append", default=[], metavar="KEY=VALUE", help=text
    )
