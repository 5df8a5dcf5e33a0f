"""Tenancy without gRPC: tokens, commands over the in-memory store, the registry, settings."""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path

import pytest
from waiting import eventually

from archive.config import MIN_OPERATOR_TOKEN_LENGTH, ConfigError, Secret, Settings
from archive.eventstore import ANY, SYSTEM_TENANT, NewEvent, StreamFilter, StreamName
from archive.eventstore.memory import InMemoryEventStore
from archive.telemetry import capture_spans, in_memory_tracer_provider
from archive.tenancy import (
    InvalidTenancyArgument,
    InvalidTenantName,
    Principal,
    TenantAlreadyExists,
    TenantNotFound,
    TenantRegistry,
    TokenCheck,
    TokenNotFound,
    create_tenant,
    issue_token,
    revoke_token,
    tenant_stream,
)
from archive.tenancy.roles import FIRST_TOKEN_ROLES, LEGACY_ROLES
from archive.tenancy.tokens import (
    digest_matches,
    generate_token,
    hash_token,
    is_valid_token_id,
    token_id_of,
)
from archive.v1.events_pb2 import TenantCreated, TenantTokenIssued, TenantTokenRevoked

GOOD_OPERATOR_TOKEN = "operator-token-" + "x" * MIN_OPERATOR_TOKEN_LENGTH

# ---- tokens ----


def test_generated_token_has_the_documented_shape() -> None:
    generated = generate_token()
    token = generated.token.reveal()
    match = re.fullmatch(r"arc_([a-z0-9]{12})_([A-Za-z0-9_-]+)", token)
    assert match is not None
    assert match.group(1) == generated.token_id
    assert len(match.group(2)) >= 43  # 32 random bytes, url-safe base64
    assert generated.sha256 == hash_token(token)
    assert token_id_of(token) == generated.token_id
    assert is_valid_token_id(generated.token_id)
    assert repr(generated.token) == "***" and token not in repr(generated)


def test_tokens_are_unique_and_checked_against_their_hash() -> None:
    tokens = {generate_token().token.reveal() for _ in range(200)}
    assert len(tokens) == 200
    token = tokens.pop()
    assert digest_matches(token, hash_token(token))
    assert not digest_matches(token + "x", hash_token(token))


@pytest.mark.parametrize(
    "garbage", ["", "arc_", "Bearer x", "arc_short_secret", "arc_ABCDEFGHIJKL_" + "a" * 43]
)
def test_malformed_tokens_have_no_token_id(garbage: str) -> None:
    assert token_id_of(garbage) is None


# ---- commands ----


async def test_create_tenant_appends_created_and_first_token_without_the_secret() -> None:
    store = InMemoryEventStore()
    created = await create_tenant(store, "acme", "ACME Corp", correlation_id="corr-123456")
    token = created.token.token.reveal()

    events = [e async for e in store.read_stream(tenant_stream("acme"))]
    assert [e.type for e in events] == [
        TenantCreated.DESCRIPTOR.full_name,
        TenantTokenIssued.DESCRIPTOR.full_name,
    ]
    assert events[0].stream.tenant == SYSTEM_TENANT
    issued = TenantTokenIssued.FromString(events[1].data)
    assert issued.token_id == created.token.token_id
    assert issued.token_sha256 == hash_token(token)
    assert events[1].correlation_id == "corr-123456"
    assert events[1].metadata["actor"] == "operator"
    for event in events:
        assert token.encode() not in event.data
        assert token not in repr(event)


async def test_second_create_fails_typed_and_appends_nothing() -> None:
    store = InMemoryEventStore()
    await create_tenant(store, "acme")
    before = await store.last_position()
    with pytest.raises(TenantAlreadyExists):
        await create_tenant(store, "acme")
    assert await store.last_position() == before


@pytest.mark.parametrize("name", ["Bad Name", "../x", "", "_system", "a" * 64, "-lead", "a.b"])
async def test_invalid_tenant_name_is_refused_before_any_append(name: str) -> None:
    store = InMemoryEventStore()
    with pytest.raises(InvalidTenantName) as caught:
        await create_tenant(store, name)
    assert caught.value.field_violations[0][0] == "tenant.value"
    assert await store.last_position() == 0


