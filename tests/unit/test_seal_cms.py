"""Signers, the development PKI and detached CMS seals, verified in Python (openssl checks are in
tests/integration/test_openssl_interop.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import pickle
import stat
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import tsp as _tsp  # noqa: F401 -- registers ESS attribute parsing
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from archive.sealing.cms import seal_detached, verify_detached
from archive.sealing.keys import (
    ECDSA_SHA256,
    RSA_PKCS1_SHA256,
    DevelopmentPKI,
    FileSigner,
    Signer,
    SignerError,
)

DATA = b"archive.example/tenant-a\n42\nqUiQTy8PR5uPgZdpSzAYSw0u0cHNKh7A+4XSmaGSpEc=\n"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


# --- development PKI -------------------------------------------------------------------------


def test_development_pki_generates_once_and_reloads_the_same_material(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    first = DevelopmentPKI.ensure(directory)
    files = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    assert files == [
        "root.pem",
        "seal-key.pem",
        "seal.pem",
        "tsa-chain.pem",
        "tsa-key.pem",
        "tsa.pem",
    ]
    before = {name: (directory / name).read_bytes() for name in files}
    second = DevelopmentPKI.ensure(directory)
    assert {name: (directory / name).read_bytes() for name in files} == before
    assert second.root_certificate == first.root_certificate
    assert second.seal_signer().certificate == first.seal_signer().certificate
    assert second.tsa_signer().certificate == first.tsa_signer().certificate
    # Same key: a signature made with the reloaded key verifies with the first certificate.
    signature = second.seal_signer().sign(b"x")
    public_key = first.seal_signer().certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(signature, b"x", ec.ECDSA(hashes.SHA256()))


def test_development_pki_file_modes(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    DevelopmentPKI.ensure(directory)
    assert _mode(directory) == 0o700
    assert _mode(directory / "seal-key.pem") == 0o600
    assert _mode(directory / "tsa-key.pem") == 0o600
    assert not (directory / "root-key.pem").exists()  # the root key is never written


def test_incomplete_pki_is_generated_anew(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    first = DevelopmentPKI.ensure(directory)
    (directory / "root.pem").unlink()  # as if interrupted before the last write
    second = DevelopmentPKI.ensure(directory)
    assert second.root_certificate != first.root_certificate
    assert second.seal_signer().certificate.issuer == second.root_certificate.subject


def test_development_certificates_have_the_required_profiles(pki: DevelopmentPKI) -> None:
    root = pki.root_certificate
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca and constraints.critical
    root_usage = root.extensions.get_extension_for_class(x509.KeyUsage).value
    assert root_usage.key_cert_sign and root_usage.crl_sign
    assert root.not_valid_after_utc - root.not_valid_before_utc >= dt.timedelta(days=3650)

    seal = pki.seal_signer().certificate
    assert seal.issuer == root.subject
    seal_usage = seal.extensions.get_extension_for_class(x509.KeyUsage).value
    assert seal_usage.digital_signature and seal_usage.content_commitment
    assert seal.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert isinstance(seal.public_key(), ec.EllipticCurvePublicKey)

    tsa = pki.tsa_signer().certificate
    eku = tsa.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical and list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    assert pki.tsa_signer().chain == []  # issued directly by the root
    assert pki.seal_signer().algorithm == ECDSA_SHA256


# --- signers ---------------------------------------------------------------------------------


def test_signer_never_shows_its_private_key(
    pki: DevelopmentPKI, caplog: pytest.LogCaptureFixture
) -> None:
    signer = pki.seal_signer()
    assert isinstance(signer, Signer)
    key_pem = (pki.directory / "seal-key.pem").read_text()
    key_body = "".join(key_pem.strip().splitlines()[1:-1])
    private_value = str(signer._key.private_numbers().private_value)  # type: ignore[union-attr]
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("signer %s / %r / %s", signer, signer, [signer])
    for text in (repr(signer), str(signer), f"{signer}", caplog.text):
        assert "Electronic Seal" in text
        assert key_body[:40] not in text and private_value not in text
        assert "PRIVATE" not in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)


def test_file_signer_rejects_a_key_that_does_not_match_the_certificate(
    pki: DevelopmentPKI,
) -> None:
    with pytest.raises(SignerError, match="does not match"):
        FileSigner.load(pki.directory / "tsa-key.pem", pki.directory / "seal.pem")


def _rsa_material(tmp_path: Path, password: bytes) -> tuple[Path, Path, Path, x509.Certificate]:
    """An RSA root and an RSA seal certificate, key encrypted with `password`."""
    now = dt.datetime.now(dt.UTC)
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RSA Test Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RSA Provider"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "RSA Seal"),
                ]
            )
        )
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key_path = tmp_path / "rsa-key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )
    cert_path = tmp_path / "rsa.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    root_path = tmp_path / "rsa-root.pem"
    root_path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, root_path, root


def test_rsa_key_with_password_seals_and_verifies(tmp_path: Path) -> None:
    key_path, cert_path, _, root = _rsa_material(tmp_path, b"s3cret")
    with pytest.raises(SignerError):
        FileSigner.load(key_path, cert_path, password=b"wrong")
    signer = FileSigner.load(key_path, cert_path, password=b"s3cret")
    assert signer.algorithm == RSA_PKCS1_SHA256
    result = verify_detached(seal_detached(DATA, signer), DATA, [root])
    assert result.ok, result.reason
    assert result.signer_subject == "CN=RSA Seal,O=RSA Provider"


# --- seals -----------------------------------------------------------------------------------


def test_seal_verifies_and_reports_signer_and_time(pki: DevelopmentPKI) -> None:
    when = dt.datetime(2030, 5, 17, 8, 30, 15, 123456, tzinfo=dt.UTC)
    with pytest.raises(ValueError):
        seal_detached(DATA, pki.seal_signer(), signing_time=when.replace(tzinfo=None))
    # The certificate was issued today, so a seal dated 2030 is within its validity.
    signature = seal_detached(DATA, pki.seal_signer(), signing_time=when)
    result = verify_detached(signature, DATA, [pki.root_certificate])
    assert result.ok, result.reason
    assert result.signing_time == when.replace(microsecond=0)
    assert result.signer_subject == pki.seal_signer().certificate.subject.rfc4514_string()
    assert result.reason is None and bool(result)


def test_seal_structure_is_detached_cades_b(pki: DevelopmentPKI) -> None:
    signer = pki.seal_signer()
    info = cms.ContentInfo.load(seal_detached(DATA, signer))
    assert info["content_type"].native == "signed_data"
    signed = info["content"]
    assert signed["version"].native == "v1"
    assert signed["encap_content_info"]["content_type"].native == "data"
    assert signed["encap_content_info"]["content"].native is None  # detached
    assert [a["algorithm"].native for a in signed["digest_algorithms"]] == ["sha256"]
    certs = [c.chosen.dump() for c in signed["certificates"]]
    assert certs == [_der(signer.certificate)]
    signer_info = signed["signer_infos"][0]
    attrs = {a["type"].native: a["values"][0] for a in signer_info["signed_attrs"]}
    assert set(attrs) == {
        "content_type",
        "message_digest",
        "signing_time",
        "signing_certificate_v2",
    }
    assert attrs["content_type"].native == "data"
    assert attrs["message_digest"].native == hashlib.sha256(DATA).digest()
    cert_id = attrs["signing_certificate_v2"]["certs"][0]
    assert cert_id["cert_hash"].native == hashlib.sha256(_der(signer.certificate)).digest()
    assert cert_id["issuer_serial"]["serial_number"].native == signer.certificate.serial_number
    assert signer_info["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"


def test_changed_content_or_signature_fails(pki: DevelopmentPKI) -> None:
    signature = seal_detached(DATA, pki.seal_signer())
    changed = bytearray(DATA)
    changed[5] ^= 0x01
    result = verify_detached(signature, bytes(changed), [pki.root_certificate])
    assert not result.ok and "message digest" in (result.reason or "")

    # The signature value is the last element of the DER: flip its last byte.
    tampered = bytearray(signature)
    tampered[-1] ^= 0x01
    result = verify_detached(bytes(tampered), DATA, [pki.root_certificate])
    assert not result.ok and "signature" in (result.reason or "")


def test_changed_signed_attribute_fails(pki: DevelopmentPKI) -> None:
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    signature = seal_detached(DATA, pki.seal_signer(), signing_time=when)
    tampered = signature.replace(b"300101000000Z", b"300101000001Z")
    assert tampered != signature
    result = verify_detached(tampered, DATA, [pki.root_certificate])
    assert not result.ok and "signature does not verify" in (result.reason or "")


def test_other_root_or_time_outside_validity_fails(pki: DevelopmentPKI, tmp_path: Path) -> None:
    other = DevelopmentPKI.ensure(tmp_path / "other")
    signature = seal_detached(DATA, pki.seal_signer())
    result = verify_detached(signature, DATA, [other.root_certificate])
    assert not result.ok and "chain" in (result.reason or "")
    assert not verify_detached(signature, DATA, []).ok

    old = seal_detached(
        DATA, pki.seal_signer(), signing_time=dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    )
    result = verify_detached(old, DATA, [pki.root_certificate])
    assert not result.ok and "not valid" in (result.reason or "")
    # An explicit validation time (e.g. a time stamp's genTime) overrides the claimed time.
    assert verify_detached(old, DATA, [pki.root_certificate], at=dt.datetime.now(dt.UTC)).ok


def test_signature_by_a_key_without_signing_usage_fails(pki: DevelopmentPKI) -> None:
    """A certificate whose key usage allows only key agreement does not make seals."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Throwaway Root")])
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Key Agreement")]))
        .issuer_name(root_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.KeyUsage(False, False, False, False, True, False, False, False, False),
            critical=True,
        )
        .sign(root_key, hashes.SHA256())
    )
    result = verify_detached(seal_detached(DATA, FileSigner(key, cert)), DATA, [root])
    assert not result.ok and "key usage" in (result.reason or "")


@pytest.mark.parametrize("garbage", [b"", b"\x30\x03\x02\x01\x01", b"not der at all"])
def test_garbage_is_reported_not_raised(pki: DevelopmentPKI, garbage: bytes) -> None:
    result = verify_detached(garbage, DATA, [pki.root_certificate])
    assert not result.ok and result.reason
