"""Client settings: where the archive is and which tokens to present.

`ClientConfig.from_env()` reads ARCHIVE_ENDPOINT (host:port of the gateway), ARCHIVE_TOKEN (a
tenant token) and ARCHIVE_OPERATOR_TOKEN (administration), optionally first from an env file
such as the `var/archive.env` the launcher writes.

Precedence: a non-empty environment variable wins over the same key in the env file, and the
env file only fills in what the environment lacks. So `ARCHIVE_ENDPOINT=other:443 archivectl
--env-file var/archive.env ls` talks to `other:443` with the file's token, the way
docker compose and most dotenv loaders behave. Empty environment values count as unset.

Tokens are held as `archive.config.Secret`, so printing or logging a config never shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import grpc

from archive.client.errors import ConfigurationError
from archive.config import Secret

ENV_ENDPOINT: Final = "ARCHIVE_ENDPOINT"
ENV_TOKEN: Final = "ARCHIVE_TOKEN"
ENV_OPERATOR_TOKEN: Final = "ARCHIVE_OPERATOR_TOKEN"
CLIENT_VARIABLES: Final = (ENV_ENDPOINT, ENV_TOKEN, ENV_OPERATOR_TOKEN)

_KEY_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ClientConfig:
    """How to reach the archive.

    `timeout` bounds each unary call (seconds, None: no deadline); `transfer_timeout` bounds a
    whole upload or download (None by default: large documents take the time they take).
    Calls that are safe to repeat are retried on UNAVAILABLE / DEADLINE_EXCEEDED up to
    `max_attempts` times in all, with exponential backoff from `initial_backoff` to
    `max_backoff` seconds (or longer when the server's RetryInfo asks for it).
    `channel_credentials` (e.g. `grpc.ssl_channel_credentials()`) switches to TLS.
    """

    endpoint: str
    token: Secret | str | None = None
    operator_token: Secret | str | None = None
    timeout: float | None = 30.0
    transfer_timeout: float | None = None
    max_attempts: int = 5
    initial_backoff: float = 0.25
    max_backoff: float = 8.0
    channel_credentials: grpc.ChannelCredentials | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        endpoint = self.endpoint.strip()
        if not endpoint or any(c.isspace() for c in endpoint):
            raise ConfigurationError(f"{ENV_ENDPOINT}: expected host:port, got {endpoint!r}")
        if self.max_attempts < 1:
            raise ConfigurationError("max_attempts must be at least 1")
        # Accept plain strings for convenience, but never keep a token that could be printed.
        object.__setattr__(self, "endpoint", endpoint)
        object.__setattr__(self, "token", _secret(self.token))
        object.__setattr__(self, "operator_token", _secret(self.operator_token))

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        **overrides: object,
    ) -> ClientConfig:
        """Settings from the environment (default `os.environ`) and an optional env file; the
        environment wins over the file (see the module docstring). `overrides` are passed to
        the constructor (e.g. `max_attempts=1`)."""
        values: dict[str, str] = {}
        if env_file is not None:
            values.update(read_env_file(env_file))
        env = os.environ if environ is None else environ
        for key in CLIENT_VARIABLES:
            if env.get(key):
                values[key] = env[key]
        endpoint = values.get(ENV_ENDPOINT, "")
        if not endpoint:
            where = f" (neither in the environment nor in {env_file})" if env_file else ""
            raise ConfigurationError(
                f"{ENV_ENDPOINT} is not set{where}: give the archive's host:port, e.g. "
                "--env-file var/archive.env as written by the launcher"
            )
        return cls(
            endpoint=endpoint,
            token=values.get(ENV_TOKEN) or None,
            operator_token=values.get(ENV_OPERATOR_TOKEN) or None,
            **overrides,  # type: ignore[arg-type]
        )

    def tenant_token(self) -> str:
        return _reveal(self.token, ENV_TOKEN, "a tenant token")

    def admin_token(self) -> str:
        return _reveal(self.operator_token, ENV_OPERATOR_TOKEN, "the operator token")


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse `KEY=VALUE` lines: blank lines and `#` comments skipped, an optional `export `
    prefix, values optionally in single or double quotes (taken literally), and unquoted
    values ending at ` #`. Errors name the file and line, never the line's content (it may
    hold a token)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read env file {file}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigurationError(f"env file {file} is not UTF-8 text") from exc
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
            raise ConfigurationError(f"{file}:{number}: expected KEY=VALUE")
        values[key] = _unquote(value.strip(), f"{file}:{number}")
    return values


def _unquote(value: str, where: str) -> str:
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        rest = value[end + 1 :].strip() if end > 0 else ""
        if end < 0 or (rest and not rest.startswith("#")):
            raise ConfigurationError(f"{where}: unbalanced quotes")
        return value[1:end]
    # Unquoted: a comment starts at whitespace followed by '#'.
    match = re.search(r"\s#", value)
    return value[: match.start()].rstrip() if match else value


def _secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value if value else None
    return Secret(value) if value else None


def _reveal(value: Secret | str | None, variable: str, what: str) -> str:
    secret = _secret(value)
    if secret is None:
        raise ConfigurationError(f"{variable} is not set: this call needs {what}")
    return secret.reveal()
