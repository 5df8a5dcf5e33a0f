"""archivectl's output, in one place: exit codes, lines for people or JSON for programs
(`--json`), error messages, the report lines of checks and facts, and the progress bar.

stdout carries results (one line, or one JSON object, per thing); stderr carries errors,
warnings and the progress bar, so `archivectl ... --json | jq` sees only results.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, TextIO

from archive import verify as evidence
from archive.client import (
    ArchiveError,
    ConfigurationError,
    IntegrityError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from archive.client.errors import NotReady
from archive.verify import Check, CheckpointReport, EvidenceReport

EXIT_OK: Final = 0


EXIT_FAILED: Final = 1


EXIT_USAGE: Final = 2


EXIT_AUTH: Final = 3


EXIT_NOT_FOUND: Final = 4


EXIT_UNAVAILABLE: Final = 5


EXIT_INTEGRITY: Final = 6


EXIT_INTERRUPTED: Final = 130


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


# ---- lines ----


def print_line(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def print_error(message: str) -> None:
    print(f"archivectl: {message}", file=sys.stderr, flush=True)


def to_json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def describe(exc: BaseException) -> str:
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


def error_fields(exc: BaseException) -> dict[str, Any]:
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
    return {"error": describe(exc), "code": "IO_ERROR", "reason": type(exc).__name__}


# ---- reports: checks and facts ----

_STATUS_LABELS: Final = {
    evidence.OK: "ok",
    evidence.FAILED: "FAILED",
    evidence.SKIPPED: "skipped",
    evidence.NOT_RUN: "not run",
}


def check_lines(checks: Sequence[Check], indent: str = "") -> list[str]:
    width = max((len(check.name) for check in checks), default=0) + 2
    return [
        f"{indent}{_STATUS_LABELS.get(check.status, check.status):<8}"
        f"{check.name:<{width}}{check.reason}"
        for check in checks
    ]


def fact_lines(facts: Sequence[tuple[str, object]]) -> list[str]:
    return [f"{label + ':':<13}{value}" for label, value in facts if value is not None]


def stamp(report: EvidenceReport | CheckpointReport) -> str | None:
    if report.gen_time is None:
        return None
    return f"{iso(report.gen_time)} by {report.tsa_subject}"


def root_fact(report: EvidenceReport | CheckpointReport) -> str | None:
    if report.root_subject is None:
        return None
    return f"{report.root_subject} (SHA-256 fingerprint {report.root_sha256})"


def tsa_root_fact(report: EvidenceReport | CheckpointReport) -> str | None:
    if report.tsa_root_subject is None:
        return None
    return f"{report.tsa_root_subject} (SHA-256 fingerprint {report.tsa_root_sha256})"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def failure_text(check: Check | None) -> str:
    return f"{check.name}: {check.reason}" if check is not None else "no check passed"


# ---- progress, on a terminal ----


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
            f"{size_text(self.bytes_sent)}/{size_text(self.total_bytes)}  "
            f"{size_text(self.bytes_sent / elapsed)}/s"
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


def size_text(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
