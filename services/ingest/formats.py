"""Format identification at the door, recorded in DocumentIngested.

Magic numbers come from `puremagic` (maintained, pure Python, ~0.4 ms a document). PRONOM
identifiers (PUIDs), which archives use to plan preservation, are added from a curated map of
the formats our tenants deposit most; anything else keeps its magic-number identification
with an empty PUID. FIDO (the Open Preservation Foundation's PRONOM matcher) was measured at
~290 ms a document and fell back to file extensions, so it is not used (docs/decisions.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.metadata import version

import puremagic

HEAD_BYTES = 8192
_TOOL = f"puremagic {version('puremagic')} + archive PRONOM map 1"

# PDF header version -> PRONOM PUID (PDF 1.0-1.7, 2.0).
_PDF_PUIDS = {
    "1.0": "fmt/14",
    "1.1": "fmt/15",
    "1.2": "fmt/16",
    "1.3": "fmt/17",
    "1.4": "fmt/18",
    "1.5": "fmt/19",
    "1.6": "fmt/20",
    "1.7": "fmt/276",
    "2.0": "fmt/1129",
}
# media type -> (PUID, name) for formats without versions worth telling apart here.
_PUIDS_BY_MEDIA_TYPE = {
    "image/png": ("fmt/13", "Portable Network Graphics 1.2"),
    "image/jpeg": ("fmt/43", "JPEG File Interchange Format 1.01"),
    "image/tiff": ("fmt/353", "Tagged Image File Format"),
    "image/gif": ("fmt/4", "Graphics Interchange Format 89a"),
    "application/xml": ("fmt/101", "Extensible Markup Language 1.0"),
    "text/xml": ("fmt/101", "Extensible Markup Language 1.0"),
    "application/zip": ("x-fmt/263", "ZIP Format"),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (
        "fmt/412",
        "Microsoft Word for Windows 2007 onwards",
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (
        "fmt/214",
        "Microsoft Excel for Windows 2007 onwards",
    ),
    "text/plain": ("x-fmt/111", "Plain Text File"),
}
_PDF_HEADER = re.compile(rb"%PDF-(\d\.\d)")


@dataclass(frozen=True)
class Identification:
    puid: str
    media_type: str
    name: str
    identified_by: str = _TOOL


def _by_signature(head: bytes) -> str:
    """Media type of the formats deposited most, from their leading bytes: microseconds,
    where a full magic-number scan costs ~240 us of pure Python per document."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    if head.startswith(b"PK\x03\x04"):
        if b"[Content_Types].xml" in head:
            if b"word/" in head:
                return "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            if b"xl/" in head:
                return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        return "application/zip"
    if head.lstrip(b"\xef\xbb\xbf \r\n\t").startswith(b"<?xml"):
        return "application/xml"
    return ""


def identify(head: bytes) -> Identification:
    """Identify from the first bytes of the content (HEAD_BYTES are enough for what we map)."""
    pdf = _PDF_HEADER.match(head[:1024].lstrip(b"\r\n\t "))
    if pdf:
        ver = pdf.group(1).decode()
        return Identification(_PDF_PUIDS.get(ver, ""), "application/pdf", f"Acrobat PDF {ver}")
    media_type, name = _by_signature(head), ""
    if not media_type and head:
        try:
            best = puremagic.magic_string(head)
        except puremagic.PureError:
            best = []
        if best:
            media_type, name = best[0].mime_type, best[0].name
    if not media_type and _looks_like_text(head):
        if head.lstrip().startswith(b"<?xml"):
            media_type, name = "application/xml", "Extensible Markup Language"
        else:
            media_type, name = "text/plain", "Plain Text File"
    puid, pronom_name = _PUIDS_BY_MEDIA_TYPE.get(media_type, ("", ""))
    return Identification(
        puid, media_type or "application/octet-stream", pronom_name or name or "unknown binary"
    )


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut at the buffer's end is fine
        return exc.start >= len(head) - 3
    return True
