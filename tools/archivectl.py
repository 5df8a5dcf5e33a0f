"""archivectl: deposit, find and retrieve documents, fetch and check their evidence, and
administer tenants, from a shell.

A thin layer over the Python SDK (`archive.client`): argument parsing, output for people
(one line per thing) or for programs (`--json`, one JSON object per line), a progress bar on a
terminal, and exit codes scripts can rely on (see EPILOG and docs/cli.md).

Tokens come only from the environment or an env file, never from flags: command lines end up in
shell histories and `ps` listings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import stat
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final, TextIO

from archive import verify as evidence
from archive.client import (
    ENV_ENDPOINT,
    ArchiveClient,
    ArchiveError,
    ClientConfig,
    ConfigurationError,
    DocumentInfo,
    IntegrityError,
    InvalidArgument,
    IssuedToken,
    NotFound,
    PermissionDenied,
    Receipt,
    Unauthenticated,
    Unavailable,
    UploadItem,
)
from archive.client.errors import NotReady
from archive.client.models import IntegrityAuditReport, SignedCheckpoint
from archive.files import atomic_write
from archive.verify import Check, CheckpointReport, EvidenceReport

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_AUTH: Final = 3
EXIT_NOT_FOUND: Final = 4
EXIT_UNAVAILABLE: Final = 5
EXIT_INTEGRITY: Final = 6
EXIT_INTERRUPTED: Final = 130

DEFAULT_CONCURRENCY: Final = 4
DEFAULT_RETRIES: Final = 4

_ENVIRONMENT: Final = """\
environment:
  ARCHIVE_ENDPOINT        host:port of the archive
  ARCHIVE_TOKEN           tenant token (put, get, ls, info, whoami, evidence, checkpoint,
                          verify-extends, audit); verify needs nothing, it is offline
  ARCHIVE_OPERATOR_TOKEN  operator token (tenant, token)
  --env-file FILE reads KEY=VALUE lines (such as the launcher's var/archive.env);
  a variable set in the environment wins over the file.
"""
_EXIT_CODES: Final = """\
exit codes:
  0  success
  1  some operations failed (e.g. one of several files of a put); verify,
     verify-extends: a check failed (the reason says which); audit: it found failures
  2  usage or configuration error (bad arguments, ARCHIVE_ENDPOINT or token not set,
     file not found, request refused as invalid)
  3  authentication or permission refused
  4  not found
  5  service unavailable, or evidence not ready yet (after retries)
  6  integrity failure (content does not match its SHA-256 or size; the evidence or
     checkpoint received does not verify: saved anyway, for a report)
  When every file of a put fails for the same kind of reason, put exits with that
  reason's code.
"""
_EXAMPLES: Final = """\
examples:
  export ARCHIVE_ENDPOINT=localhost:50051 ARCHIVE_TOKEN=arc_...
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


class UsageError(Exception):
    """Bad input found before anything was sent: exit code 2."""


def exit_code_for(exc: BaseException) -> int:
    """The documented exit code for an error."""
    if isinstance(exc, IntegrityError):  # before InvalidArgument: DigestMismatch is both
        return EXIT_INTEGRITY
    if isinstance(exc, UsageError | ConfigurationError | InvalidArgument):
        return EXIT_USAGE
    if isinstance(exc, Unauthenticated | PermissionDenied):
        return EXIT_AUTH
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, Unavailable | NotReady):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


# ---- arguments ----