async def test_overlong_description_is_an_invalid_argument() -> None:
    store = InMemoryEventStore()
    await create_tenant(store, "acme")
    with pytest.raises(InvalidTenancyArgument) as caught:
        await issue_token(store, "acme", "d" * 1000)
    assert caught.value.field_violations[0][0] == "description"


async def test_issue_and_revoke_on_unknown_tenant_or_token() -> None:
    store = InMemoryEventStore()
    with pytest.raises(TenantNotFound):
        await issue_token(store, "ghost")
    with pytest.raises(TenantNotFound):
        await revoke_token(store, "ghost", "abcdefghijkl")
    await create_tenant(store, "acme")
    with pytest.raises(TokenNotFound):
        await revoke_token(store, "acme", "abcdefghijkl")
    with pytest.raises(TokenNotFound):
        await revoke_token(store, "acme", "not a token id")


async def test_revoke_is_idempotent() -> None:
    store = InMemoryEventStore()
    created = await create_tenant(store, "acme")
    assert await revoke_token(store, "acme", created.token.token_id) is True
    position = await store.last_position()
    assert await revoke_token(store, "acme", created.token.token_id) is False
    assert await store.last_position() == position
    last = [e async for e in store.read_stream(tenant_stream("acme"))][-1]
    assert TenantTokenRevoked.FromString(last.data).token_id == created.token.token_id


async def test_concurrent_issues_all_land() -> None:
    store = InMemoryEventStore()
    await create_tenant(store, "acme")
    issued = await asyncio.gather(*(issue_token(store, "acme", f"t{i}") for i in range(10)))
    assert len({t.token_id for t in issued}) == 10
    versions = [e.version async for e in store.read_stream(tenant_stream("acme"))]
    assert versions == list(range(12))


# ---- registry ----


async def test_registry_authenticates_issued_tokens_and_refuses_the_rest() -> None:
    store = InMemoryEventStore()
    registry = TenantRegistry(store)
    await registry.start()
    try:
        created = await create_tenant(store, "acme")
        token = created.token.token.reveal()
        assert (await registry.verify(token)).principal == Principal(
            "acme", created.token.token_id, FIRST_TOKEN_ROLES
        )

        # Right id, wrong secret: unknown, and says nothing about the id existing.
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        assert (await registry.verify(forged)).check is TokenCheck.UNKNOWN
        assert (await registry.verify("arc_zzzzzzzzzzzz_" + "a" * 43)).check is TokenCheck.UNKNOWN
        assert (await registry.verify("hello")).check is TokenCheck.MALFORMED
    finally:
        await registry.stop()


async def test_registry_reads_its_writes_without_following() -> None:
    """A registry that is not following (or lags) catches up on a miss before saying no."""
    store = InMemoryEventStore()
    registry = TenantRegistry(store)  # never started: only catch-ups feed it
    created = await create_tenant(store, "acme")
    assert (await registry.verify(created.token.token.reveal())).principal is not None
    second = await issue_token(store, "acme")
    assert (await registry.verify(second.token.reveal())).principal is not None


async def test_registry_applies_revocations_and_rebuilds_from_events() -> None:
    store = InMemoryEventStore()
    registry = TenantRegistry(store)
    await registry.start()
    try:
        created = await create_tenant(store, "acme")
        kept = await issue_token(store, "acme", "kept")
        token = created.token.token.reveal()
        assert (await registry.verify(token)).principal is not None
        await revoke_token(store, "acme", created.token.token_id)

        async def revoked() -> bool:
            return (await registry.verify(token)).check is TokenCheck.REVOKED

        # The follower applies it in the background.
        await eventually(revoked, what="the revocation to arrive")
    finally:
        await registry.stop()

    rebuilt = TenantRegistry(store)
    await rebuilt.start()
    try:
        assert rebuilt.position == await store.last_position()
        assert (await rebuilt.verify(token)).check is TokenCheck.REVOKED
        assert (await rebuilt.verify(kept.token.reveal())).principal == Principal(
            "acme", kept.token_id, LEGACY_ROLES
        )
    finally:
        await rebuilt.stop()


async def test_registry_ignores_other_streams() -> None:
    store = InMemoryEventStore()
    await store.append(StreamName("acme", "document", "d1"), [NewEvent("x.Y", b"")], ANY)
    registry = TenantRegistry(store)
    await registry.catch_up()
    assert registry.position == 1
    assert StreamFilter(tenant=SYSTEM_TENANT).matches(tenant_stream("acme"))


