"""Process settings, read once from ARCHIVE_* environment variables.

Every service main does `settings = Settings.from_env()` and passes the object down; nothing
else reads the environment, so a test can build a `Settings(...)` by hand. Invalid values fail
at start-up with a `ConfigError` that names the variable, instead of surprising us later.
Secrets are wrapped in `Secret` so that printing or logging the settings never shows them.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, NoReturn, TypeVar

# Operator tokens shorter than this are guessable; refuse them at start-up.
MIN_OPERATOR_TOKEN_LENGTH: Final = 24
DEFAULT_GRPC_PORT: Final = 50051
# gRPC's own default receive limit; content travels in chunks well below it.
DEFAULT_GRPC_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024

EventStoreKind = Literal["jetstream", "memory"]
TracesExporter = Literal["none", "console", "otlp"]
_EVENT_STORES: Final[tuple[EventStoreKind, ...]] = ("jetstream", "memory")
BlobStoreKind = Literal["pack", "filesystem"]
_BLOB_STORES: Final[tuple[BlobStoreKind, ...]] = ("pack", "filesystem")
# "development": sealing may generate its own PKI and stamp its own time (the embedded
# `archive up` stack sets it); "production" (the default): it needs real keys and an
# external time-stamp authority, or it does not start.
Profile = Literal["development", "production"]
_PROFILES: Final = ("development", "production")
_TRACES_EXPORTERS: Final[tuple[TracesExporter, ...]] = ("none", "console", "otlp")
_LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

T = TypeVar("T")
# One of a Literal's values (an EventStoreKind, a BlobStoreKind, ...).
_Choice = TypeVar("_Choice", bound=str)


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}")


class Secret:
    """A string that does not show itself: repr/str/format give '***'.

    Use `reveal()` at the single place the value is really needed, and `matches()` to compare
    in constant time (a plain == would leak, through timing, how much of a guess is right)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(self._value.encode(), candidate.encode())

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(Secret)  # equal secrets must hash equally; the value itself stays out of it

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        # Pickling would write the value out in clear (e.g. into a multiprocessing queue).
        raise TypeError("a Secret cannot be pickled")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./var")
    nats_url: str = "nats://127.0.0.1:4222"
    # Loopback by default: exposing the port is a deliberate act (containers set 0.0.0.0).
    grpc_host: str = "127.0.0.1"
    grpc_port: int = DEFAULT_GRPC_PORT
    grpc_max_message_bytes: int = DEFAULT_GRPC_MAX_MESSAGE_BYTES
    # Optional TLS for the gRPC port (PEM files); both or neither.
    grpc_tls_cert_file: Path | None = None
    grpc_tls_key_file: Path | None = None
    # The gateway's calls to its backends: TLS, checked against this CA (PEM; None: the
    # system's roots). A CA file alone turns TLS on.
    backend_tls: bool = False
    backend_ca_file: Path | None = None
    event_store: EventStoreKind = "jetstream"
    # JetStream stream holding every event, its subject prefix and its replica count.
    nats_stream: str = "ARCHIVE_EVENTS"
    nats_subject_prefix: str = "events"
    nats_replicas: int = 1
    # None: tenant administration is refused on this process (the secure default).
    operator_token: Secret | None = field(default=None)
    log_level: str = "INFO"
    shutdown_grace_seconds: float = 20.0
    service_name: str = "archive"
    traces_exporter: TracesExporter = "none"
    # Document bytes: "pack" (appended to per-tenant segment files, group commit) or "filesystem"
    # (one file per blob); both under blob_dir, None meaning <data_dir>/blobs. See D12.
    blob_store: BlobStoreKind = "pack"
    blob_dir: Path | None = None
    # Deposit limits (ingest): each refusal is a clear INVALID_ARGUMENT or RESOURCE_EXHAUSTED.
    max_document_bytes: int = 1024**3
    max_metadata_entries: int = 64
    max_metadata_value_chars: int = 4096

    # What sealing may do for itself: see Profile. Fails closed: production unless told.
    profile: Profile = "production"
    # Sealing: the origin naming this provider in checkpoints ("<origin>/<tenant>"), when to
    # cut a checkpoint (N new leaves or T milliseconds, whichever first); the seal key, its
    # certificate, intermediates and root (PEM files; in development, when not given, a PKI
    # generated under <data_dir>/pki on first start); the time-stamp authority: its URL, its
    # own root and intermediates (a TSA is somebody else: its root is not the seal's), the CA
    # of its TLS certificate (none: the default roots) and the time an answer may take. In
    # development only, the built-in TSA instead (no URL), with the generated PKI's key or
    # one given as files (tsa_key_file, tsa_cert_file).
    provider_origin: str = "archive.localhost"
    checkpoint_max_leaves: int = 1000
    checkpoint_interval_ms: int = 500
    seal_key_file: Path | None = None
    seal_cert_file: Path | None = None
    seal_chain_file: Path | None = None
    seal_root_file: Path | None = None
    tsa_url: str = ""
    tsa_root_file: Path | None = None
    tsa_chain_file: Path | None = None
    tsa_ca_file: Path | None = None
    tsa_timeout_seconds: float = 10.0
    tsa_key_file: Path | None = None
    tsa_cert_file: Path | None = None
    audit_interval_seconds: float = 24 * 3600.0

    @property
    def blob_root(self) -> Path:
        return self.blob_dir if self.blob_dir is not None else self.data_dir / "blobs"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        env = _Env(environ)
        operator_token = env.get("ARCHIVE_OPERATOR_TOKEN", None, _operator_token)
        token_file = env.get("ARCHIVE_OPERATOR_TOKEN_FILE", None, _existing_file)
        if token_file is not None:
            if operator_token is not None:
                raise ConfigError(
                    "ARCHIVE_OPERATOR_TOKEN_FILE",
                    "set either ARCHIVE_OPERATOR_TOKEN or ARCHIVE_OPERATOR_TOKEN_FILE, not both",
                )
            # Kubernetes mounts secrets as files; the trailing newline is not part of the token.
            content = token_file.read_text(encoding="utf-8").strip()
            operator_token = _checked("ARCHIVE_OPERATOR_TOKEN_FILE", content, _operator_token)
        cert = env.get("ARCHIVE_GRPC_TLS_CERT_FILE", None, _existing_file)
        key = env.get("ARCHIVE_GRPC_TLS_KEY_FILE", None, _existing_file)
        if (cert is None) != (key is None):
            missing = "ARCHIVE_GRPC_TLS_KEY_FILE" if key is None else "ARCHIVE_GRPC_TLS_CERT_FILE"
            raise ConfigError(missing, "TLS needs both a certificate and a key file")
        if environ.get("ARCHIVE_TRUST_ROOT_FILE", "").strip():
            raise ConfigError(
                "ARCHIVE_TRUST_ROOT_FILE",
                "renamed: the seal's root is ARCHIVE_SEAL_ROOT_FILE, the time-stamp "
                "authority's ARCHIVE_TSA_ROOT_FILE",
            )
        backend_ca = env.get("ARCHIVE_BACKEND_CA_FILE", None, _existing_file)
        backend_tls = env.get("ARCHIVE_BACKEND_TLS", backend_ca is not None, _flag)
        if backend_ca is not None and not backend_tls:
            raise ConfigError(
                "ARCHIVE_BACKEND_TLS", "is off, but ARCHIVE_BACKEND_CA_FILE is only used with TLS"
            )
        return cls(
            data_dir=env.get("ARCHIVE_DATA_DIR", cls.data_dir, Path),
            nats_url=env.get("ARCHIVE_NATS_URL", cls.nats_url, _nats_url),
            grpc_host=env.get("ARCHIVE_GRPC_HOST", cls.grpc_host, _host),
            grpc_port=env.get("ARCHIVE_GRPC_PORT", cls.grpc_port, _int_between(0, 65535)),
            grpc_max_message_bytes=env.get(
                "ARCHIVE_GRPC_MAX_MESSAGE_BYTES",
                cls.grpc_max_message_bytes,
                _int_between(64 * 1024, 64 * 1024 * 1024),
            ),
            grpc_tls_cert_file=cert,
            grpc_tls_key_file=key,
            backend_tls=backend_tls,
            backend_ca_file=backend_ca,
            event_store=env.get("ARCHIVE_EVENT_STORE", cls.event_store, _one_of(_EVENT_STORES)),
            nats_stream=env.get("ARCHIVE_NATS_STREAM", cls.nats_stream, _nats_token),
            nats_subject_prefix=env.get(
                "ARCHIVE_NATS_SUBJECT_PREFIX", cls.nats_subject_prefix, _nats_token
            ),
            nats_replicas=env.get("ARCHIVE_NATS_REPLICAS", cls.nats_replicas, _int_between(1, 5)),
            operator_token=operator_token,
            log_level=env.get("ARCHIVE_LOG_LEVEL", cls.log_level, _log_level),
            shutdown_grace_seconds=env.get(
                "ARCHIVE_SHUTDOWN_GRACE_SECONDS", cls.shutdown_grace_seconds, _seconds
            ),
            service_name=env.get("ARCHIVE_SERVICE_NAME", cls.service_name, _nats_token),
            traces_exporter=env.get(
                "ARCHIVE_TRACES_EXPORTER", cls.traces_exporter, _one_of(_TRACES_EXPORTERS)
            ),
            blob_store=env.get("ARCHIVE_BLOB_STORE", cls.blob_store, _one_of(_BLOB_STORES)),
            blob_dir=env.get("ARCHIVE_BLOB_DIR", None, Path),
            provider_origin=env.get("ARCHIVE_PROVIDER_ORIGIN", cls.provider_origin, _origin),
            checkpoint_max_leaves=env.get(
                "ARCHIVE_CHECKPOINT_MAX_LEAVES", cls.checkpoint_max_leaves, _int_between(1, 4000)
            ),
            checkpoint_interval_ms=env.get(
                "ARCHIVE_CHECKPOINT_INTERVAL_MS",
                cls.checkpoint_interval_ms,
                _int_between(10, 3_600_000),
            ),
            profile=env.get("ARCHIVE_PROFILE", cls.profile, _profile),
            seal_key_file=env.get("ARCHIVE_SEAL_KEY_FILE", None, _existing_file),
            seal_cert_file=env.get("ARCHIVE_SEAL_CERT_FILE", None, _existing_file),
            seal_chain_file=env.get("ARCHIVE_SEAL_CHAIN_FILE", None, _existing_file),
            seal_root_file=env.get("ARCHIVE_SEAL_ROOT_FILE", None, _existing_file),
            tsa_url=env.get("ARCHIVE_TSA_URL", cls.tsa_url, _http_url),
            tsa_root_file=env.get("ARCHIVE_TSA_ROOT_FILE", None, _existing_file),
            tsa_chain_file=env.get("ARCHIVE_TSA_CHAIN_FILE", None, _existing_file),
            tsa_ca_file=env.get("ARCHIVE_TSA_CA_FILE", None, _existing_file),
            tsa_timeout_seconds=env.get(
                "ARCHIVE_TSA_TIMEOUT_SECONDS", cls.tsa_timeout_seconds, _positive_seconds
            ),
            tsa_key_file=env.get("ARCHIVE_TSA_KEY_FILE", None, _existing_file),
            tsa_cert_file=env.get("ARCHIVE_TSA_CERT_FILE", None, _existing_file),
            audit_interval_seconds=env.get(
                "ARCHIVE_AUDIT_INTERVAL_SECONDS", cls.audit_interval_seconds, _seconds
            ),
            max_document_bytes=env.get(
                "ARCHIVE_MAX_DOCUMENT_BYTES", cls.max_document_bytes, _int_between(1, 2**42)
            ),
            max_metadata_entries=env.get(
                "ARCHIVE_MAX_METADATA_ENTRIES", cls.max_metadata_entries, _int_between(0, 1024)
            ),
            max_metadata_value_chars=env.get(
                "ARCHIVE_MAX_METADATA_VALUE_CHARS",
                cls.max_metadata_value_chars,
                _int_between(1, 65536),
            ),
        )

    @property
    def grpc_address(self) -> str:
        host = f"[{self.grpc_host}]" if ":" in self.grpc_host else self.grpc_host
        return f"{host}:{self.grpc_port}"


