"""archivectl's commands on the tenant's journal: `checkpoint` shows or keeps its latest
signed checkpoint, `verify-extends` checks that today's journal extends one kept earlier (a
consistency proof between the two)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from archive import verify as evidence
from archive.client import ArchiveClient, ClientConfig, InvalidArgument
from archive.client.models import SignedCheckpoint
from archive.files import atomic_write
from archive.verify import Check, CheckpointReport, layout
from tools.archivectl.args import Commands, add_command, json_flag, non_negative
from tools.archivectl.evidence import read_trust_flags, trust_flags
from tools.archivectl.output import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    UsageError,
    check_lines,
    fact_lines,
    failure_text,
    print_error,
    print_line,
    root_fact,
    stamp,
    to_json,
    tsa_root_fact,
)


def register(commands: Commands) -> None:
    checkpoint = add_command(
        commands,
        "checkpoint",
        "show or save the tenant's latest signed checkpoint, checked offline first",
        _checkpoint,
        prepare=read_trust_flags,
    )
    checkpoint.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="save checkpoint.txt, checkpoint.p7s, checkpoint.tsr and certs/ in DIR",
    )
    checkpoint.add_argument(
        "--size",
        type=non_negative,
        default=0,
        metavar="N",
        help="the checkpoint of N leaves rather than the latest",
    )
    trust_flags(checkpoint)
    json_flag(checkpoint)

    extends = add_command(
        commands,
        "verify-extends",
        "check that the tenant's journal today extends a checkpoint kept earlier",
        _verify_extends,
        prepare=_prepare_extends,
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
    trust_flags(extends)
    json_flag(extends)


def _prepare_extends(args: argparse.Namespace) -> None:
    read_trust_flags(args)
    args.old = read_checkpoint_dir(args.old_dir)


# ---- checkpoints kept on disk ----


_CHECKPOINT_FILES: Final = (
    layout.CHECKPOINT,
    layout.SEAL,
    layout.TIMESTAMP,
    layout.SEAL_CHAIN,
    layout.TSA_CHAIN,
    layout.TSA_ROOT,
    layout.ROOT,
)


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
            "checkpoint": str(self.directory / layout.CHECKPOINT),
            "seal": str(self.directory / layout.SEAL),
            "timestamp": str(self.directory / layout.TIMESTAMP),
            "root": str(self.directory / layout.ROOT),
            "tsa_chain": str(self.directory / layout.TSA_CHAIN),
            "tsa_root": str(self.directory / layout.TSA_ROOT),
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

    text = optional(layout.CHECKPOINT)
    if text is None:
        raise UsageError(
            f"{base / layout.CHECKPOINT}: no such file; keep a checkpoint with "
            "`archivectl checkpoint -o DIR`"
        )
    return CheckpointFiles(
        base,
        text,
        optional(layout.SEAL),
        optional(layout.TIMESTAMP),
        optional(layout.TSA_CHAIN),
        optional(layout.ROOT),
        optional(layout.TSA_ROOT),
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


# ---- checkpoint and verify-extends ----


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
    return check_lines(report.checks, indent) + [
        indent + line
        for line in fact_lines(
            [
                ("log", report.origin),
                ("tree_size", report.tree_size),
                ("root_hash", report.root_hash),
                ("time stamp", stamp(report)),
                ("sealed by", report.seal_subject),
                ("root", root_fact(report)),
                ("tsa root", tsa_root_fact(report)),
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
        args.trusted_root_pem,
        trusted_tsa_root_pem=args.trusted_tsa_root_pem,
    )
    written = save_checkpoint(Path(args.output), signed) if args.output else []
    if args.json:
        fields = report.to_dict()
        fields["checkpoint"] = signed.checkpoint.decode("utf-8", "replace")
        fields["files"] = [str(path) for path in written]
        print_line(to_json(fields))
    else:
        if not args.output:
            sys.stdout.write(signed.checkpoint.decode("utf-8", "replace"))
        for line in checkpoint_lines(report):
            print_line(line)
        if written:
            print_line(f"{'saved:':<13}{', '.join(str(path) for path in written)}")
    if not report.ok:
        print_error(
            "warning: the checkpoint received does not verify: "
            f"{failure_text(report.first_failure)}"
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
        pinned: bytes | None = args.trusted_root_pem
        if pinned is not None:
            root, label = pinned, "your pinned root"
        elif old.root_pem is not None:
            root, label = old.root_pem, f"the root kept in {old.directory / layout.ROOT}"
        else:
            root, label = latest.root_pem.encode(), "the root served with the latest checkpoint"
        # Time stamps: each against the TSA root kept or served with it, unless one is pinned
        # (the provider may change its time-stamp authority between the two).
        pinned_tsa: bytes | None = args.trusted_tsa_root_pem
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
        print_line(
            to_json(
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
        print_line(f"kept checkpoint ({old.directory}):")
        for line in checkpoint_lines(old_report, "  "):
            print_line(line)
        print_line("latest checkpoint:")
        for line in checkpoint_lines(new_report, "  "):
            print_line(line)
        for line in check_lines([consistency]):
            print_line(line)
        if written:
            print_line(f"{'saved:':<13}{', '.join(str(path) for path in written)}")
    if ok:
        if not args.json:
            print_line(
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
    print_error(f"verification FAILED: {where}: {failure_text(failure)}")
    return EXIT_FAILED
