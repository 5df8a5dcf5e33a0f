"""What verification returns: one `Check` per step and a report over them, with the facts the
evidence states. Nothing here verifies; `to_dict` is the JSON form `archivectl --json` prints."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

from archive.sealing.checkpoint import Checkpoint

__all__ = [
    "CHECK_BUNDLE",
    "CHECK_CHECKPOINT",
    "CHECK_CONSISTENCY",
    "CHECK_DOCUMENT",
    "CHECK_INCLUSION",
    "CHECK_SEAL",
    "CHECK_TIMESTAMP",
    "FAILED",
    "NOT_RUN",
    "OK",
    "SKIPPED",
    "Check",
    "CheckpointReport",
    "EvidenceReport",
    "iso",
]

CHECK_BUNDLE: Final = "bundle"
CHECK_DOCUMENT: Final = "document"
CHECK_INCLUSION: Final = "inclusion"
CHECK_CHECKPOINT: Final = "checkpoint"
CHECK_SEAL: Final = "seal"
CHECK_TIMESTAMP: Final = "timestamp"
CHECK_CONSISTENCY: Final = "consistency"

OK: Final = "ok"
FAILED: Final = "failed"
SKIPPED: Final = "skipped"  # deliberately not checked (no file given): not a failure
NOT_RUN: Final = "not run"  # could not be checked because something it needs is broken


@dataclass(frozen=True)
class Check:
    """One verification step: `status` is ok, failed, skipped or "not run"."""

    name: str
    status: str
    reason: str

    @property
    def ok(self) -> bool:
        return self.status in (OK, SKIPPED)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "ok": self.ok, "reason": self.reason}


def passed(name: str, reason: str) -> Check:
    return Check(name, OK, reason)


def failed(name: str, reason: str) -> Check:
    return Check(name, FAILED, reason)


def not_run(name: str, needs: Sequence[str]) -> Check:
    return Check(name, NOT_RUN, f"not checked: {', '.join(needs)} missing or unreadable")


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


class _Outcome:
    """Shared by the reports: `ok` only when every check passed (or was skipped on purpose)."""

    checks: tuple[Check, ...]
    trust: str
    tsa_trust: str
    # Every report is a @dataclass: this is what dataclasses.fields(self) reads.
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def first_failure(self) -> Check | None:
        return next((check for check in self.checks if not check.ok), None)

    def check(self, name: str) -> Check:
        """The check called `name` (KeyError if the report has none)."""
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def __bool__(self) -> bool:
        return self.ok

    def _facts(self) -> dict[str, Any]:
        """The report's own fields, in declaration order, as JSON values."""
        facts: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            if spec.name in ("checks", "trust", "tsa_trust"):
                continue
            value = getattr(self, spec.name)
            facts[spec.name] = iso(value) if isinstance(value, datetime) else value
        return facts

    def to_dict(self) -> dict[str, Any]:
        first = self.first_failure
        return {
            "ok": self.ok,
            "first_failure": first.to_dict() if first is not None else None,
            "checks": [check.to_dict() for check in self.checks],
            **self._facts(),
            "trust": self.trust,
            "tsa_trust": self.tsa_trust,
        }


@dataclass(frozen=True)
class EvidenceReport(_Outcome):
    """The outcome of `verify_evidence`: every check in order, and what the bundle states.

    The facts are read from the bundle whether or not the checks pass; only trust them when
    `ok`. `gen_time`, `tsa_subject` and `seal_subject` are set only when their check passed.
    """

    checks: tuple[Check, ...]
    trust: str
    tsa_trust: str = ""
    document_id: str | None = None
    sha256: str | None = None
    sha512: str | None = None
    size: int | None = None
    leaf_index: int | None = None
    tree_size: int | None = None
    origin: str | None = None
    root_hash: str | None = None
    gen_time: datetime | None = None
    tsa_subject: str | None = None
    seal_subject: str | None = None
    seal_signing_time: datetime | None = None
    root_subject: str | None = None
    root_sha256: str | None = None
    tsa_root_subject: str | None = None
    tsa_root_sha256: str | None = None


@dataclass(frozen=True)
class CheckpointReport(_Outcome):
    """The outcome of `verify_signed_checkpoint`: checks checkpoint, seal, timestamp."""

    checks: tuple[Check, ...]
    trust: str
    tsa_trust: str = ""
    checkpoint: Checkpoint | None = None
    gen_time: datetime | None = None
    tsa_subject: str | None = None
    seal_subject: str | None = None
    root_subject: str | None = None
    root_sha256: str | None = None
    tsa_root_subject: str | None = None
    tsa_root_sha256: str | None = None

    @property
    def origin(self) -> str | None:
        return self.checkpoint.origin if self.checkpoint is not None else None

    @property
    def tree_size(self) -> int | None:
        return self.checkpoint.size if self.checkpoint is not None else None

    @property
    def root_hash(self) -> str | None:
        return self.checkpoint.root.hex() if self.checkpoint is not None else None

    def _facts(self) -> dict[str, Any]:
        # The parsed checkpoint is not JSON: show what it says instead.
        facts = super()._facts()
        del facts["checkpoint"]
        return {
            "origin": self.origin,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            **facts,
        }
