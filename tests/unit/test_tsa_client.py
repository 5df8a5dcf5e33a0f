"""The sealing service's time-stamping client (services/sealing/tsa_client.py): httpx against a
real HTTP endpoint on a loopback port (tests/tsa_http.py) answering with a real TSA, and the
in-process development TSA. Each error says who is at fault: unavailable, refused, invalid."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pki import ForeignTsaPki
from tsa_http import Received, Reply, serving, without_proxies

from archive.sealing.keys import DevelopmentPKI, FileSigner
from archive.sealing.timestamps import TIMESTAMP_QUERY, build_request, verify_timestamp_response
from services.sealing.dev_tsa import InProcessTsa, TimeStampAuthority
from services.sealing.tsa_client import (
    HttpTransport,
    TsaClient,
    TsaInvalidResponse,
    TsaRefused,
    TsaTrust,
    TsaUnavailable,
)

DATA = b"archive.example/tenant-a\n7\nz6LUq0dqpOJ5BoYY3VH7t4kuzxr+c6jHxTfXShSvhBM=\n"


@pytest.fixture(autouse=True)
def _no_proxy_of_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    without_proxies(monkeypatch)


@pytest.fixture(scope="module")
def foreign_tsa(foreign_tsa_pki: ForeignTsaPki) -> TimeStampAuthority:
    return TimeStampAuthority(foreign_tsa_pki.signer)


@pytest.fixture
def trust(foreign_tsa_pki: ForeignTsaPki) -> TsaTrust:
    return TsaTrust((foreign_tsa_pki.root,))


def answering(tsa: TimeStampAuthority) -> Callable[[Received], Reply]:
    def answer(received: Received) -> Reply:
        return Reply(tsa.respond(received.body))

    return answer


async def test_a_token_over_http_is_verified_against_the_tsa_root_and_keeps_its_path(
    foreign_tsa: TimeStampAuthority, foreign_tsa_pki: ForeignTsaPki, trust: TsaTrust
) -> None:
    with serving(answering(foreign_tsa)) as endpoint:
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), trust) as client:
            first = await client.timestamp(DATA)
            second = await client.timestamp(DATA + b"2")
    assert verify_timestamp_response(first.response, DATA, [foreign_tsa_pki.root]).ok
    assert first.chain == (foreign_tsa_pki.signer.certificate, foreign_tsa_pki.intermediate)
    assert first.root == foreign_tsa_pki.root
    assert second.gen_time >= first.gen_time
    (one, two) = endpoint.received
    assert (one.method, one.headers["content-type"]) == ("POST", TIMESTAMP_QUERY)
    assert one.headers["accept"] == "application/timestamp-reply"
    assert one.peer == two.peer, "the connection is kept alive between time stamps"


async def test_a_token_that_chains_to_another_root_is_invalid(
    foreign_tsa: TimeStampAuthority, pki: DevelopmentPKI
) -> None:
    with serving(answering(foreign_tsa)) as endpoint:
        seal_root = TsaTrust((pki.root_certificate,))
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), seal_root) as client:
            with pytest.raises(TsaInvalidResponse, match="chain not trusted"):
                await client.timestamp(DATA)


async def test_the_configured_chain_completes_a_token_without_intermediates(
    foreign_tsa_pki: ForeignTsaPki,
) -> None:
    """A TSA that answers with its own certificate only (certReq, no CA): the intermediate
    comes from ARCHIVE_TSA_CHAIN_FILE, and the path that validated includes it."""
    directory = foreign_tsa_pki.directory
    bare = TimeStampAuthority(FileSigner.load(directory / "tsa-key.pem", directory / "tsa.pem"))
    with serving(answering(bare)) as endpoint:
        alone = TsaTrust((foreign_tsa_pki.root,))
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), alone) as client:
            with pytest.raises(TsaInvalidResponse, match="chain not trusted"):
                await client.timestamp(DATA)
        completed = TsaTrust((foreign_tsa_pki.root,), (foreign_tsa_pki.intermediate,))
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), completed) as client:
            granted = await client.timestamp(DATA)
    assert granted.chain == (foreign_tsa_pki.signer.certificate, foreign_tsa_pki.intermediate)


async def test_a_refusal_is_tsa_refused_with_its_fail_info(
    foreign_tsa: TimeStampAuthority, trust: TsaTrust
) -> None:
    with serving(answering(foreign_tsa)) as endpoint:
        transport = HttpTransport(endpoint.url, timeout=5)
        async with TsaClient(transport, trust, policy_oid="1.2.3.4") as client:
            with pytest.raises(TsaRefused) as caught:
                await client.timestamp(DATA)
    assert caught.value.status.status == "rejection"
    assert caught.value.status.fail_info == {"unaccepted_policy"}


async def test_a_replayed_answer_is_invalid(
    foreign_tsa: TimeStampAuthority, trust: TsaTrust
) -> None:
    old = foreign_tsa.respond(build_request(DATA).der)  # genuine, but for another request
    with serving(lambda received: Reply(old)) as endpoint:
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), trust) as client:
            with pytest.raises(TsaInvalidResponse, match="nonce"):
                await client.timestamp(DATA)


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (Reply(b"<html>busy</html>", content_type="text/html"), "answered text/html"),
        (Reply(b"\x30\x03\x02\x01\x01"), "malformed TimeStampResp"),
        (Reply(b"x" * 2_000_000), "larger than"),
    ],
    ids=["html", "garbage", "huge"],
)
async def test_garbage_is_an_invalid_response(trust: TsaTrust, reply: Reply, match: str) -> None:
    with serving(lambda received: reply) as endpoint:
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), trust) as client:
            with pytest.raises(TsaInvalidResponse, match=match):
                await client.timestamp(DATA)


async def test_an_http_error_means_unavailable(trust: TsaTrust) -> None:
    with serving(lambda received: Reply(b"down", 503, "text/plain")) as endpoint:
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), trust) as client:
            with pytest.raises(TsaUnavailable, match="HTTP 503"):
                await client.timestamp(DATA)


async def test_nothing_listening_means_unavailable(trust: TsaTrust) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    async with TsaClient(HttpTransport(url, timeout=5), trust) as client:
        with pytest.raises(TsaUnavailable, match=f"127.0.0.1:{port}"):
            await client.timestamp(DATA)


async def test_no_answer_within_the_timeout_means_unavailable(trust: TsaTrust) -> None:
    released = threading.Event()

    def never(received: Received) -> Reply:
        released.wait(30)  # answers only once the test is over
        return Reply(b"", 503)

    try:
        with serving(never) as endpoint:
            async with TsaClient(HttpTransport(endpoint.url, timeout=0.3), trust) as client:
                with pytest.raises(TsaUnavailable, match=r"no answer within 0\.3 s"):
                    await client.timestamp(DATA)
            released.set()
    finally:
        released.set()


async def test_redirects_are_followed_with_the_query(
    foreign_tsa: TimeStampAuthority, trust: TsaTrust
) -> None:
    def moved(received: Received) -> Reply:
        if received.path == "/":
            return Reply(status=308, content_type="", headers={"Location": "/tsa/v2"})
        return Reply(foreign_tsa.respond(received.body))

    with serving(moved) as endpoint:
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), trust) as client:
            await client.timestamp(DATA)
    first, second = endpoint.received
    assert (second.method, second.path, second.body) == ("POST", "/tsa/v2", first.body)


async def test_the_proxy_of_the_environment_is_used(
    foreign_tsa: TimeStampAuthority, trust: TsaTrust, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY as set for the pod: the query goes to the proxy, in absolute form, for the
    TSA's host (which need not resolve here: the proxy does that)."""
    with serving(answering(foreign_tsa)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        transport = HttpTransport("http://tsa.example.invalid/stamp", timeout=5)
        async with TsaClient(transport, trust) as client:
            await client.timestamp(DATA)
    (through,) = proxy.received
    assert through.path == "http://tsa.example.invalid/stamp"


def _tls(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-issued certificate for 127.0.0.1, and that certificate as
    the CA file a client must be given to trust it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "tls.pem", directory / "tls-key.pem")
    return server, directory / "tls.pem"


async def test_https_is_verified_against_the_configured_ca(
    foreign_tsa: TimeStampAuthority, trust: TsaTrust, tmp_path: Path
) -> None:
    server_context, ca_file = _tls(tmp_path)
    with serving(answering(foreign_tsa), tls=server_context) as endpoint:
        assert endpoint.url.startswith("https://127.0.0.1:")
        transport = HttpTransport(endpoint.url, timeout=5, ca_file=ca_file)
        async with TsaClient(transport, trust) as client:
            await client.timestamp(DATA)
        # Without it, the default roots do not know this server's certificate.
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), trust) as client:
            with pytest.raises(TsaUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await client.timestamp(DATA)


async def test_the_in_process_development_tsa_goes_through_the_same_checks(
    pki: DevelopmentPKI, foreign_tsa_pki: ForeignTsaPki
) -> None:
    transport = InProcessTsa(TimeStampAuthority(pki.tsa_signer()))
    async with TsaClient(transport, TsaTrust((pki.root_certificate,))) as client:
        granted = await client.timestamp(DATA)
    assert granted.chain == (pki.tsa_signer().certificate,)
    assert granted.root == pki.root_certificate
    async with TsaClient(transport, TsaTrust((foreign_tsa_pki.root,))) as client:
        with pytest.raises(TsaInvalidResponse, match="chain not trusted"):
            await client.timestamp(DATA)


def test_only_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        HttpTransport("ftp://tsa.example/")
