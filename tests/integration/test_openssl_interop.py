"""Seals and time stamps checked by an independent implementation: the openssl command line, the
exact commands an evidence bundle's reader runs, and OpenSSL acting as the TSA for our verifier."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from pki import openssl
from tsa_http import Received, Reply, serving, without_proxies

from archive.sealing.cms import seal_detached, verify_detached
from archive.sealing.keys import DevelopmentPKI, FileSigner
from archive.sealing.timestamps import (
    build_request,
    response_token,
    verify_timestamp_response,
    verify_timestamp_token,
)
from services.sealing.dev_tsa import DEFAULT_POLICY_OID, TimeStampAuthority
from services.sealing.tsa_client import HttpTransport, TsaClient, TsaTrust

# openssl is a dependency of the suite: a missing one fails these tests (tests/pki.py), it
# does not skip them.
pytestmark = pytest.mark.integration

CHECKPOINT = b"archive.example/tenant-a\n1024\nqUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc=\n"


def cms_verify(p7s: Path, content: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-in", p7s, "-content", content,
        "-CAfile", root, "-purpose", "any", "-out", p7s.with_suffix(".out"),
    )  # fmt: skip


def ts_verify(data: Path, tsr: Path, certs: Path) -> subprocess.CompletedProcess[str]:
    return openssl(
        "ts", "-verify", "-data", data, "-in", tsr,
        "-CAfile", certs / "root.pem", "-untrusted", certs / "tsa-chain.pem",
    )  # fmt: skip


# --- seals -----------------------------------------------------------------------------------


def test_openssl_verifies_our_seal_and_rejects_tampering(
    pki: DevelopmentPKI, tmp_path: Path
) -> None:
    root = pki.directory / "root.pem"
    content = tmp_path / "checkpoint.txt"
    content.write_bytes(CHECKPOINT)
    signature = seal_detached(CHECKPOINT, pki.seal_signer())
    p7s = tmp_path / "checkpoint.p7s"
    p7s.write_bytes(signature)

    done = cms_verify(p7s, content, root)
    assert done.returncode == 0, done.stderr
    assert "Verification successful" in done.stderr
    assert verify_detached(signature, CHECKPOINT, [pki.root_certificate]).ok

    changed = bytearray(CHECKPOINT)
    changed[10] ^= 0x20
    content.write_bytes(changed)
    assert cms_verify(p7s, content, root).returncode != 0
    assert not verify_detached(signature, bytes(changed), [pki.root_certificate]).ok

    content.write_bytes(CHECKPOINT)
    tampered = bytearray(signature)
    tampered[-1] ^= 0x01  # last byte of the signature value
    p7s.write_bytes(tampered)
    assert cms_verify(p7s, content, root).returncode != 0
    assert not verify_detached(bytes(tampered), CHECKPOINT, [pki.root_certificate]).ok

    other = DevelopmentPKI.ensure(tmp_path / "other")
    p7s.write_bytes(signature)
    assert cms_verify(p7s, content, other.directory / "root.pem").returncode != 0


def test_openssl_sees_the_cades_signed_attributes(pki: DevelopmentPKI, tmp_path: Path) -> None:
    p7s = tmp_path / "checkpoint.p7s"
    p7s.write_bytes(seal_detached(CHECKPOINT, pki.seal_signer()))
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", p7s)
    assert printed.returncode == 0, printed.stderr
    for name in ("contentType", "messageDigest", "signingTime", "signingCertificateV2"):
        assert name in printed.stdout
    assert "eContent: <ABSENT>" in printed.stdout  # detached


def test_openssl_verifies_an_rsa_seal(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RSA self-issued seal")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "root.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "c.txt").write_bytes(CHECKPOINT)
    (tmp_path / "c.p7s").write_bytes(seal_detached(CHECKPOINT, FileSigner(key, cert)))
    done = cms_verify(tmp_path / "c.p7s", tmp_path / "c.txt", tmp_path / "root.pem")
    assert done.returncode == 0, done.stderr


# --- time stamps -----------------------------------------------------------------------------


async def test_token_from_our_tsa_over_http_verifies_with_openssl(
    pki: DevelopmentPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_proxies(monkeypatch)
    data = tmp_path / "checkpoint.txt"
    data.write_bytes(CHECKPOINT)
    tsa = TimeStampAuthority(pki.tsa_signer())

    def answer(received: Received) -> Reply:
        return Reply(tsa.respond(received.body))

    with serving(answer) as endpoint:
        trust = TsaTrust((pki.root_certificate,))
        async with TsaClient(HttpTransport(endpoint.url, timeout=5), trust) as client:
            response = (await client.timestamp(CHECKPOINT)).response
    tsr = tmp_path / "checkpoint.tsr"
    tsr.write_bytes(response)

    done = ts_verify(data, tsr, pki.directory)
    assert done.returncode == 0, done.stderr
    assert "Verification: OK" in done.stdout
    ours = verify_timestamp_response(response, CHECKPOINT, [pki.root_certificate])
    assert ours.ok, ours.reason

    text = openssl("ts", "-reply", "-in", tsr, "-text")
    assert text.returncode == 0, text.stderr
    assert f"Policy OID: {DEFAULT_POLICY_OID}" in text.stdout
    assert f"Nonce: 0x{ours.nonce:X}" in text.stdout
    assert "Status: Granted." in text.stdout

    data.write_bytes(CHECKPOINT + b"\n")
    assert ts_verify(data, tsr, pki.directory).returncode != 0
    assert not verify_timestamp_response(response, CHECKPOINT + b"\n", [pki.root_certificate]).ok


@pytest.mark.parametrize("cert_req", [True, False])
def test_openssl_made_query_answered_by_our_tsa(
    pki: DevelopmentPKI, tmp_path: Path, cert_req: bool
) -> None:
    data = tmp_path / "checkpoint.txt"
    data.write_bytes(CHECKPOINT)
    query = tmp_path / "q.tsq"
    args: list[str | Path] = ["ts", "-query", "-data", data, "-sha256", "-out", query]
    made = openssl(*args, *(["-cert"] if cert_req else []))
    assert made.returncode == 0, made.stderr
    tsr = tmp_path / "r.tsr"
    tsr.write_bytes(TimeStampAuthority(pki.tsa_signer()).respond(query.read_bytes()))

    done = ts_verify(data, tsr, pki.directory)
    assert done.returncode == 0, done.stderr
    # Against the query itself: openssl also checks the nonce and the imprint algorithm.
    by_query = openssl(
        "ts", "-verify", "-queryfile", query, "-in", tsr, "-CAfile", pki.directory / "root.pem",
        "-untrusted", pki.directory / "tsa-chain.pem",
    )  # fmt: skip
    assert by_query.returncode == 0, by_query.stderr
    tsa_cert = pki.tsa_signer().certificate
    assert verify_timestamp_response(
        tsr.read_bytes(), CHECKPOINT, [pki.root_certificate], untrusted=[tsa_cert]
    ).ok


def test_openssl_rejects_what_our_tsa_refuses(pki: DevelopmentPKI, tmp_path: Path) -> None:
    data = tmp_path / "checkpoint.txt"
    data.write_bytes(CHECKPOINT)
    query = tmp_path / "q.tsq"
    assert openssl("ts", "-query", "-data", data, "-sha1", "-out", query).returncode == 0
    tsr = tmp_path / "r.tsr"
    tsr.write_bytes(TimeStampAuthority(pki.tsa_signer()).respond(query.read_bytes()))
    text = openssl("ts", "-reply", "-in", tsr, "-text")
    assert text.returncode == 0, text.stderr
    assert "Status: Rejected." in text.stdout
    assert "unrecognized or unsupported algorithm identifier" in text.stdout
    assert ts_verify(data, tsr, pki.directory).returncode != 0


def test_bare_token_verifies_with_openssl(pki: DevelopmentPKI, tmp_path: Path) -> None:
    data = tmp_path / "checkpoint.txt"
    data.write_bytes(CHECKPOINT)
    token = response_token(
        TimeStampAuthority(pki.tsa_signer()).respond(build_request(CHECKPOINT).der)
    )
    (tmp_path / "t.tst").write_bytes(token)
    done = openssl(
        "ts", "-verify", "-data", data, "-in", tmp_path / "t.tst", "-token_in",
        "-CAfile", pki.directory / "root.pem", "-untrusted", pki.directory / "tsa-chain.pem",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("ess_cert_id_alg", ["sha1", "sha256"])
def test_our_verifier_accepts_tokens_made_by_openssl_as_tsa(
    pki: DevelopmentPKI, tmp_path: Path, ess_cert_id_alg: str
) -> None:
    """OpenSSL as the TSA (ESS signing-certificate v1 with sha1, v2 otherwise): an independent
    producer our verifier must accept, and reject when the data differs."""
    certs = pki.directory
    (tmp_path / "serial").write_text("2A\n")  # the last serial used
    (tmp_path / "tsa.cnf").write_text(
        "[ tsa ]\ndefault_tsa = tsa_config\n[ tsa_config ]\n"
        f"serial = {tmp_path / 'serial'}\n"
        f"signer_cert = {certs / 'tsa.pem'}\n"
        f"signer_key = {certs / 'tsa-key.pem'}\n"
        f"certs = {certs / 'tsa-chain.pem'}\n"
        "signer_digest = sha256\n"
        "default_policy = 1.3.6.1.4.1.99999.3161.9\n"
        "digests = sha256, sha384, sha512\n"
        "accuracy = secs:1, millisecs:500\n"
        "ordering = yes\ntsa_name = yes\ness_cert_id_chain = no\n"
        f"ess_cert_id_alg = {ess_cert_id_alg}\n"
    )
    data = tmp_path / "checkpoint.txt"
    data.write_bytes(CHECKPOINT)
    query = tmp_path / "q.tsq"
    assert openssl("ts", "-query", "-data", data, "-sha256", "-cert", "-out", query).returncode == 0
    tsr = tmp_path / "r.tsr"
    made = openssl(
        "ts", "-reply", "-config", tmp_path / "tsa.cnf", "-queryfile", query, "-out", tsr
    )
    assert made.returncode == 0, made.stderr
    response = tsr.read_bytes()
    result = verify_timestamp_response(
        response, CHECKPOINT, [pki.root_certificate], policy="1.3.6.1.4.1.99999.3161.9"
    )
    assert result.ok, result.reason
    assert result.serial_number == 0x2B
    assert not verify_timestamp_response(response, CHECKPOINT + b"x", [pki.root_certificate]).ok
    assert verify_timestamp_token(response_token(response), CHECKPOINT, [pki.root_certificate]).ok


def _rfc3161_client() -> ModuleType:
    try:
        import rfc3161_client
    except ImportError:
        pytest.fail(
            "rfc3161-client is not installed, and it is the suite's strict third opinion on our "
            "time stamps: install the dev dependencies (`make setup`, or `pip install -e "
            "'.[dev]'`; it is pinned there as rfc3161-client==1.0.9)",
            pytrace=False,
        )
    return rfc3161_client


def test_strict_rfc3161_client_accepts_our_tokens(pki: DevelopmentPKI) -> None:
    """rfc3161-client (Rust, strict) as a third opinion."""
    rfc3161_client = _rfc3161_client()
    request = build_request(CHECKPOINT)
    response = TimeStampAuthority(pki.tsa_signer()).respond(request.der)
    decoded = rfc3161_client.decode_timestamp_response(response)
    verifier = rfc3161_client.VerifierBuilder(
        roots=[pki.root_certificate], nonce=request.nonce
    ).build()
    assert verifier.verify_message(decoded, CHECKPOINT)
    with pytest.raises(rfc3161_client.VerificationError):
        verifier.verify_message(decoded, CHECKPOINT + b"x")
