"""archivectl's `audit`: the archive re-hashes the tenant's content and checks its journal
against its sealed log now; exit 1 when it finds failures."""

from __future__ import annotations

import argparse

from archive.client import ArchiveClient, ClientConfig
from archive.client.models import IntegrityAuditReport
from tools.archivectl.args import Commands, add_command, json_flag
from tools.archivectl.output import (
    EXIT_FAILED,
    EXIT_OK,
    fact_lines,
    iso,
    print_error,
    print_line,
    to_json,
)


def register(commands: Commands) -> None:
    audit = add_command(
        commands, "audit", "re-hash the tenant's content and check its journal now", _audit
    )
    json_flag(audit)


def audit_lines(report: IntegrityAuditReport) -> list[str]:
    lines = fact_lines(
        [
            ("tenant", report.tenant),
            ("audit_id", report.audit_id),
            ("trigger", report.trigger),
            ("started_at", iso(report.started_at) if report.started_at else None),
            ("completed_at", iso(report.completed_at) if report.completed_at else None),
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
        print_line(to_json(report.to_dict()))
    else:
        for line in audit_lines(report):
            print_line(line)
    if report.ok:
        return EXIT_OK
    print_error(f"the integrity audit found {report.failure_count} failure(s)")
    return EXIT_FAILED
