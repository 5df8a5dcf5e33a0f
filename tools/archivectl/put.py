"""archivectl put: deposit files and directories on a few UploadMany streams, with a
progress bar on a terminal. A re-run of the same command deposits nothing twice: each file's
idempotency key comes from its path relative to the argument and its SHA-256, and the archive
is asked which keys it already holds before anything is sent (`--new` opts out)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import stat
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

from archive.client import ArchiveClient, ArchiveError, ClientConfig, Receipt, UploadItem
from tools.archivectl.args import Commands, add_command, json_flag, meta_option, positive
from tools.archivectl.output import (
    EXIT_FAILED,
    EXIT_OK,
    Progress,
    UsageError,
    describe,
    error_fields,
    exit_code_for,
    is_tty,
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
    put.add_argument(
        "--new",
        action="store_true",
        help="deposit every file as a new document, even one this command already archived",
    )
    json_flag(put)



def _collect(args: argparse.Namespace) -> None:
    args.files = collect_files(args.paths)


@dataclass(frozen=True)
class LocalFile:
    shown: str  # the path as given or walked: what the output names
    path: Path
    size: int
    # The path relative to the argument it came from (a file argument: its name): with the
    # content's SHA-256, what makes a re-run of the same command find its earlier deposits.
    relative: str


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
            files.append(LocalFile(argument, path, info.st_size, path.name))
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
                yield LocalFile(shown, Path(shown), info.st_size, os.path.relpath(shown, top))


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

    async with ArchiveClient(config) as client:
        refresher = asyncio.create_task(progress.refresh()) if progress is not None else None
        try:
            # By default each file's key comes from its relative path and content, and the
            # archive is asked first which keys it already holds: a re-run (after a crash or
            # Ctrl-C) sends only what is new and deposits nothing twice.
            keys: list[FileKey | None] = [None] * len(files)
            to_send = list(range(len(files)))
            if not args.new:
                known = await _keys_of(files)
                keys = list(known)
                try:
                    answers = await client.find_deposits([(k.key, k.sha256) for k in known])
                except ArchiveError as error:
                    # Nothing was sent: every file fails for this one reason (a refused
                    # token, an archive out of reach), each named as an upload would be.
                    for item in files:
                        report(item, None, error)
                    answers = []
                to_send = []
                for index, answer in enumerate(answers):
                    if answer is None:
                        to_send.append(index)
                    elif isinstance(answer, Receipt):
                        report(files[index], answer, None)
                    else:
                        report(files[index], None, answer)
            # Documents go back to back on a few UploadMany streams (the archive commits them
            # in groups): far faster than a call per file, with the same guarantees.
            items = [
                UploadItem(
                    files[index].path,
                    media_type=args.media_type,
                    metadata=metadata,
                    document_class=args.document_class,
                    idempotency_key=_key_text(keys[index]),
                )
                for index in to_send
            ]
            async for outcome in client.upload_many(
                items,
                streams=max(1, min(args.concurrency, len(items))),
                on_progress=progress.add_bytes if progress is not None else None,
            ):
                report(files[to_send[outcome.index]], outcome.receipt, outcome.error)
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


@dataclass(frozen=True)
class FileKey:
    key: str
    sha256: str


async def _keys_of(files: Sequence[LocalFile]) -> list[FileKey]:
    """Hashed a few files at a time in threads (hashlib releases the GIL on large reads)."""
    gate = asyncio.Semaphore(8)

    async def one(item: LocalFile) -> FileKey:
        async with gate:
            sha256 = await asyncio.to_thread(_sha256_of, item.path)
        return FileKey(put_key(item.relative, sha256), sha256)

    return list(await asyncio.gather(*(one(item) for item in files)))


def _key_text(key: FileKey | None) -> str | None:
    return key.key if key is not None else None


def put_key(relative: str, sha256: str) -> str:
    """The idempotency key of a file: printable ASCII of fixed length whatever the path
    (which may hold spaces or any script), so it always fits the archive's key rules."""
    named = hashlib.sha256(f"{relative}\x00{sha256}".encode()).hexdigest()
    return f"put:v1:{named}"


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while chunk := file.read(1024 * 1024):
                digest.update(chunk)
    except OSError as exc:  # gone or unreadable since it was listed: nothing sent yet
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _receipt_line(shown: str, receipt: Receipt) -> str:
    note = "  (already archived: original receipt)" if receipt.replayed else ""
    return f"{shown}  {receipt.document_id}  sha256:{receipt.sha256}  {receipt.size} bytes{note}"


