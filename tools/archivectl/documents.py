"""archivectl's deposit and read commands: put (files and directories, on a few
UploadMany streams, with a progress bar on a terminal), get, ls, info, whoami."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from archive.client import (
    ArchiveClient,
    ClientConfig,
    DocumentInfo,
    IntegrityError,
    Receipt,
    UploadItem,
)
from tools.archivectl.args import Commands, add_command, json_flag, meta_option, positive
from tools.archivectl.output import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    Progress,
    UsageError,
    describe,
    error_fields,
    exit_code_for,
    is_tty,
    print_error,
    print_line,
    to_json,
)

DEFAULT_CONCURRENCY: Final = 4


def register(commands: Commands) -> None:
    put = add_command(
        commands,
        "put",
        "deposit files (directories are walked recursively)",
        _put,
        prepare=_collect,
    )
    put.add_argument("paths", nargs="+", metavar="FILE|DIR")
    meta_option(put, "metadata for every document (repeatable)")
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
        type=positive,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"upload streams at once, each carrying many files (default {DEFAULT_CONCURRENCY})",
    )
    json_flag(put)

    get = add_command(
        commands,
        "get",
        "retrieve a document, verified against its SHA-256",
        _get,
        prepare=_check_get_output,
    )
    get.add_argument("document_id", metavar="ID")
    get.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="where to write it ('-' for stdout)"
    )
    json_flag(get)

    ls = add_command(commands, "ls", "list documents, newest first", _ls)
    ls.add_argument("--class", dest="document_class", default="", metavar="CLASS")
    meta_option(ls, "only documents with this metadata (repeatable)")
    ls.add_argument("--limit", type=positive, default=None, metavar="N")
    json_flag(ls)

    info = add_command(commands, "info", "show a document's record", _info)
    info.add_argument("document_id", metavar="ID")
    json_flag(info)

    whoami = add_command(
        commands, "whoami", "show the tenant and token id of ARCHIVE_TOKEN", _whoami
    )
    json_flag(whoami)


def _collect(args: argparse.Namespace) -> None:
    args.files = collect_files(args.paths)


def _check_get_output(args: argparse.Namespace) -> None:
    if args.output != "-":
        check_output(args.output)


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
    progress = Progress(stderr, len(files), sum(f.size for f in files)) if is_tty(stderr) else None
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
                emit(to_json({"file": item.shown, **error_fields(error)}), sys.stdout)
            else:
                emit(f"archivectl: {item.shown}: {describe(error)}", sys.stderr)
            return
        if progress is not None:
            progress.file_done(failed=False)
        if args.json:
            emit(to_json({"file": item.shown, **receipt.to_dict()}), sys.stdout)
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


# ---- the read side ----


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
        print_line(to_json({"file": args.output, **info.to_dict()}))
    else:
        print_line(f"{args.output}  {info.document_id}  sha256:{info.sha256}  {info.size} bytes")
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
        print_error(f"{describe(exc)}; the bytes written to stdout must not be trusted")
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
            print_line(to_json(info.to_dict()) if args.json else _listing_line(info))
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
        print_line(to_json(info.to_dict()))
        return EXIT_OK
    fields = info.to_dict()
    metadata = fields.pop("metadata")
    provenance = fields.pop("scan_provenance")
    for key, value in fields.items():
        print_line(f"{key + ':':<16}{'' if value is None else value}")
    for key, value in sorted(metadata.items()):
        print_line(f"{'metadata.' + key + ':':<16}{value}")
    for key, value in (provenance or {}).items():
        print_line(f"{'scan.' + key + ':':<16}{'' if value is None else value}")
    return EXIT_OK


async def _whoami(args: argparse.Namespace, config: ClientConfig) -> int:
    async with ArchiveClient(config) as client:
        identity = await client.whoami()
    if args.json:
        print_line(to_json(identity.to_dict()))
    else:
        print_line(f"tenant:   {identity.tenant}\ntoken_id: {identity.token_id}")
    return EXIT_OK
