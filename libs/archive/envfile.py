"""`KEY=VALUE` files (`var/archive.env`): one parser for the launcher that writes them and
the CLI that reads them.

Blank lines and `#` comments are skipped, an optional `export ` prefix is allowed, values may
be in single or double quotes (taken literally), and unquoted values end at ` #`. Errors name
the file and line, never the line's content (it may hold a token)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from archive.files import atomic_write

_KEY_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EnvFileError(ValueError):
    """The file cannot be read, or a line is not KEY=VALUE."""


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise EnvFileError(f"cannot read env file {file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise EnvFileError(f"env file {file} is not UTF-8 text") from exc
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not _KEY_RE.match(key):
            raise EnvFileError(f"{file}:{number}: expected KEY=VALUE")
        values[key] = _unquote(value.strip(), f"{file}:{number}")
    return values


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Written 0600 and atomically: it holds a token."""
    for key, value in values.items():
        if not _KEY_RE.match(key) or "\n" in value:
            raise EnvFileError(f"cannot write {key!r}: not a KEY=VALUE line")
    atomic_write(path, "".join(f"{k}={v}\n" for k, v in values.items()).encode("utf-8"))


def _unquote(value: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        rest = value[end + 1 :].strip() if end > 0 else ""
        if end < 0 or (rest and not rest.startswith("#")):
            raise EnvFileError(f"{where}: unbalanced quotes")
        return value[1:end]
    # Unquoted: a comment starts at whitespace followed by '#'.
    match = re.search(r"\s#", value)
    return value[: match.start()].rstrip() if match else value
