"""archivectl's evidence commands: `evidence` saves a deposit's bundle once it has checked
it offline, `verify` checks a file against a bundle with no server and no token; and the
trust options (--trust-root, --trust-tsa-root) the checkpoint commands share."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

from archive import verify as evidence
from archive.client import ArchiveClient, ClientConfig
from archive.files import atomic_write
from archive.verify import EvidenceReport
from tools.archivectl.args import Commands, add_command, json_flag
from tools.archivectl.documents import check_output
from tools.archivectl.output import (
    EXIT_FAILED,
    EXIT_INTEGRITY,
    EXIT_OK,
    UsageError,
    check_lines,
    fact_lines,
    failure_text,
    iso,
    print_error,
    print_line,
    root_fact,
    stamp,
    to_json,
    tsa_root_fact,
)


def register(commands: Commands) -> None:
    fetch = add_command(
        commands,
        "evidence",
        "save a deposit's evidence bundle (ZIP), checked offline first",
        _evidence,
        prepare=_prepare_evidence,
    )
    fetch.add_argument("document_id", metavar="ID")
    fetch.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="where to write the ZIP"
    )
    trust_flags(fetch)
    json_flag(fetch)

    verify = add_command(
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
    trust_flags(verify)
    json_flag(verify, "the report as one JSON object")


def trust_flags(sub: argparse.ArgumentParser) -> None:
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


def read_trust_flags(args: argparse.Namespace) -> None:
    """Read the pinned roots before anything is sent (a bad file is a usage error)."""
    args.trusted_root_pem = read_trust_root(args.trust_root) if args.trust_root else None
    args.trusted_tsa_root_pem = (
        read_trust_root(args.trust_tsa_root) if args.trust_tsa_root else None
    )


def _prepare_evidence(args: argparse.Namespace) -> None:
    if args.output == "-":
        raise UsageError("evidence needs a file to write the ZIP to, not '-'")
    check_output(args.output)
    read_trust_flags(args)


def read_input(path: str, what: str) -> bytes:
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
    pem = read_input(path, "a PEM root certificate")
    try:
        evidence.load_trusted_roots(pem)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return pem


def evidence_lines(report: EvidenceReport) -> list[str]:
    """A verification report for people: each check, then what the bundle states."""
    leaf = (
        f"{report.leaf_index} of a tree of {report.tree_size} leaves"
        if report.leaf_index is not None and report.tree_size is not None
        else None
    )
    return check_lines(report.checks) + fact_lines(
        [
            ("document_id", report.document_id),
            ("sha256", report.sha256),
            ("size", f"{report.size} bytes" if report.size is not None else None),
            ("leaf", leaf),
            ("log", report.origin),
            ("root_hash", report.root_hash),
            ("time stamp", stamp(report)),
            ("sealed by", report.seal_subject),
            ("root", root_fact(report)),
            ("tsa root", tsa_root_fact(report)),
            ("trust", report.trust),
            ("tsa trust", report.tsa_trust),
        ]
    )


def _verify(args: argparse.Namespace) -> int:
    """`verify FILE --evidence BUNDLE`: offline, exit 0 when every check passes, 1 otherwise."""
    file = Path(args.file)
    if not file.exists():
        raise UsageError(f"{args.file}: no such file")
    if not file.is_file():
        raise UsageError(f"{args.file}: not a regular file")
    bundle_zip = read_input(args.evidence, "the evidence bundle")
    trusted = read_trust_root(args.trust_root) if args.trust_root else None
    trusted_tsa = read_trust_root(args.trust_tsa_root) if args.trust_tsa_root else None
    report = evidence.verify_evidence(
        file, bundle_zip, trusted_root_pem=trusted, trusted_tsa_root_pem=trusted_tsa
    )
    if args.json:
        print_line(to_json({"file": args.file, "evidence": args.evidence, **report.to_dict()}))
    else:
        for line in evidence_lines(report):
            print_line(line)
    if report.ok:
        if not args.json:
            print_line(
                f"verified: {args.file} is the document deposited, in the journal whose "
                "sealed and time-stamped checkpoint the bundle holds"
            )
        return EXIT_OK
    print_error(f"{args.file}: verification FAILED: {failure_text(report.first_failure)}")
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
        trusted_root_pem=args.trusted_root_pem,
        trusted_tsa_root_pem=args.trusted_tsa_root_pem,
        document_id=expected_id,
    )
    target = Path(args.output)
    atomic_write(target, bundle_zip)
    if args.json:
        print_line(to_json({"file": args.output, "verified": report.ok, **report.to_dict()}))
    else:
        stamp = f"  time-stamped {iso(report.gen_time)}" if report.gen_time else ""
        print_line(
            f"{args.output}  {report.document_id or expected_id}  leaf {report.leaf_index} of "
            f"{report.tree_size}{stamp}"
        )
    if not report.ok:
        # Saved anyway: it is what the archive handed out, and worth a report.
        print_error(
            f"warning: {args.output}: the evidence received does not verify: "
            f"{failure_text(report.first_failure)}"
        )
        return EXIT_INTEGRITY
    if not args.json:
        print_error(
            f"bundle checked ({report.trust}); check the document itself with "
            f"`archivectl verify FILE --evidence {args.output}`"
        )
    return EXIT_OK
