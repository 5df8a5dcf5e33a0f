"""TLS for clients, for real: the in-memory archive served over TLS by the gRPC scaffolding
every service uses (ARCHIVE_GRPC_TLS_CERT_FILE / KEY_FILE), a throwaway CA, and the SDK and
archivectl connecting with its CA file, failing clearly with another, and refusing to send a
token in clear to anything but a loopback address."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from archive_in_memory import InMemoryArchive
from tls_certs import TlsFiles, make_tls_files

from archive.client import (
    ArchiveClient,
    ClientConfig,
    ConfigurationError,
    TlsHandshakeFailed,
    Unavailable,
    is_local_endpoint,
)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def tls_archive(start_archive: Any, tls_files: TlsFiles) -> InMemoryArchive:
    archive: InMemoryArchive = start_archive(tls=(tls_files.cert, tls_files.key, tls_files.ca))
    return archive


def config(archive: InMemoryArchive, **settings: Any) -> ClientConfig:
    return ClientConfig(
        archive.endpoint, token=archive.tokens["acme"], initial_backoff=0.001, **settings
    )


# ---- the SDK ----


async def test_the_sdk_speaks_tls_checked_against_the_ca_file(
    tls_archive: InMemoryArchive, tls_files: TlsFiles
) -> None:
    async with ArchiveClient(config(tls_archive, ca_file=tls_files.ca)) as client:
        receipt = await client.upload(b"over TLS", file_name="a.txt")
        assert await client.download_bytes(receipt.document_id) == b"over TLS"
        assert (await client.whoami()).tenant == "acme"

    environ = {
        "ARCHIVE_ENDPOINT": tls_archive.endpoint,
        "ARCHIVE_TOKEN": tls_archive.tokens["acme"],
        "ARCHIVE_CA_FILE": str(tls_files.ca),  # TLS on by itself
    }
    from_env = ClientConfig.from_env(environ)
    assert from_env.tls and from_env.ca_file == tls_files.ca
    async with ArchiveClient(from_env) as client:
        assert (await client.whoami()).tenant == "acme"


async def test_another_ca_fails_the_handshake_at_once_with_a_typed_error(
    tls_archive: InMemoryArchive, tls_files: TlsFiles
) -> None:
    async with ArchiveClient(config(tls_archive, ca_file=tls_files.other_ca)) as client:
        with pytest.raises(TlsHandshakeFailed) as caught:
            await client.whoami()
    assert isinstance(caught.value, Unavailable)
    assert caught.value.reason == "TLS_HANDSHAKE_FAILED"
    assert caught.value.attempts == 1  # not retried: it would fail the same way
    assert "ARCHIVE_CA_FILE" in str(caught.value) and "CERTIFICATE_VERIFY_FAILED" in str(
        caught.value
    )
    # The system's roots do not know a private CA either.
    async with ArchiveClient(config(tls_archive, tls=True)) as client:
        with pytest.raises(TlsHandshakeFailed):
            await client.whoami()


async def test_plaintext_and_tls_do_not_mix(
    tls_archive: InMemoryArchive, archive: InMemoryArchive, tls_files: TlsFiles
) -> None:
    async with ArchiveClient(config(tls_archive, max_attempts=1)) as client:
        with pytest.raises(Unavailable):
            await client.whoami()
    async with ArchiveClient(config(archive, ca_file=tls_files.ca)) as client:
        with pytest.raises(TlsHandshakeFailed):  # a plaintext server does not speak TLS
            await client.whoami()


async def test_no_token_goes_in_clear_to_another_machine() -> None:
    remote = ClientConfig("archive.example.com:443", token="arc_abc_secret")
    with pytest.raises(ConfigurationError, match="refusing to send a token in clear") as caught:
        async with ArchiveClient(remote):
            pass
    assert "arc_abc_secret" not in str(caught.value)
    assert "ARCHIVE_INSECURE" in str(caught.value) and "ARCHIVE_TLS" in str(caught.value)
    # Explicitly trusted, or TLS: no refusal (nothing is sent before a call).
    for accepted in (
        ClientConfig("archive.example.com:443", token="t", insecure=True),
        ClientConfig("archive.example.com:443", token="t", tls=True),
    ):
        accepted.check_token_transport()
        async with ArchiveClient(accepted):
            pass


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("localhost:50051", True),
        ("LOCALHOST:1", True),
        ("archive.localhost:1", True),
        ("127.0.0.1:50051", True),
        ("127.8.9.10:1", True),
        ("[::1]:50051", True),
        ("unix:/run/archive.sock", True),
        ("dns:///localhost:50051", True),
        ("ipv4:127.0.0.1:1", True),
        ("10.0.0.5:50051", False),
        ("[2001:db8::1]:443", False),
        ("archive.example.com:443", False),
        ("dns:///archive.example.com:443", False),
        ("localhost.example.com:1", False),
        ("0.0.0.0:50051", False),
    ],
)
def test_what_counts_as_loopback(target: str, local: bool) -> None:
    assert is_local_endpoint(target) is local


def test_tls_settings_from_the_environment_and_the_env_file(
    tls_files: TlsFiles, tmp_path: Path
) -> None:
    base = {"ARCHIVE_ENDPOINT": "archive.example.com:443"}
    assert ClientConfig.from_env(base).tls is False
    assert ClientConfig.from_env({**base, "ARCHIVE_TLS": "1"}).tls is True
    assert ClientConfig.from_env({**base, "ARCHIVE_INSECURE": "true"}).insecure is True
    env_file = tmp_path / "archive.env"
    env_file.write_text(f"ARCHIVE_TLS=1\nARCHIVE_CA_FILE={tls_files.ca}\n")
    from_file = ClientConfig.from_env(base, env_file)
    assert from_file.tls and from_file.ca_file == tls_files.ca
    with pytest.raises(ConfigurationError, match="ARCHIVE_TLS: expected 1 or 0"):
        ClientConfig.from_env({**base, "ARCHIVE_TLS": "maybe"})
    with pytest.raises(ConfigurationError, match="only used with TLS"):
        ClientConfig.from_env({**base, "ARCHIVE_TLS": "0", "ARCHIVE_CA_FILE": str(tls_files.ca)})
    with pytest.raises(ConfigurationError, match="ARCHIVE_CA_FILE: cannot read"):
        ClientConfig.from_env({**base, "ARCHIVE_CA_FILE": str(tmp_path / "missing.pem")})
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    with pytest.raises(ConfigurationError, match="holds no PEM certificate"):
        ClientConfig("x:1", ca_file=not_pem)