async def test_misses_arriving_together_share_a_catch_up() -> None:
    store = InMemoryEventStore()
    calls = 0
    original = store.last_position

    async def counting_last_position() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return await original()

    store.last_position = counting_last_position  # type: ignore[method-assign]
    registry = TenantRegistry(store)
    unknown = [f"arc_{i:012d}_{'a' * 43}" for i in range(20)]
    results = await asyncio.gather(*(registry.verify(t) for t in unknown))
    assert all(r.check is TokenCheck.UNKNOWN for r in results)
    assert calls <= 3  # not 20


# ---- settings ----


def test_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.data_dir == Path("./var")
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.event_store == "jetstream"
    assert settings.operator_token is None
    assert settings.grpc_address == "127.0.0.1:50051"


def test_settings_from_env_and_secret_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_env(
        {
            "ARCHIVE_DATA_DIR": "/srv/archive",
            "ARCHIVE_NATS_URL": "nats://nats:4222",
            "ARCHIVE_GRPC_HOST": "0.0.0.0",
            "ARCHIVE_GRPC_PORT": "6000",
            "ARCHIVE_EVENT_STORE": "memory",
            "ARCHIVE_OPERATOR_TOKEN": GOOD_OPERATOR_TOKEN,
            "ARCHIVE_LOG_LEVEL": "debug",
            "ARCHIVE_SHUTDOWN_GRACE_SECONDS": "2.5",
        }
    )
    assert settings.data_dir == Path("/srv/archive")
    assert settings.grpc_port == 6000 and settings.grpc_host == "0.0.0.0"
    assert settings.event_store == "memory"
    assert settings.log_level == "DEBUG"
    assert settings.shutdown_grace_seconds == 2.5
    assert settings.operator_token is not None
    assert settings.operator_token.matches(GOOD_OPERATOR_TOKEN)
    assert not settings.operator_token.matches(GOOD_OPERATOR_TOKEN + "!")
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s %r", settings, settings)
        logging.getLogger("test").info(f"token {settings.operator_token}")
    for shown in (repr(settings), str(settings), caplog.text, f"{settings.operator_token}"):
        assert GOOD_OPERATOR_TOKEN not in shown
    assert "operator_token=***" in repr(settings)


def test_tls_needs_both_files() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ARCHIVE_GRPC_TLS_CERT_FILE": __file__})
    assert caught.value.variable == "ARCHIVE_GRPC_TLS_KEY_FILE"


def test_operator_token_from_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(GOOD_OPERATOR_TOKEN + "\n")
    settings = Settings.from_env({"ARCHIVE_OPERATOR_TOKEN_FILE": str(path)})
    assert settings.operator_token == Secret(GOOD_OPERATOR_TOKEN)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ARCHIVE_GRPC_PORT", "http"),
        ("ARCHIVE_GRPC_PORT", "70000"),
        ("ARCHIVE_GRPC_HOST", "not a host!"),
        ("ARCHIVE_EVENT_STORE", "postgres"),
        ("ARCHIVE_NATS_URL", "http://nats:4222"),
        ("ARCHIVE_LOG_LEVEL", "LOUD"),
        ("ARCHIVE_SHUTDOWN_GRACE_SECONDS", "-1"),
        ("ARCHIVE_SHUTDOWN_GRACE_SECONDS", "soon"),
        ("ARCHIVE_OPERATOR_TOKEN", "short-secret"),
        ("ARCHIVE_OPERATOR_TOKEN_FILE", "/nonexistent/token"),
        ("ARCHIVE_TRACES_EXPORTER", "jaeger"),
    ],
)
def test_invalid_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    if variable == "ARCHIVE_OPERATOR_TOKEN":
        assert value not in str(caught.value)  # never echo a secret, even a bad one


def test_secret_does_not_pickle() -> None:
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(Secret("x" * 30))


# ---- telemetry helpers ----


def test_in_memory_tracing_helpers() -> None:
    provider, exporter = in_memory_tracer_provider()
    with provider.get_tracer("t").start_as_current_span("isolated"):
        pass
    assert [s.name for s in exporter.get_finished_spans()] == ["isolated"]

    from opentelemetry import trace

    with capture_spans() as spans:
        with trace.get_tracer("t").start_as_current_span("global"):
            pass
    assert "global" in [s.name for s in spans.get_finished_spans()]
