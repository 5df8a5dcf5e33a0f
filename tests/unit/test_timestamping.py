"""RFC 3161 requests, the built-in TSA, its HTTP server and the client, verified in Python
(openssl cross-checks are in tests/integration/test_openssl_interop.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from archive.sealing.keys import DevelopmentPKI
from archive.sealing.timestamping import (
    DEFAULT_POLICY_OID,
    TIMESTAMP_QUERY,
    TimeStampAuthority,
    TimeStampResp,
    TsaClient,
    TsaHttpServer,
    TsaInvalidResponse,
    TsaRefused,
    TsaUnavailable,
    build_request,
    response_token,
    verify_timestamp_response,
    verify_timestamp_token,
)

DATA = b"archive.example/tenant-a\n7\nz6LUq0dqpOJ5BoYY3VH7t4kuzxr+c6jHxTfXShSvhBM=\n"
FIXED = dt.datetime(2031, 3, 4, 5, 6, 7, 891234, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentPKI:
    return DevelopmentPKI.ensure(tmp_path_factory.mktemp("pki") / "certs")


@pytest.fixture(scope="module")
def tsa(pki: DevelopmentPKI) -> TimeStampAuthority:
    return TimeStampAuthority(pki.tsa_signer())


@pytest.fixture
async def server(tsa: TimeStampAuthority) -> AsyncIterator[TsaHttpServer]:
    async with TsaHttpServer(tsa, "127.0.0.1", 0) as running:
        yield running


def _status(response: bytes) -> tuple[str, set[str] | None]:
    status = TimeStampResp.load(response)["status"]
    return status["status"].native, status["fail_info"].native


def _tst(response: bytes) -> tsp.TSTInfo:
    token = TimeStampResp.load(response)["time_stamp_token"]
    return token["content"]["encap_content_info"]["content"].parsed


# --- requests and the TSA --------------------------------------------------------------------


def test_request_carries_sha256_imprint_nonce_and_cert_req() -> None:
    request = build_request(DATA)
    parsed = tsp.TimeStampReq.load(request.der)
    assert parsed["version"].native == "v1"
    assert parsed["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert parsed["message_imprint"]["hashed_message"].native == hashlib.sha256(DATA).digest()
    assert parsed["nonce"].native == request.nonce and request.nonce
    assert parsed["cert_req"].native is True
    assert build_request(DATA).nonce != request.nonce


def test_tsa_grants_a_token_that_verifies(pki: DevelopmentPKI) -> None:
    tsa = TimeStampAuthority(pki.tsa_signer(), clock=lambda: FIXED)
    request = build_request(DATA)
    response = tsa.respond(request.der)
    assert _status(response) == ("granted", None)
    result = verify_timestamp_response(
        response, DATA, [pki.root_certificate], nonce=request.nonce, policy=DEFAULT_POLICY_OID
    )
    assert result.ok, result.reason
    assert result.gen_time == FIXED.replace(microsecond=891000)
    assert result.policy == DEFAULT_POLICY_OID and result.nonce == request.nonce
    assert result.tsa_subject == pki.tsa_signer().certificate.subject.rfc4514_string()
    tst = _tst(response)
    assert tst["accuracy"]["seconds"].native == 1
    assert tst["tsa"].chosen.native == {
        "organization_name": "Trusted Archive (development)",
        "common_name": "Trusted Archive (development) Time-Stamping Unit",
    }
    # The bare token verifies the same way.
    token = verify_timestamp_token(response_token(response), DATA, [pki.root_certificate])
    assert token.ok and token.serial_number == result.serial_number


def test_serial_numbers_are_unique_and_increasing(tsa: TimeStampAuthority) -> None:
    serials = [_tst(tsa.respond(build_request(DATA).der))["serial_number"].native for _ in range(5)]
    assert serials == sorted(set(serials))


def test_tampered_data_wrong_nonce_or_policy_fail(
    tsa: TimeStampAuthority, pki: DevelopmentPKI
) -> None:
    request = build_request(DATA)
    response = tsa.respond(request.der)
    roots = [pki.root_certificate]
    bad = verify_timestamp_response(response, DATA + b"!", roots)
    assert not bad.ok and "imprint" in (bad.reason or "")
    bad = verify_timestamp_response(response, DATA, roots, nonce=(request.nonce or 0) + 1)
    assert not bad.ok and "nonce" in (bad.reason or "")
    bad = verify_timestamp_response(response, DATA, roots, policy="1.2.3")
    assert not bad.ok and "policy" in (bad.reason or "")
    tampered = bytearray(response)
    tampered[-1] ^= 0x01  # inside the signature value
    bad = verify_timestamp_response(bytes(tampered), DATA, roots)
    assert not bad.ok and "signature" in (bad.reason or "")


def test_untrusted_root_and_time_outside_validity_fail(pki: DevelopmentPKI, tmp_path: Path) -> None:
    other = DevelopmentPKI.ensure(tmp_path / "other")
    response = TimeStampAuthority(pki.tsa_signer()).respond(build_request(DATA).der)
    bad = verify_timestamp_response(response, DATA, [other.root_certificate])
    assert not bad.ok and "chain" in (bad.reason or "")
    assert not verify_timestamp_response(response, DATA, []).ok

    # A genTime before the certificate existed cannot be vouched for.
    early = TimeStampAuthority(
        pki.tsa_signer(), clock=lambda: dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    )
    bad = verify_timestamp_response(
        early.respond(build_request(DATA).der), DATA, [pki.root_certificate]
    )
    assert not bad.ok and "not valid" in (bad.reason or "")


def test_without_cert_req_the_certificate_must_be_supplied(
    tsa: TimeStampAuthority, pki: DevelopmentPKI
) -> None:
    response = tsa.respond(build_request(DATA, cert_req=False).der)
    signed = TimeStampResp.load(response)["time_stamp_token"]["content"]
    assert signed["certificates"].native is None
    roots = [pki.root_certificate]
    assert "not found" in (verify_timestamp_response(response, DATA, roots).reason or "")
    tsa_cert = pki.tsa_signer().certificate
    assert verify_timestamp_response(response, DATA, roots, untrusted=[tsa_cert]).ok


def test_request_without_nonce_gets_a_token_without_nonce(
    tsa: TimeStampAuthority, pki: DevelopmentPKI
) -> None:
    response = tsa.respond(build_request(DATA, use_nonce=False).der)
    assert _tst(response)["nonce"].native is None
    assert verify_timestamp_response(response, DATA, [pki.root_certificate]).ok


def _request_with(hash_algorithm: str, digest: bytes, **extra: object) -> bytes:
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": hash_algorithm},
            "hashed_message": digest,
        },
        **extra,
    }
    return tsp.TimeStampReq(fields).dump()


@pytest.mark.parametrize(
    ("request_der", "fail_info"),
    [
        (_request_with("sha1", hashlib.sha1(DATA).digest()), "bad_alg"),
        (_request_with("md5", hashlib.md5(DATA).digest()), "bad_alg"),
        (_request_with("sha256", b"short"), "bad_data_format"),
        (
            _request_with("sha256", hashlib.sha256(DATA).digest(), req_policy="1.2.3.4"),
            "unaccepted_policy",
        ),
        (b"\x30\x03\x02\x01\x01", "bad_data_format"),
        (b"GET / HTTP/1.1\r\n", "bad_data_format"),
        (b"", "bad_data_format"),
        (build_request(DATA).der + b"\x00", "bad_data_format"),
    ],
)
def test_bad_requests_are_rejected_with_a_fail_info(
    tsa: TimeStampAuthority, request_der: bytes, fail_info: str
) -> None:
    assert _status(tsa.respond(request_der)) == ("rejection", {fail_info})
    bad = verify_timestamp_response(tsa.respond(request_der), DATA, [])
    assert not bad.ok and fail_info in (bad.reason or "")


def test_sha512_imprint_is_accepted(tsa: TimeStampAuthority, pki: DevelopmentPKI) -> None:
    response = tsa.respond(_request_with("sha512", hashlib.sha512(DATA).digest(), cert_req=True))
    assert verify_timestamp_response(response, DATA, [pki.root_certificate]).ok


def test_tsa_refuses_a_certificate_without_timestamping_usage(pki: DevelopmentPKI) -> None:
    with pytest.raises(ValueError, match="extended key usage"):
        TimeStampAuthority(pki.seal_signer())


# --- HTTP ------------------------------------------------------------------------------------


async def _raw_http(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def _post(body: bytes, content_type: str = TIMESTAMP_QUERY, method: str = "POST") -> bytes:
    return (
        f"{method} /tsa HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def test_client_gets_a_verified_token_over_http(
    server: TsaHttpServer, pki: DevelopmentPKI
) -> None:
    client = TsaClient(server.url, timeout=5, trusted_roots=[pki.root_certificate])
    response = await client.timestamp(DATA)
    result = verify_timestamp_response(response, DATA, [pki.root_certificate])
    assert result.ok, result.reason
    assert result.nonce is not None


async def test_server_answers_the_standard_media_types(
    server: TsaHttpServer, pki: DevelopmentPKI
) -> None:
    request = build_request(DATA)
    status, headers, body = await _raw_http(server.url, _post(request.der))
    assert status == 200 and headers["content-type"] == "application/timestamp-reply"
    assert verify_timestamp_response(body, DATA, [pki.root_certificate], nonce=request.nonce).ok

    status, _, _ = await _raw_http(server.url, _post(request.der, "application/octet-stream"))
    assert status == 415
    status, headers, _ = await _raw_http(server.url, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405 and headers["allow"] == "POST"
    status, _, _ = await _raw_http(
        server.url, b"POST / HTTP/1.1\r\nContent-Type: application/timestamp-query\r\n\r\n"
    )
    assert status == 411
    status, _, _ = await _raw_http(server.url, _post(b"x" * 20_000))
    assert status == 413
    # A malformed query still gets a proper RFC 3161 rejection, not an HTTP error.
    status, _, body = await _raw_http(server.url, _post(b"junk"))
    assert status == 200 and _status(body) == ("rejection", {"bad_data_format"})


async def test_client_raises_unavailable_when_nothing_listens(pki: DevelopmentPKI) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = TsaClient(f"http://127.0.0.1:{port}/", timeout=2, trusted_roots=[pki.root_certificate])
    with pytest.raises(TsaUnavailable):
        await client.timestamp(DATA)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _fake_server(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"


async def _read_query(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return await reader.readexactly(length)


async def test_client_raises_unavailable_after_timeout(pki: DevelopmentPKI) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts, never answers
        writer.close()

    server, url = await _fake_server(silent)
    async with server:
        client = TsaClient(url, timeout=0.3, trusted_roots=[pki.root_certificate])
        with pytest.raises(TsaUnavailable, match="no answer"):
            await client.timestamp(DATA)


async def test_client_raises_unavailable_on_http_errors(pki: DevelopmentPKI) -> None:
    async def failing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_query(reader)
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await _fake_server(failing)
    async with server:
        with pytest.raises(TsaUnavailable, match="503"):
            await TsaClient(url, timeout=2, trusted_roots=[pki.root_certificate]).timestamp(DATA)


async def test_client_reads_chunked_replies(tsa: TimeStampAuthority, pki: DevelopmentPKI) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reply = tsa.respond(await _read_query(reader))
        chunks = [reply[:100], reply[100:]]
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
            + b"0\r\n\r\n"
        )
        await writer.drain()
        writer.close()

    server, url = await _fake_server(chunked)
    async with server:
        response = await TsaClient(url, timeout=2, trusted_roots=[pki.root_certificate]).timestamp(
            DATA
        )
    assert verify_timestamp_response(response, DATA, [pki.root_certificate]).ok


async def test_client_rejects_a_replayed_or_foreign_answer(
    tsa: TimeStampAuthority, pki: DevelopmentPKI, tmp_path: Path
) -> None:
    old = tsa.respond(build_request(DATA).der)  # a genuine token, but for another request

    async def replaying(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_query(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(old), old)
        )
        await writer.drain()
        writer.close()

    server, url = await _fake_server(replaying)
    async with server:
        client = TsaClient(url, timeout=2, trusted_roots=[pki.root_certificate])
        with pytest.raises(TsaInvalidResponse, match="nonce"):
            await client.timestamp(DATA)

    async with TsaHttpServer(tsa) as real:
        other = DevelopmentPKI.ensure(tmp_path / "other")
        client = TsaClient(real.url, timeout=2, trusted_roots=[other.root_certificate])
        with pytest.raises(TsaInvalidResponse, match="chain"):
            await client.timestamp(DATA)


async def test_client_raises_refused_on_rejection(
    server: TsaHttpServer, pki: DevelopmentPKI
) -> None:
    client = TsaClient(
        server.url, timeout=2, trusted_roots=[pki.root_certificate], policy_oid="1.2.3.4"
    )
    with pytest.raises(TsaRefused) as caught:
        await client.timestamp(DATA)
    assert caught.value.status == "rejection"
    assert caught.value.fail_info == {"unaccepted_policy"}


def test_client_rejects_other_url_schemes() -> None:
    with pytest.raises(ValueError):
        TsaClient("ftp://tsa.example/", timeout=1, trusted_roots=[])


def _tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server context with a self-issued certificate for 127.0.0.1, client context trusting it."""
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
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "tls.pem").write_bytes(cert_pem)
    (tmp_path / "tls-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "tls.pem", tmp_path / "tls-key.pem")
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


async def test_client_speaks_https(
    tsa: TimeStampAuthority, pki: DevelopmentPKI, tmp_path: Path
) -> None:
    server_context, client_context = _tls_contexts(tmp_path)
    async with TsaHttpServer(tsa, ssl_context=server_context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        client = TsaClient(
            server.url, timeout=5, trusted_roots=[pki.root_certificate], ssl_context=client_context
        )
        response = await client.timestamp(DATA)
        assert verify_timestamp_response(response, DATA, [pki.root_certificate]).ok
        # The default trust store does not know this server certificate.
        with pytest.raises(TsaUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await TsaClient(server.url, timeout=5, trusted_roots=None).timestamp(DATA)