def _meta(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def _non_negative(text: str) -> int:
    return 0 if text.strip() == "0" else _positive(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def _add_connection_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
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
        type=_seconds,
        default=default,
        help="deadline of each request other than transfers (default 30)",
    )
    group.add_argument(
        "--retries",
        metavar="N",
        type=_non_negative,
        default=DEFAULT_RETRIES if top else argparse.SUPPRESS,
        help=f"retries when the archive is unavailable (default {DEFAULT_RETRIES})",
    )


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
    _add_connection_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        help_text: str,
        run: Callable[[argparse.Namespace, ClientConfig], Awaitable[int]] | None,
        needs: str = "tenant",
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=SUBCOMMAND_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if run is not None:
            sub.set_defaults(run=run, needs=needs)
            _add_connection_options(sub, top=False)
        return sub

    def json_flag(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true", help="one JSON object per line")

    def trust_root_flag(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--trust-root",
            metavar="ROOT.pem",
            help="the provider's root certificate, obtained independently: seals must chain "
            "to it (default: trust the root shipped with the evidence)",
        )
        sub.add_argument(
            "--trust-tsa-root",
            metavar="TSA-ROOT.pem",
            help="the time-stamp authority's root certificate, obtained from it: time stamps "
            "must chain to it (default: trust the TSA root shipped with the evidence)",
        )

    put = command(commands, "put", "deposit files (directories are walked recursively)", _put)
    put.add_argument("paths", nargs="+", metavar="FILE|DIR")
    put.add_argument(
        "--meta",
        type=_meta,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="metadata for every document (repeatable)",
    )
    put.add_argument(
        "--class",
        dest="document_class",
        default="",
        metavar="CLASS",
        help="document class, e.g. invoice (drives retention)",
    )
    put.add_argument(
        "--media-type",
        default="",
        metavar="TYPE",
        help="declared media type (the archive also identifies formats itself)",
    )
    put.add_argument(
        "--concurrency",
        type=_positive,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"upload streams at once, each carrying many files (default {DEFAULT_CONCURRENCY})",
    )
    json_flag(put)

    get = command(commands, "get", "retrieve a document, verified against its SHA-256", _get)
    get.add_argument("document_id", metavar="ID")
    get.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="where to write it ('-' for stdout)"
    )
    json_flag(get)

    ls = command(commands, "ls", "list documents, newest first", _ls)
    ls.add_argument("--class", dest="document_class", default="", metavar="CLASS")
    ls.add_argument(
        "--meta",
        type=_meta,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only documents with this metadata (repeatable)",
    )
    ls.add_argument("--limit", type=_positive, default=None, metavar="N")
    json_flag(ls)

    info = command(commands, "info", "show a document's record", _info)
    info.add_argument("document_id", metavar="ID")
    json_flag(info)

    whoami = command(commands, "whoami", "show the tenant and token id of ARCHIVE_TOKEN", _whoami)
    json_flag(whoami)

    fetch_evidence = command(
        commands,
        "evidence",
        "save a deposit's evidence bundle (ZIP), checked offline first",
        _evidence,
    )
    fetch_evidence.add_argument("document_id", metavar="ID")
    fetch_evidence.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="where to write the ZIP"
    )
    trust_root_flag(fetch_evidence)
    json_flag(fetch_evidence)

    verify = command(
        commands,
        "verify",
        "check a file against its evidence bundle, offline (no server, no token)",
        None,
    )
    verify.set_defaults(local=_verify)
    verify.add_argument("file", metavar="FILE")
    verify.add_argument(
        "--evidence", required=True, metavar="BUNDLE.zip", help="the bundle `evidence` saved"
    )
    trust_root_flag(verify)
    verify.add_argument("--json", action="store_true", help="the report as one JSON object")

    checkpoint = command(
        commands,
        "checkpoint",
        "show or save the tenant's latest signed checkpoint, checked offline first",
        _checkpoint,
    )
    checkpoint.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="save checkpoint.txt, checkpoint.p7s, checkpoint.tsr and certs/ in DIR",
    )
    checkpoint.add_argument(
        "--size",
        type=_non_negative,
        default=0,
        metavar="N",
        help="the checkpoint of N leaves rather than the latest",
    )
    trust_root_flag(checkpoint)
    json_flag(checkpoint)

    extends = command(
        commands,
        "verify-extends",
        "check that the tenant's journal today extends a checkpoint kept earlier",
        _verify_extends,
    )
    extends.add_argument(
        "old_dir", metavar="OLD_DIR", help="a directory written by `checkpoint -o` (or a bundle)"
    )
    extends.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="once verified, save the latest checkpoint in DIR (for the next run)",
    )
    trust_root_flag(extends)
    json_flag(extends)

    audit = command(
        commands, "audit", "re-hash the tenant's content and check its journal now", _audit
    )
    json_flag(audit)

    tenant = command(commands, "tenant", "administer tenants (operator token)", None)
    tenant_commands = tenant.add_subparsers(dest="tenant_command", required=True, metavar="ACTION")
    create = command(
        tenant_commands,
        "create",
        "create a tenant and print its first token",
        _tenant_create,
        needs="operator",
    )
    create.add_argument("tenant", metavar="NAME")
    create.add_argument("--display-name", default="", metavar="TEXT")
    json_flag(create)

    token = command(commands, "token", "issue and revoke tenant tokens (operator token)", None)
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    issue = command(
        token_commands, "issue", "issue a new token and print it", _token_issue, needs="operator"
    )
    issue.add_argument("tenant", metavar="TENANT")
    issue.add_argument("--description", default="", metavar="TEXT")
    json_flag(issue)
    revoke = command(
        token_commands, "revoke", "revoke a token by its id", _token_revoke, needs="operator"
    )
    revoke.add_argument("tenant", metavar="TENANT")
    revoke.add_argument("token_id", metavar="TOKEN_ID")
    json_flag(revoke)
    return parser


