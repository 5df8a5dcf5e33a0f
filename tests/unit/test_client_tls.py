"""TLS for clients, for real: the in-memory archive served over TLS by the gRPC scaffolding
every service uses (ARCHIVE_GRPC_TLS_CERT_FILE / KEY_FILE), a throwaway CA, and the SDK and
archivectl connecting with its CA file, failing clearly with another, and refusing to send a
token in clear to anything but a loopback address."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
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
from tools.archivectl import main


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


# ---- archivectl ----


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tls_env(tls_archive: InMemoryArchive, monkeypatch: pytest.MonkeyPatch) -> InMemoryArchive:
    """acme's token in the environment, nothing else ARCHIVE_* (no endpoint, no TLS)."""
    for name in list(os.environ):
        if name.startswith("ARCHIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ARCHIVE_TOKEN", tls_archive.tokens["acme"])
    return tls_archive


def test_archivectl_speaks_tls_with_its_ca_from_a_flag_the_environment_or_the_env_file(
    tls_env: InMemoryArchive,
    tls_files: TlsFiles,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    endpoint = ("--endpoint", tls_env.endpoint)
    code, out, err = run(capsys, *endpoint, "--ca-file", str(tls_files.ca), "whoami", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out)["tenant"] == "acme"
    assert run(capsys, "whoami", *endpoint, "--ca-file", str(tls_files.ca))[0] == 0  # after

    env_file = tmp_path / "archive.env"
    env_file.write_text(f"ARCHIVE_ENDPOINT={tls_env.endpoint}\nARCHIVE_CA_FILE={tls_files.ca}\n")
    assert run(capsys, "--env-file", str(env_file), "whoami")[0] == 0

    monkeypatch.setenv("ARCHIVE_CA_FILE", str(tls_files.ca))
    monkeypatch.setenv("ARCHIVE_TLS", "1")
    document = tmp_path / "a.txt"
    document.write_text("deposited over TLS")
    code, out, err = run(capsys, *endpoint, "put", str(document), "--json")
    assert code == 0, err
    copy = tmp_path / "copy.txt"
    assert run(capsys, *endpoint, "get", json.loads(out)["document_id"], "-o", str(copy))[0] == 0
    assert copy.read_text() == "deposited over TLS"


def test_archivectl_with_another_ca_or_none_exits_5_naming_the_handshake(
    tls_env: InMemoryArchive, tls_files: TlsFiles, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = ("--endpoint", tls_env.endpoint)
    code, _, err = run(capsys, *endpoint, "--ca-file", str(tls_files.other_ca), "whoami")
    assert code == 5
    assert "TLS handshake" in err and "--ca-file" in err and "CERTIFICATE_VERIFY_FAILED" in err
    code, _, err = run(capsys, *endpoint, "--tls", "whoami")  # the system's roots
    assert code == 5 and "TLS handshake" in err
    code, _, err = run(capsys, *endpoint, "--retries", "0", "whoami")  # plaintext
    assert code == 5
    code, _, err = run(capsys, *endpoint, "--ca-file", "/nonexistent/ca.pem", "whoami")
    assert code == 2 and "ARCHIVE_CA_FILE: cannot read /nonexistent/ca.pem" in err


def test_archivectl_refuses_to_send_a_token_in_clear_to_another_machine(
    tls_env: InMemoryArchive, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    token = os.environ["ARCHIVE_TOKEN"]
    remote = ("--endpoint", "archive.example.com:443")
    code, out, err = run(capsys, *remote, "whoami")
    assert code == 2 and "refusing to send a token in clear to archive.example.com:443" in err
    assert "--insecure" in err and "--tls" in err and token not in out + err
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    code, out, err = run(capsys, *remote, "put", str(tmp_path), "--json")
    assert code == 2 and out == "" and err.count("refusing") == 1  # once, before any file

    # verify is offline: no endpoint, no token, nothing to refuse.
    code, _, err = run(capsys, *remote, "verify", str(tmp_path / "a.txt"), "--evidence", "x.zip")
    assert code == 2 and "refusing" not in err and "x.zip: no such file" in err


def own_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: nothing is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


def test_archivectl_sends_a_token_in_clear_to_another_address_only_when_told(
    start_archive: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = own_address()
    if address is None:
        pytest.skip("this machine has no address other than loopback")
    archive: InMemoryArchive = start_archive(grpc_host=address)  # plaintext, off loopback
    for name in list(os.environ):
        if name.startswith("ARCHIVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ARCHIVE_ENDPOINT", archive.endpoint)
    monkeypatch.setenv("ARCHIVE_TOKEN", archive.tokens["acme"])

    code, _, err = run(capsys, "whoami")
    assert code == 2 and f"refusing to send a token in clear to {archive.endpoint}" in err
    assert archive.calls == []  # refused before connecting
    code, out, _ = run(capsys, "whoami", "--insecure", "--json")
    assert code == 0 and json.loads(out)["tenant"] == "acme"
    monkeypatch.setenv("ARCHIVE_INSECURE", "1")
    assert run(capsys, "whoami")[0] == 0