class _Env:
    """Reads one variable at a time and turns a parse failure into a ConfigError naming it."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str, default: T, parse: Callable[[str], T]) -> T:
        raw = self._environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        return _checked(name, raw.strip(), parse)


def _checked(name: str, raw: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(raw)
    except ConfigError:
        raise
    except (ValueError, OSError) as exc:
        raise ConfigError(name, str(exc)) from None


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _flag(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{raw!r} is not one of 1, 0, true, false")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{raw!r} is not a number of seconds") from None
    if not 0 <= value <= 3600:
        raise ValueError(f"{value} is outside 0..3600 seconds")
    return value


def _profile(raw: str) -> Profile:
    value = raw.lower()
    if value == "development":
        return "development"
    if value == "production":
        return "production"
    raise ValueError(f"{raw!r} is not one of {', '.join(_PROFILES)}")


def _positive_seconds(raw: str) -> float:
    value = _seconds(raw)
    if value <= 0:
        raise ValueError("must be more than 0 seconds")
    return value


def _one_of(choices: tuple[_Choice, ...]) -> Callable[[str], _Choice]:
    def parse(raw: str) -> _Choice:
        value = raw.lower()
        for choice in choices:
            if choice == value:
                return choice
        raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")

    return parse


def _log_level(raw: str) -> str:
    value = raw.upper()
    if value not in _LOG_LEVELS:
        raise ValueError(f"{raw!r} is not one of {', '.join(_LOG_LEVELS)}")
    return value


def _host(raw: str) -> str:
    candidate = raw.strip("[]")
    try:
        ipaddress.ip_address(candidate)
        return candidate
    except ValueError:
        pass
    labels = candidate.split(".")
    if not all(label and label.replace("-", "").isalnum() for label in labels):
        raise ValueError(f"{raw!r} is neither an IP address nor a host name")
    return candidate


def _nats_url(raw: str) -> str:
    # Several servers may be listed, comma separated, as nats-py accepts.
    for url in raw.split(","):
        scheme, sep, rest = url.strip().partition("://")
        if not sep or scheme not in ("nats", "tls", "ws", "wss") or not rest:
            raise ValueError(f"{url!r} is not a nats://host:port URL")
    return raw


def _nats_token(raw: str) -> str:
    if not raw.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"{raw!r}: use letters, digits, '_' or '-' only")
    return raw


def _operator_token(raw: str) -> Secret:
    # Never echo the value in the error: it may be a real token with a typo.
    if len(raw) < MIN_OPERATOR_TOKEN_LENGTH:
        raise ValueError(
            f"the operator token must be at least {MIN_OPERATOR_TOKEN_LENGTH} characters "
            "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if any(c.isspace() for c in raw):
        raise ValueError("the operator token must not contain whitespace")
    return Secret(raw)


def _origin(raw: str) -> str:
    # A checkpoint origin line: printable, no spaces or newlines (C2SP tlog-checkpoint).
    if not raw or any(c.isspace() or not c.isprintable() for c in raw) or raw.endswith("/"):
        raise ValueError("a name like archive.example.org, without spaces or a trailing '/'")
    return raw


def _http_url(raw: str) -> str:
    if raw and not raw.startswith(("http://", "https://")):
        raise ValueError("an http:// or https:// URL of an RFC 3161 time-stamp authority")
    return raw


def _existing_file(raw: str) -> Path:
    path = Path(raw)
    if not path.is_file():
        raise ValueError(f"{raw!r} is not a readable file")
    return path