# ---- entry point ----


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error argparse has already explained
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        if getattr(args, "local", None) is not None:
            return int(args.local(args))  # offline: no endpoint, no token
        # Local checks before any connection.
        if args.command == "put":
            args.files = collect_files(args.paths)
        elif args.command == "get" and args.output != "-":
            check_output(args.output)
        elif args.command == "evidence":
            if args.output == "-":
                raise UsageError("evidence needs a file to write the ZIP to, not '-'")
            check_output(args.output)
        if getattr(args, "trust_root", None):
            args.trusted_root_pem = read_trust_root(args.trust_root)
        if getattr(args, "trust_tsa_root", None):
            args.trusted_tsa_root_pem = read_trust_root(args.trust_tsa_root)
        if args.command == "verify-extends":
            args.old = read_checkpoint_dir(args.old_dir)
        config = _config(args)
        # Fail once, up front, rather than once per file.
        if args.needs == "operator":
            config.admin_token()
        else:
            config.tenant_token()
        # argparse's Namespace is untyped: every command's run returns its exit code.
        code: int = asyncio.run(args.run(args, config))
        return code
    except (UsageError, ArchiveError) as exc:
        _error(_describe(exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`archivectl ls | head`); don't let Python complain again at exit.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:
        _error(str(exc))
        return EXIT_FAILED


def _config(args: argparse.Namespace) -> ClientConfig:
    environ = dict(os.environ)
    if args.endpoint:
        environ[ENV_ENDPOINT] = args.endpoint
    overrides: dict[str, Any] = {"max_attempts": args.retries + 1}
    if args.timeout is not None:
        overrides["timeout"] = args.timeout
    return ClientConfig.from_env(environ, args.env_file, **overrides)


# ---- put ----


@dataclass(frozen=True)
class LocalFile:
    shown: str  # the path as given or walked: what the output names
    path: Path
    size: int


def collect_files(arguments: Sequence[str]) -> list[LocalFile]:
    """The files to deposit, in order: each argument, directories walked recursively (sorted,
    regular files only; symbolic links inside a directory are skipped, named ones followed).
    Anything missing or unreadable is a usage error, found before anything is sent."""
    files: list[LocalFile] = []
    for argument in arguments:
        path = Path(argument)
        try:
            info = path.stat()
        except FileNotFoundError:
            raise UsageError(f"{argument}: no such file or directory") from None
        except OSError as exc:
            raise UsageError(f"{argument}: {exc.strerror or exc}") from None
        if stat.S_ISDIR(info.st_mode):
            files.extend(_walk(argument))
        elif stat.S_ISREG(info.st_mode):
            files.append(LocalFile(argument, path, info.st_size))
        else:
            raise UsageError(f"{argument}: not a regular file or directory")
    return files


def _walk(top: str) -> Iterator[LocalFile]:
    def fail(error: OSError) -> None:
        raise UsageError(f"{error.filename}: {error.strerror or error}")

    for directory, subdirectories, names in os.walk(top, onerror=fail):
        subdirectories.sort()
        for name in sorted(names):
            shown = os.path.join(directory, name)
            try:
                info = os.lstat(shown)
            except OSError as exc:
                raise UsageError(f"{shown}: {exc.strerror or exc}") from None
            if stat.S_ISREG(info.st_mode):
                yield LocalFile(shown, Path(shown), info.st_size)


async def _put(args: argparse.Namespace, config: ClientConfig) -> int:
    files: list[LocalFile] = args.files
    metadata = dict(args.meta)
    stderr = sys.stderr
    progress = Progress(stderr, len(files), sum(f.size for f in files)) if _is_tty(stderr) else None
    failures: list[int] = []

    def emit(line: str, stream: TextIO) -> None:
        if progress is not None:
            progress.clear()
        print(line, file=stream, flush=True)
        if progress is not None:
            progress.draw()

    def report(item: LocalFile, receipt: Receipt | None, error: BaseException | None) -> None:
        if receipt is None:
            assert error is not None
            failures.append(exit_code_for(error))
            if progress is not None:
                progress.file_done(failed=True)
            if args.json:
                emit(_json({"file": item.shown, **_error_fields(error)}), sys.stdout)
            else:
                emit(f"archivectl: {item.shown}: {_describe(error)}", sys.stderr)
            return
        if progress is not None:
            progress.file_done(failed=False)
        if args.json:
            emit(_json({"file": item.shown, **receipt.to_dict()}), sys.stdout)
        else:
            emit(_receipt_line(item.shown, receipt), sys.stdout)

    # Documents go back to back on a few UploadMany streams (the archive commits them in
    # groups): far faster than a call per file, with the same per-document guarantees.
    items = (
        UploadItem(
            item.path,
            media_type=args.media_type,
            metadata=metadata,
            document_class=args.document_class,
        )
        for item in files
    )
    async with ArchiveClient(config) as client:
        refresher = asyncio.create_task(progress.refresh()) if progress is not None else None
        try:
            async for outcome in client.upload_many(
                items,
                streams=max(1, min(args.concurrency, len(files))),
                on_progress=progress.add_bytes if progress is not None else None,
            ):
                report(files[outcome.index], outcome.receipt, outcome.error)
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
            if progress is not None:
                progress.finish()
    if not failures:
        return EXIT_OK
    if len(failures) == len(files) and len(set(failures)) == 1:
        return failures[0]
    return EXIT_FAILED


def _receipt_line(shown: str, receipt: Receipt) -> str:
    note = "  (already deposited: original receipt)" if receipt.replayed else ""
    return f"{shown}  {receipt.document_id}  sha256:{receipt.sha256}  {receipt.size} bytes{note}"


class Progress:
    """One status line on a terminal: files done/total, bytes sent, rate, failures."""

    WIDTH: Final = 24

    def __init__(
        self,
        stream: TextIO,
        total_files: int,
        total_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.files_done = 0
        self.failed = 0
        self.bytes_sent = 0
        self._clock = clock
        self._started = clock()

    def add_bytes(self, count: int) -> None:
        self.bytes_sent += count

    def file_done(self, *, failed: bool) -> None:
        self.files_done += 1
        self.failed += failed

    def render(self) -> str:
        fraction = self.bytes_sent / self.total_bytes if self.total_bytes else 1.0
        if self.files_done == self.total_files:
            fraction = 1.0
        filled = round(max(0.0, min(1.0, fraction)) * self.WIDTH)
        elapsed = max(self._clock() - self._started, 1e-6)
        line = (
            f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] "
            f"{self.files_done}/{self.total_files} files  "
            f"{_size(self.bytes_sent)}/{_size(self.total_bytes)}  "
            f"{_size(self.bytes_sent / elapsed)}/s"
        )
        return line + (f"  {self.failed} failed" if self.failed else "")

    def draw(self) -> None:
        self.stream.write("\r" + self.render() + "\x1b[K")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        self.draw()
        self.stream.write("\n")
        self.stream.flush()

    async def refresh(self, every: float = 0.2) -> None:
        while True:
            self.draw()
            await asyncio.sleep(every)


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


# ---- read side ----


def check_output(output: str) -> None:
    target = Path(output)
    if target.is_dir():
        raise UsageError(f"{output}: is a directory; give the file to write")
    if not target.parent.is_dir():
        raise UsageError(f"{output}: directory {target.parent} does not exist")


async def _get(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        if args.output == "-":
            return await _get_to_stdout(client, args.document_id)
        info = await client.download(args.document_id, Path(args.output))
    if args.json:
        _print(_json({"file": args.output, **info.to_dict()}))
    else:
        _print(f"{args.output}  {info.document_id}  sha256:{info.sha256}  {info.size} bytes")
    return EXIT_OK


async def _get_to_stdout(client: ArchiveClient, document_id: str) -> int:
    out = getattr(sys.stdout, "buffer", None)
    if out is None:
        raise UsageError("stdout does not accept bytes here; use -o PATH")
    try:
        async with client.open_download(document_id) as download:
            async for chunk in download:
                out.write(chunk)
    except IntegrityError as exc:
        out.flush()
        # Bytes already went out; a file would have been withheld, a pipe cannot be.
        _error(f"{_describe(exc)}; the bytes written to stdout must not be trusted")
        return EXIT_INTEGRITY
    out.flush()
    return EXIT_OK


async def _ls(args: argparse.Namespace, config: ClientConfig) -> int:
    page_size = min(args.limit or 100, 1000)
    shown = 0
    async with ArchiveClient(config) as client:
        async for info in client.list_documents(
            document_class=args.document_class, metadata=dict(args.meta), page_size=page_size
        ):
            if args.limit is not None and shown >= args.limit:
                break
            _print(_json(info.to_dict()) if args.json else _listing_line(info))
            shown += 1
    return EXIT_OK


def _listing_line(info: DocumentInfo) -> str:
    received = info.received_at.strftime("%Y-%m-%dT%H:%M:%SZ") if info.received_at else "-"
    return (
        f"{received}  {info.document_id}  {info.size:>12}  "
        f"{info.document_class or '-'}  {info.file_name}"
    )


async def _info(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        info = await client.get_document(args.document_id)
    if args.json:
        _print(_json(info.to_dict()))
        return EXIT_OK
    fields = info.to_dict()
    metadata = fields.pop("metadata")
    provenance = fields.pop("scan_provenance")
    for key, value in fields.items():
        _print(f"{key + ':':<16}{'' if value is None else value}")
    for key, value in sorted(metadata.items()):
        _print(f"{'metadata.' + key + ':':<16}{value}")
    for key, value in (provenance or {}).items():
        _print(f"{'scan.' + key + ':':<16}{'' if value is None else value}")
    return EXIT_OK


async def _whoami(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        identity = await client.whoami()
    if args.json:
        _print(_json(identity.to_dict()))
    else:
        _print(f"tenant:   {identity.tenant}\ntoken_id: {identity.token_id}")
    return EXIT_OK


# ---- evidence, checkpoints, audits ----

_STATUS_LABELS: Final = {
    evidence.OK: "ok",
    evidence.FAILED: "FAILED",
    evidence.SKIPPED: "skipped",
    evidence.NOT_RUN: "not run",
}
_CHECKPOINT_FILES: Final = (
    evidence.CHECKPOINT,
    evidence.SEAL,
    evidence.TIMESTAMP,
    evidence.SEAL_CHAIN,
    evidence.TSA_CHAIN,
    evidence.TSA_ROOT,
    evidence.ROOT,
)


def _read_input(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file ({what})") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, expected {what}") from None
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None


def read_trust_root(path: str) -> bytes:
    """The --trust-root file, checked to hold PEM certificates (a usage error otherwise)."""
    pem = _read_input(path, "a PEM root certificate")
    try:
        evidence.load_trusted_roots(pem)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return pem


@dataclass(frozen=True)
class CheckpointFiles:
    """A checkpoint kept on disk, as `checkpoint -o DIR` writes it (an extracted evidence
    bundle has the same layout)."""

    directory: Path
    checkpoint: bytes
    seal: bytes | None
    timestamp_response: bytes | None
    tsa_chain_pem: bytes | None
    root_pem: bytes | None
    tsa_root_pem: bytes | None

    def names(self) -> dict[str, str]:
        """How its files are called in reasons: by their path."""
        return {
            "checkpoint": str(self.directory / evidence.CHECKPOINT),
            "seal": str(self.directory / evidence.SEAL),
            "timestamp": str(self.directory / evidence.TIMESTAMP),
            "root": str(self.directory / evidence.ROOT),
            "tsa_chain": str(self.directory / evidence.TSA_CHAIN),
            "tsa_root": str(self.directory / evidence.TSA_ROOT),
        }


def read_checkpoint_dir(directory: str) -> CheckpointFiles:
    base = Path(directory)
    if not base.is_dir():
        raise UsageError(
            f"{directory}: not a directory; keep a checkpoint with `archivectl checkpoint -o DIR`"
        )

    def optional(name: str) -> bytes | None:
        try:
            return (base / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsageError(f"{base / name}: {exc.strerror or exc}") from None

    text = optional(evidence.CHECKPOINT)
    if text is None:
        raise UsageError(
            f"{base / evidence.CHECKPOINT}: no such file; keep a checkpoint with "
            "`archivectl checkpoint -o DIR`"
        )
    return CheckpointFiles(
        base,
        text,
        optional(evidence.SEAL),
        optional(evidence.TIMESTAMP),
        optional(evidence.TSA_CHAIN),
        optional(evidence.ROOT),
        optional(evidence.TSA_ROOT),
    )


def save_checkpoint(directory: Path, signed: SignedCheckpoint) -> list[Path]:
    """Write a signed checkpoint as checkpoint.txt, .p7s, .tsr and certs/*.pem in `directory`
    (the layout of an evidence bundle, which `verify-extends` reads back)."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory}: exists and is not a directory")
    (directory / "certs").mkdir(parents=True, exist_ok=True)
    contents = (
        signed.checkpoint,
        signed.seal,
        signed.timestamp_response,
        signed.seal_chain_pem.encode(),
        signed.tsa_chain_pem.encode(),
        signed.tsa_root_pem.encode(),
        signed.root_pem.encode(),
    )
    written: list[Path] = []
    for name, data in zip(_CHECKPOINT_FILES, contents, strict=True):
        atomic_write(directory / name, data)
        written.append(directory / name)
    return written


def _check_lines(checks: Sequence[Check], indent: str = "") -> list[str]:
    width = max((len(check.name) for check in checks), default=0) + 2
    return [
        f"{indent}{_STATUS_LABELS.get(check.status, check.status):<8}"
        f"{check.name:<{width}}{check.reason}"
        for check in checks
    ]


def _fact_lines(facts: Sequence[tuple[str, object]]) -> list[str]:
    return [f"{label + ':':<13}{value}" for label, value in facts if value is not None]


def _stamp(report: EvidenceReport | CheckpointReport) -> str | None:
    if report.gen_time is None:
        return None
    return f"{_iso(report.gen_time)} by {report.tsa_subject}"


def _root_fact(report: EvidenceReport | CheckpointReport) -> str | None:
    if report.root_subject is None:
        return None
    return f"{report.root_subject} (SHA-256 fingerprint {report.root_sha256})"


def _tsa_root_fact(report: EvidenceReport | CheckpointReport) -> str | None:
    if report.tsa_root_subject is None:
        return None
    return f"{report.tsa_root_subject} (SHA-256 fingerprint {report.tsa_root_sha256})"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def evidence_lines(report: EvidenceReport) -> list[str]:
    """A verification report for people: each check, then what the bundle states."""
    leaf = (
        f"{report.leaf_index} of a tree of {report.tree_size} leaves"
        if report.leaf_index is not None and report.tree_size is not None
        else None
    )
    return _check_lines(report.checks) + _fact_lines(
        [
            ("document_id", report.document_id),
            ("sha256", report.sha256),
            ("size", f"{report.size} bytes" if report.size is not None else None),
            ("leaf", leaf),
            ("log", report.origin),
            ("root_hash", report.root_hash),
            ("time stamp", _stamp(report)),
            ("sealed by", report.seal_subject),
            ("root", _root_fact(report)),
            ("tsa root", _tsa_root_fact(report)),
            ("trust", report.trust),
            ("tsa trust", report.tsa_trust),
        ]
    )


def _failure_text(check: Check | None) -> str:
    return f"{check.name}: {check.reason}" if check is not None else "no check passed"


def _verify(args: argparse.Namespace) -> int:
    """`verify FILE --evidence BUNDLE`: offline, exit 0 when every check passes, 1 otherwise."""
    file = Path(args.file)
    if not file.exists():
        raise UsageError(f"{args.file}: no such file")
    if not file.is_file():
        raise UsageError(f"{args.file}: not a regular file")
    bundle_zip = _read_input(args.evidence, "the evidence bundle")
    trusted = read_trust_root(args.trust_root) if args.trust_root else None
    trusted_tsa = read_trust_root(args.trust_tsa_root) if args.trust_tsa_root else None
    report = evidence.verify_evidence(
        file, bundle_zip, trusted_root_pem=trusted, trusted_tsa_root_pem=trusted_tsa
    )
    if args.json:
        _print(_json({"file": args.file, "evidence": args.evidence, **report.to_dict()}))
    else:
        for line in evidence_lines(report):
            _print(line)
    if report.ok:
        if not args.json:
            _print(
                f"verified: {args.file} is the document deposited, in the journal whose "
                "sealed and time-stamped checkpoint the bundle holds"
            )
        return EXIT_OK
    _error(f"{args.file}: verification FAILED: {_failure_text(report.first_failure)}")
    return EXIT_FAILED


async def _evidence(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        bundle_zip = await client.get_evidence(args.document_id)
    try:  # the archive names documents by their canonical UUID text
        expected_id = str(uuid.UUID(args.document_id))
    except ValueError:
        expected_id = args.document_id
    # Checked before it is written, so a bad bundle is reported at once, not when it is needed.
    report = evidence.verify_evidence(
        None,
        bundle_zip,
        trusted_root_pem=getattr(args, "trusted_root_pem", None),
        trusted_tsa_root_pem=getattr(args, "trusted_tsa_root_pem", None),
        document_id=expected_id,
    )
    target = Path(args.output)
    atomic_write(target, bundle_zip)
    if args.json:
        _print(_json({"file": args.output, "verified": report.ok, **report.to_dict()}))
    else:
        stamp = f"  time-stamped {_iso(report.gen_time)}" if report.gen_time else ""
        _print(
            f"{args.output}  {report.document_id or expected_id}  leaf {report.leaf_index} of "
            f"{report.tree_size}{stamp}"
        )
    if not report.ok:
        # Saved anyway: it is what the archive handed out, and worth a report.
        _error(
            f"warning: {args.output}: the evidence received does not verify: "
            f"{_failure_text(report.first_failure)}"
        )
        return EXIT_INTEGRITY
    if not args.json:
        _error(
            f"bundle checked ({report.trust}); check the document itself with "
            f"`archivectl verify FILE --evidence {args.output}`"
        )
    return EXIT_OK


def _served_names(what: str) -> dict[str, str]:
    """How a checkpoint received from the archive is called in reasons."""
    return {
        "checkpoint": what,
        "seal": "its seal",
        "timestamp": "its time stamp",
        "root": "the root served with it",
        "tsa_chain": "the TSA chain served with it",
        "tsa_root": "the TSA root served with it",
    }


def _verify_served(
    signed: SignedCheckpoint,
    trusted_root_pem: bytes | None,
    trusted_root_label: str = "your pinned root",
    what: str = "the checkpoint",
    trusted_tsa_root_pem: bytes | None = None,
) -> CheckpointReport:
    return evidence.verify_signed_checkpoint(
        signed.checkpoint,
        signed.seal or None,
        signed.timestamp_response or None,
        tsa_chain_pem=signed.tsa_chain_pem.encode(),
        root_pem=signed.root_pem.encode(),
        tsa_root_pem=signed.tsa_root_pem.encode(),
        trusted_root_pem=trusted_root_pem,
        trusted_root_label=trusted_root_label,
        trusted_tsa_root_pem=trusted_tsa_root_pem,
        names=_served_names(what),
    )


def checkpoint_lines(report: CheckpointReport, indent: str = "") -> list[str]:
    return _check_lines(report.checks, indent) + [
        indent + line
        for line in _fact_lines(
            [
                ("log", report.origin),
                ("tree_size", report.tree_size),
                ("root_hash", report.root_hash),
                ("time stamp", _stamp(report)),
                ("sealed by", report.seal_subject),
                ("root", _root_fact(report)),
                ("tsa root", _tsa_root_fact(report)),
                ("trust", report.trust),
                ("tsa trust", report.tsa_trust),
            ]
        )
    ]


async def _checkpoint(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        signed = await client.get_checkpoint(args.size)
    report = _verify_served(
        signed,
        getattr(args, "trusted_root_pem", None),
        trusted_tsa_root_pem=getattr(args, "trusted_tsa_root_pem", None),
    )
    written = save_checkpoint(Path(args.output), signed) if args.output else []
    if args.json:
        fields = report.to_dict()
        fields["checkpoint"] = signed.checkpoint.decode("utf-8", "replace")
        fields["files"] = [str(path) for path in written]
        _print(_json(fields))
    else:
        if not args.output:
            sys.stdout.write(signed.checkpoint.decode("utf-8", "replace"))
        for line in checkpoint_lines(report):
            _print(line)
        if written:
            _print(f"{'saved:':<13}{', '.join(str(path) for path in written)}")
    if not report.ok:
        _error(
            "warning: the checkpoint received does not verify: "
            f"{_failure_text(report.first_failure)}"
        )
        return EXIT_INTEGRITY
    return EXIT_OK


async def _consistency(
    client: ArchiveClient,
    old: CheckpointReport,
    new: CheckpointReport,
    old_text: bytes,
    new_text: bytes,
) -> Check:
    if old.checkpoint is None or new.checkpoint is None:
        return Check(
            evidence.CHECK_CONSISTENCY, evidence.NOT_RUN, "not checked: a checkpoint is malformed"
        )
    old_size, new_size = old.checkpoint.size, new.checkpoint.size
    hashes: list[bytes] = []
    # Nothing to fetch when the answer needs no proof (same size, empty, shrunk, other log).
    if 0 < old_size < new_size and old.checkpoint.origin == new.checkpoint.origin:
        try:
            proof = await client.get_consistency_proof(old_size, new_size)
        except InvalidArgument as exc:
            return Check(
                evidence.CHECK_CONSISTENCY,
                evidence.FAILED,
                f"the archive has no checkpoint of {old_size} leaves to prove consistency "
                f"from ({exc}): the kept checkpoint is not one of this log's",
            )
        hashes = list(proof.hashes)
    return evidence.verify_consistency_between(old_text, new_text, hashes)


async def _verify_extends(args: argparse.Namespace, config: ClientConfig) -> int:
    old: CheckpointFiles = args.old
    async with ArchiveClient(config) as client:
        latest = await client.get_checkpoint()
        # The root to hold both checkpoints to: the one pinned, else the one kept with the old
        # checkpoint (the latest must chain to the root trusted back then), else the served one.
        pinned: bytes | None = getattr(args, "trusted_root_pem", None)
        if pinned is not None:
            root, label = pinned, "your pinned root"
        elif old.root_pem is not None:
            root, label = old.root_pem, f"the root kept in {old.directory / evidence.ROOT}"
        else:
            root, label = latest.root_pem.encode(), "the root served with the latest checkpoint"
        # Time stamps: each against the TSA root kept or served with it, unless one is pinned
        # (the provider may change its time-stamp authority between the two).
        pinned_tsa: bytes | None = getattr(args, "trusted_tsa_root_pem", None)
        old_report = evidence.verify_signed_checkpoint(
            old.checkpoint,
            old.seal,
            old.timestamp_response,
            tsa_chain_pem=old.tsa_chain_pem,
            root_pem=old.root_pem,
            tsa_root_pem=old.tsa_root_pem,
            trusted_root_pem=root,
            trusted_root_label=label,
            trusted_tsa_root_pem=pinned_tsa,
            names=old.names(),
        )
        new_report = _verify_served(latest, root, label, "the latest checkpoint", pinned_tsa)
        consistency = await _consistency(
            client, old_report, new_report, old.checkpoint, latest.checkpoint
        )
    ok = old_report.ok and new_report.ok and consistency.ok
    written = save_checkpoint(Path(args.output), latest) if ok and args.output else []
    if args.json:
        _print(
            _json(
                {
                    "ok": ok,
                    "old": {"directory": str(old.directory), **old_report.to_dict()},
                    "new": new_report.to_dict(),
                    "consistency": consistency.to_dict(),
                    "files": [str(path) for path in written],
                }
            )
        )
    else:
        _print(f"kept checkpoint ({old.directory}):")
        for line in checkpoint_lines(old_report, "  "):
            _print(line)
        _print("latest checkpoint:")
        for line in checkpoint_lines(new_report, "  "):
            _print(line)
        for line in _check_lines([consistency]):
            _print(line)
        if written:
            _print(f"{'saved:':<13}{', '.join(str(path) for path in written)}")
    if ok:
        if not args.json:
            _print(
                f"verified: the journal of {new_report.tree_size} leaves extends the kept "
                f"checkpoint of {old_report.tree_size} leaves"
            )
        return EXIT_OK
    failure = next(
        check for check in (*old_report.checks, *new_report.checks, consistency) if not check.ok
    )
    where = (
        "kept checkpoint"
        if failure in old_report.checks
        else "latest checkpoint"
        if failure in new_report.checks
        else "journal"
    )
    _error(f"verification FAILED: {where}: {_failure_text(failure)}")
    return EXIT_FAILED


def audit_lines(report: IntegrityAuditReport) -> list[str]:
    lines = _fact_lines(
        [
            ("tenant", report.tenant),
            ("audit_id", report.audit_id),
            ("trigger", report.trigger),
            ("started_at", _iso(report.started_at) if report.started_at else None),
            ("completed_at", _iso(report.completed_at) if report.completed_at else None),
            (
                "documents",
                f"{report.documents_checked} checked, {report.bytes_rehashed} bytes re-hashed",
            ),
            ("events", f"{report.events_checked} checked"),
            ("log", f"{report.tree_size} leaves, root {report.root_hash}"),
            ("result", "no failure" if report.ok else f"{report.failure_count} failure(s)"),
        ]
    )
    for failure in report.failures:
        where = f" document {failure.document_id}" if failure.document_id else ""
        if failure.document_id or failure.leaf_index:
            where += f" (leaf {failure.leaf_index})"
        lines.append(f"FAILED  {failure.kind}{where}: {failure.description}")
    if report.failures_not_listed:
        lines.append(f"... and {report.failures_not_listed} more failure(s), not listed")
    return lines


async def _audit(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        report = await client.run_integrity_audit()
    if args.json:
        _print(_json(report.to_dict()))
    else:
        for line in audit_lines(report):
            _print(line)
    if report.ok:
        return EXIT_OK
    _error(f"the integrity audit found {report.failure_count} failure(s)")
    return EXIT_FAILED


# ---- administration ----


async def _tenant_create(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        issued = await client.create_tenant(args.tenant, args.display_name)
    _print_token(issued, as_json=args.json)
    return EXIT_OK


async def _token_issue(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        issued = await client.issue_token(args.tenant, args.description)
    _print_token(issued, as_json=args.json)
    return EXIT_OK


async def _token_revoke(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        await client.revoke_token(args.tenant, args.token_id)
    if args.json:
        _print(_json({"tenant": args.tenant, "token_id": args.token_id, "revoked": True}))
    else:
        _print(f"revoked token {args.token_id} of tenant {args.tenant}")
    return EXIT_OK


def _print_token(issued: IssuedToken, *, as_json: bool) -> None:
    # Printing the secret is the point of these commands: it is shown once, never again.
    if as_json:
        _print(_json(issued.to_dict()))
        return
    _print(f"tenant:   {issued.tenant}\ntoken_id: {issued.token_id}\ntoken:    {issued.token}")
    _error("the token is shown only once: store it now (e.g. as ARCHIVE_TOKEN)")


# ---- output ----


def _print(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def _error(message: str) -> None:
    print(f"archivectl: {message}", file=sys.stderr, flush=True)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ArchiveError):
        if exc.reason and exc.code is not None and exc.reason != exc.code.name:
            message += f" ({exc.reason})"
        if exc.code is not None and exc.correlation_id and exit_code_for(exc) == EXIT_FAILED:
            # Worth quoting when reporting an unexpected failure to the operators.
            message += f" [correlation id {exc.correlation_id}]"
    return message


def _error_fields(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ArchiveError):
        code = (
            exc.code.name
            if exc.code is not None
            else ("INTEGRITY" if isinstance(exc, IntegrityError) else "CLIENT")
        )
        fields: dict[str, Any] = {"error": str(exc), "code": code, "reason": exc.reason}
        if exc.correlation_id:
            fields["correlation_id"] = exc.correlation_id
        if exc.idempotency_key:
            fields["idempotency_key"] = exc.idempotency_key
        return fields
    return {"error": _describe(exc), "code": "IO_ERROR", "reason": type(exc).__name__}


if __name__ == "__main__":
    sys.exit(main())
