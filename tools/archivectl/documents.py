"""archivectl's read commands: get (verified against its SHA-256), ls, info, whoami. Deposits
are in put.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from archive.client import (
    ArchiveClient,
    ClientConfig,
    DocumentInfo,
    IntegrityError,
)
from tools.archivectl.args import Commands, add_command, json_flag, meta_option, positive
from tools.archivectl.output import (
    EXIT_INTEGRITY,
    EXIT_OK,
    UsageError,
    describe,
    print_error,
    print_line,
    to_json,
)


def register(commands: Commands) -> None:
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


def _check_get_output(args: argparse.Namespace) -> None:
    if args.output != "-":
        check_output(args.output)


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
        print_line(
            f"tenant:   {identity.tenant}\ntoken_id: {identity.token_id}\n"
            f"roles:    {', '.join(identity.roles)}"
        )
    return EXIT_OK
