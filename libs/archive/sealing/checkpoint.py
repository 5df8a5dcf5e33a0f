"""C2SP tlog-checkpoint note text: what a log signs about its Merkle tree.

    archive.example.org/acme
    20852163
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

Origin, tree size in decimal (no leading zeros), root hash in standard base64 with padding,
then optional extension lines; every line non-empty and followed by a newline. Our origin is
"<provider origin>/<tenant>", one log per tenant (`tenant_origin`).

Parsing is strict, as a verifier's should be: exactly one text per checkpoint, so the bytes a
signature covers cannot be read two ways. `parse_checkpoint` takes the note text only (up to
and including the root line's, or last extension line's, newline), not the signature lines
of a signed note.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from archive.sealing.merkle import HASH_SIZE, MAX_TREE_SIZE

_DECIMAL: Final = re.compile(r"0|[1-9][0-9]*")
_BASE64: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
# C0 controls and DEL: signed notes are plain text lines; "\n" is the only separator.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
# C2SP: the origin SHOULD contain neither Unicode spaces nor "+"; we make it a MUST for ours.
_ORIGIN_UNSAFE: Final = re.compile(r"[\s+]")


class CheckpointError(ValueError):
    """Not a well-formed checkpoint (or not one we may write)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extension_lines: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        return format_checkpoint(self.origin, self.size, self.root, self.extension_lines)


def _check_line(line: str, what: str) -> None:
    if not line:
        raise CheckpointError(f"{what} must not be empty")
    if _CONTROL.search(line):
        raise CheckpointError(f"{what} must not contain newlines or control characters")


def format_checkpoint(
    origin: str, size: int, root: bytes, extension_lines: Sequence[str] = ()
) -> bytes:
    """The checkpoint note text, UTF-8, each line followed by "\\n"."""
    _check_line(origin, "origin")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
        raise CheckpointError(f"tree size must be an int within 0..2**64-1, got {size!r}")
    if not isinstance(root, bytes | bytearray) or len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
    if isinstance(extension_lines, str):
        raise CheckpointError("extension_lines must be a sequence of lines, not one str")
    for line in extension_lines:
        _check_line(line, "extension line")
    lines = [origin, str(size), base64.b64encode(bytes(root)).decode("ascii"), *extension_lines]
    return "".join(line + "\n" for line in lines).encode("utf-8")


def parse_checkpoint(data: bytes) -> Checkpoint:
    """The checkpoint in `data`, or CheckpointError for anything but the one canonical text."""
    if not isinstance(data, bytes | bytearray):
        raise CheckpointError("checkpoint must be bytes")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError("checkpoint is not valid UTF-8") from error
    if not text.endswith("\n"):
        raise CheckpointError("checkpoint must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint needs origin, tree size and root hash lines")
    origin, size_line, root_line, *extension_lines = lines
    _check_line(origin, "origin")
    for line in extension_lines:
        # An empty line here is where a signed note's signatures would start.
        _check_line(line, "extension line")
    if not _DECIMAL.fullmatch(size_line):
        raise CheckpointError(f"tree size must be decimal without leading zeros: {size_line!r}")
    size = int(size_line)
    if size > MAX_TREE_SIZE:
        raise CheckpointError("tree size exceeds 2**64-1")
    return Checkpoint(origin, size, _decode_root(root_line), tuple(extension_lines))


def _decode_root(line: str) -> bytes:
    if not _BASE64.fullmatch(line) or len(line) % 4:
        raise CheckpointError("root hash must be standard base64 with padding")
    try:
        root = base64.b64decode(line, validate=True)
    except binascii.Error as error:
        raise CheckpointError("root hash must be standard base64 with padding") from error
    # Re-encoding catches non-zero padding bits: two texts must not decode to one hash.
    if base64.b64encode(root).decode("ascii") != line:
        raise CheckpointError("root hash is not in canonical base64")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash must be {HASH_SIZE} bytes, got {len(root)}")
    return root


def tenant_origin(provider_origin: str, tenant: str) -> str:
    """The origin line of a tenant's log: "<provider origin>/<tenant>"."""
    for value, what in ((provider_origin, "provider origin"), (tenant, "tenant")):
        _check_line(value, what)
        if _ORIGIN_UNSAFE.search(value):
            raise CheckpointError(f"{what} must contain neither spaces nor '+': {value!r}")
    # The tenant is the origin's last path segment, so an origin names one tenant unambiguously.
    if "/" in tenant:
        raise CheckpointError(f"tenant must not contain '/': {tenant!r}")
    if provider_origin.endswith("/"):
        raise CheckpointError("provider origin must not end with '/'")
    return f"{provider_origin}/{tenant}"
