"""C2SP tlog-checkpoint note text: the spec's example, round trips, strict refusals."""

from __future__ import annotations

import base64

import pytest

from archive.sealing.checkpoint import (
    Checkpoint,
    CheckpointError,
    format_checkpoint,
    parse_checkpoint,
    tenant_origin,
)
from archive.sealing.merkle import EMPTY_ROOT, MerkleTree, leaf_hash

# The example of c2sp.org/tlog-checkpoint (its note text, without the signature).
SPEC_EXAMPLE = (
    b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT)


def test_spec_example() -> None:
    checkpoint = parse_checkpoint(SPEC_EXAMPLE)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extension_lines == ()
    assert checkpoint.to_bytes() == SPEC_EXAMPLE


def test_format_and_parse_round_trip() -> None:
    tree = MerkleTree(leaf_hash(bytes([i])) for i in range(5))
    origin = tenant_origin("archive.example.org", "acme")
    text = format_checkpoint(origin, tree.size, tree.root())
    assert text == b"archive.example.org/acme\n5\n" + base64.b64encode(tree.root()) + b"\n"
    assert parse_checkpoint(text) == Checkpoint(origin, 5, tree.root())

    empty = format_checkpoint(origin, 0, EMPTY_ROOT)
    assert empty.splitlines()[1] == b"0"
    assert parse_checkpoint(empty).root == EMPTY_ROOT

    with_extensions = format_checkpoint(origin, 7, ROOT, ["ext one", "ext two \u00e9"])
    parsed = parse_checkpoint(with_extensions)
    assert parsed.extension_lines == ("ext one", "ext two \u00e9")
    assert parsed.to_bytes() == with_extensions

    biggest = format_checkpoint(origin, 2**64 - 1, ROOT)
    assert parse_checkpoint(biggest).size == 2**64 - 1


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"origin\n5\n" + ROOT_B64,  # no final newline
        b"origin\n5\n" + ROOT_B64 + b"\n\n",  # empty extension line (a signed note's blank)
        b"origin\n5\n" + ROOT_B64 + b"\n\n\xe2\x80\x94 origin sig\n",  # signatures included
        b"origin\n5\n",  # no root line
        b"\n5\n" + ROOT_B64 + b"\n",  # empty origin
        b"origin\n05\n" + ROOT_B64 + b"\n",  # leading zero
        b"origin\n00\n" + ROOT_B64 + b"\n",
        b"origin\n-5\n" + ROOT_B64 + b"\n",
        b"origin\n+5\n" + ROOT_B64 + b"\n",
        b"origin\n 5\n" + ROOT_B64 + b"\n",
        b"origin\n5 \n" + ROOT_B64 + b"\n",
        b"origin\n0x5\n" + ROOT_B64 + b"\n",
        b"origin\n1_000\n" + ROOT_B64 + b"\n",
        "origin\n\u0665\n".encode() + ROOT_B64 + b"\n",  # Arabic-Indic digit five
        b"origin\n18446744073709551616\n" + ROOT_B64 + b"\n",  # 2**64
        b"origin\n5\n" + ROOT_B64.rstrip(b"=") + b"\n",  # padding removed
        b"origin\n5\n" + base64.urlsafe_b64encode(b"\xff" * 32) + b"\n",  # URL-safe alphabet
        b"origin\n5\n" + ROOT_B64[:-2] + b"B=\n",  # non-zero padding bits
        b"origin\n5\n" + ROOT_B64[:20] + b" " + ROOT_B64[20:] + b"\n",
        b"origin\n5\n" + base64.b64encode(bytes(31)) + b"\n",  # wrong hash length
        b"origin\n5\n" + base64.b64encode(bytes(48)) + b"\n",
        b"origin\n5\n" + ROOT_B64 + b"\r\n",  # CRLF
        b"origin\r\n5\n" + ROOT_B64 + b"\n",
        b"ori\x00gin\n5\n" + ROOT_B64 + b"\n",
        b"\xff\xfe\n5\n" + ROOT_B64 + b"\n",  # not UTF-8
    ],
)
def test_parse_refuses(text: bytes) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("two\nlines", 1, ROOT, ()),
        ("origin", -1, ROOT, ()),
        ("origin", 2**64, ROOT, ()),
        ("origin", True, ROOT, ()),
        ("origin", 1, ROOT[:31], ()),
        ("origin", 1, ROOT.hex(), ()),
        ("origin", 1, ROOT, ("",)),
        ("origin", 1, ROOT, ("a\nb",)),
        ("origin", 1, ROOT, "one str"),
    ],
)
def test_format_refuses(origin: str, size: int, root: bytes, extensions: tuple[str, ...]) -> None:
    with pytest.raises(CheckpointError):
        format_checkpoint(origin, size, root, extensions)


def test_tenant_origin() -> None:
    assert tenant_origin("archive.example.org", "acme") == "archive.example.org/acme"
    assert tenant_origin("example.org/archive", "t-1") == "example.org/archive/t-1"
    for provider, tenant in [
        ("", "acme"),
        ("archive.example.org", ""),
        ("archive.example.org/", "acme"),
        ("archive example.org", "acme"),
        ("archive.example.org", "ac+me"),
        ("archive.example.org", "a/b"),
        ("archive.example.org", "acme\n"),
        ("archive.example.org", "ac\u00a0me"),  # a Unicode space
    ]:
        with pytest.raises(CheckpointError):
            tenant_origin(provider, tenant)
