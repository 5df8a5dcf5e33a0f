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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import grpc

from archive import envfile
from archive.client.errors import ConfigurationError
from archive.config import Secret

ENV_ENDPOINT: Final = "ARCHIVE_ENDPOINT"
ENV_TOKEN: Final = "ARCHIVE_TOKEN"
ENV_OPERATOR_TOKEN: Final = "ARCHIVE_OPERATOR_TOKEN"
CLIENT_VARIABLES: Final = (ENV_ENDPOINT, ENV_TOKEN, ENV_OPERATOR_TOKEN)



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
    """Parse a `KEY=VALUE` file (archive.envfile); errors name the file and line, never the
    line's content (it may hold a token)."""
    try:
        return envfile.read_env_file(path)
    except envfile.EnvFileError as exc:
        raise ConfigurationError(str(exc)) from None


def _secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value if value else None
    return Secret(value) if value else None


def _reveal(value: Secret | str | None, variable: str, what: str) -> str:
    secret = _secret(value)
    if secret is None:
        raise ConfigurationError(f"{variable} is not set: this call needs {what}")
    return secret.reveal()
