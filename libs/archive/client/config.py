"""Client settings: where the archive is, how to reach it, and which tokens to present.

`ClientConfig.from_env()` reads ARCHIVE_ENDPOINT (host:port of the gateway), ARCHIVE_TOKEN (a
tenant token) and ARCHIVE_OPERATOR_TOKEN (administration), ARCHIVE_TLS (1: TLS, checked
against the system's roots), ARCHIVE_CA_FILE (TLS, checked against this CA instead; TLS is on
with it alone) and ARCHIVE_INSECURE, optionally first from an env file such as the
`var/archive.env` the launcher writes.

A token never crosses a network in clear by accident: without TLS, a client refuses to send
one to an endpoint other than a loopback address (localhost, 127.0.0.0/8, ::1) or a Unix
socket, unless ARCHIVE_INSECURE=1 says the network is trusted (`check_token_transport`).

Precedence: a non-empty environment variable wins over the same key in the env file, and the
env file only fills in what the environment lacks. So `ARCHIVE_ENDPOINT=other:443 archivectl
--env-file var/archive.env ls` talks to `other:443` with the file's token, the way
docker compose and most dotenv loaders behave. Empty environment values count as unset.

Tokens are held as `archive.config.Secret`, so printing or logging a config never shows them.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TypedDict, Unpack

import grpc
from cryptography import x509

from archive import envfile
from archive.client.errors import ConfigurationError
from archive.config import Secret

ENV_ENDPOINT: Final = "ARCHIVE_ENDPOINT"
ENV_TOKEN: Final = "ARCHIVE_TOKEN"
ENV_OPERATOR_TOKEN: Final = "ARCHIVE_OPERATOR_TOKEN"
ENV_TLS: Final = "ARCHIVE_TLS"
ENV_CA_FILE: Final = "ARCHIVE_CA_FILE"
ENV_INSECURE: Final = "ARCHIVE_INSECURE"
CLIENT_VARIABLES: Final = (
    ENV_ENDPOINT,
    ENV_TOKEN,
    ENV_OPERATOR_TOKEN,
    ENV_TLS,
    ENV_CA_FILE,
    ENV_INSECURE,
)


class ConfigOverrides(TypedDict, total=False):
    """What ClientConfig.from_env's keywords may set besides the environment's."""

    timeout: float | None
    transfer_timeout: float | None
    max_attempts: int
    initial_backoff: float
    max_backoff: float
    channel_credentials: grpc.ChannelCredentials | None
    tls: bool
    ca_file: Path | None
    insecure: bool


@dataclass(frozen=True)
class ClientConfig:
    """How to reach the archive.

    `timeout` bounds each unary call (seconds, None: no deadline); `transfer_timeout` bounds a
    whole upload or download (None by default: large documents take the time they take).
    Calls that are safe to repeat are retried on UNAVAILABLE / DEADLINE_EXCEEDED up to
    `max_attempts` times in all, with exponential backoff from `initial_backoff` to
    `max_backoff` seconds (or longer when the server's RetryInfo asks for it).

    `tls` speaks TLS, checking the server against the system's roots, or against `ca_file`
    (PEM) when given (which turns TLS on by itself); `channel_credentials` (e.g.
    `grpc.ssl_channel_credentials(...)`) does the same with credentials of your own. Without
    TLS, tokens are sent only to loopback endpoints unless `insecure` is set.
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
    tls: bool = False
    ca_file: Path | None = None
    insecure: bool = False
    _ca_pem: bytes | None = field(default=None, init=False, repr=False, compare=False)

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
        if self.ca_file is not None:
            ca_file = Path(self.ca_file)
            object.__setattr__(self, "ca_file", ca_file)
            object.__setattr__(self, "_ca_pem", _read_ca(ca_file))
        if self.ca_file is not None or self.channel_credentials is not None:
            object.__setattr__(self, "tls", True)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = None,
        **overrides: Unpack[ConfigOverrides],
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
        tls = _flag(values, ENV_TLS)
        insecure = _flag(values, ENV_INSECURE)
        ca_file = values.get(ENV_CA_FILE) or None
        if ca_file is not None and tls is False:
            raise ConfigurationError(
                f"{ENV_TLS} is off, but {ENV_CA_FILE} is only used with TLS: unset one of the two"
            )
        endpoint = values.get(ENV_ENDPOINT, "")
        if not endpoint:
            where = f" (neither in the environment nor in {env_file})" if env_file else ""
            raise ConfigurationError(
                f"{ENV_ENDPOINT} is not set{where}: give the archive's host:port, e.g. "
                "--env-file var/archive.env as written by the launcher"
            )
        settings: ConfigOverrides = {
            "tls": bool(tls),
            "ca_file": Path(ca_file) if ca_file else None,
            "insecure": bool(insecure),
            **overrides,
        }
        return cls(
            endpoint=endpoint,
            token=values.get(ENV_TOKEN) or None,
            operator_token=values.get(ENV_OPERATOR_TOKEN) or None,
            **settings,
        )

    def credentials(self) -> grpc.ChannelCredentials | None:
        """The channel's TLS credentials; None for a plaintext channel."""
        if self.channel_credentials is not None:
            return self.channel_credentials
        if self.tls:
            return grpc.ssl_channel_credentials(root_certificates=self._ca_pem)
        return None

    def check_token_transport(self) -> None:
        """ConfigurationError when a token would go in clear over a network: no TLS, an
        endpoint other than a loopback address or a Unix socket, and `insecure` not set."""
        if self.tls or self.insecure or is_local_endpoint(self.endpoint):
            return
        raise ConfigurationError(
            f"refusing to send a token in clear to {self.endpoint}: it is not a loopback "
            f"address and TLS is off; use TLS ({ENV_TLS}=1 or --tls, with {ENV_CA_FILE} or "
            f"--ca-file for a private CA), or set {ENV_INSECURE}=1 (--insecure) if the "
            "network between here and there is trusted"
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


def is_local_endpoint(target: str) -> bool:
    """Whether a gRPC target stays on this machine: a Unix socket, `localhost` (or a name
    under .localhost) or a loopback address; names are not resolved."""
    if target.startswith(("unix:", "unix-abstract:")):
        return True
    for scheme in ("dns:///", "dns:", "ipv4:", "ipv6:"):
        if target.startswith(scheme):
            target = target[len(scheme) :]
            break
    if target.startswith("["):  # [v6]:port
        host = target[1 : target.find("]")] if "]" in target else target
    elif target.count(":") == 1:
        host = target.rsplit(":", 1)[0]
    else:
        host = target  # no port, or a bare IPv6 address
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _flag(values: Mapping[str, str], variable: str) -> bool | None:
    raw = values.get(variable, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{variable}: expected 1 or 0 (true, false), got {raw!r}")


def _read_ca(path: Path) -> bytes:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{ENV_CA_FILE}: cannot read {path}: {exc.strerror or exc}"
        ) from None
    try:
        x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigurationError(
            f"{ENV_CA_FILE}: {path} holds no PEM certificate (expected the CA that issued "
            "the archive's TLS certificate)"
        ) from None
    return pem


def _secret(value: Secret | str | None) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value if value else None
    return Secret(value) if value else None


def _reveal(value: Secret | str | None, variable: str, what: str) -> str:
    secret = _secret(value)
    if secret is None:
        raise ConfigurationError(f"{variable} is not set: this call needs {what}")
    return secret.reveal()
