"""RFC 3161 requests and their verification (archive.sealing.timestamps), with tokens from the
development TSA (services/sealing/dev_tsa.py); the HTTP client is tests/unit/test_tsa_client.py's,
openssl cross-checks are in tests/integration/test_openssl_interop.py."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from asn1crypto import tsp
from pki import ForeignTsaPki

from archive.sealing.cms import SignedDataInvalid
from archive.sealing.keys import DevelopmentPKI
from archive.sealing.timestamps import (
    TimeStampResp,
    build_request,
    response_status,
    response_token,
    verify_timestamp_response,
    verify_timestamp_token,
)
from services.sealing.dev_tsa import DEFAULT_POLICY_OID, TimeStampAuthority

DATA = b"archive.example/tenant-a\n7\nz6LUq0dqpOJ5BoYY3VH7t4kuzxr+c6jHxTfXShSvhBM=\n"
FIXED = dt.datetime(2031, 3, 4, 5, 6, 7, 891234, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def tsa(pki: DevelopmentPKI) -> TimeStampAuthority:
    return TimeStampAuthority(pki.tsa_signer())


def _status(response: bytes) -> tuple[str, set[str]]:
    status = response_status(response)
    return status.status, set(status.fail_info)


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
    assert _status(response) == ("granted", set())
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


def test_the_verified_chain_is_returned_tsa_certificate_first_root_last(
    tsa: TimeStampAuthority, pki: DevelopmentPKI
) -> None:
    result = verify_timestamp_response(
        tsa.respond(build_request(DATA).der), DATA, [pki.root_certificate]
    )
    assert result.chain == (pki.tsa_signer().certificate, pki.root_certificate)


def test_a_foreign_tsa_verifies_against_its_own_root_not_the_seal_root(
    foreign_tsa_pki: ForeignTsaPki, pki: DevelopmentPKI
) -> None:
    """The path that validated names the intermediate; when the token carries no
    certificates, the intermediate too must be supplied, not only the TSA certificate."""
    foreign = foreign_tsa_pki
    response = TimeStampAuthority(foreign.signer).respond(build_request(DATA).der)
    signed = TimeStampResp.load(response)["time_stamp_token"]["content"]
    assert len(signed["certificates"]) == 2  # the TSA's own certificate and its CA
    result = verify_timestamp_response(response, DATA, [foreign.root])
    assert result.ok, result.reason
    assert result.chain == (foreign.signer.certificate, foreign.intermediate, foreign.root)

    seal_root = verify_timestamp_response(response, DATA, [pki.root_certificate])
    assert not seal_root.ok and "chain not trusted" in (seal_root.reason or "")

    alone = TimeStampAuthority(foreign.signer).respond(build_request(DATA, cert_req=False).der)
    without = verify_timestamp_response(
        alone, DATA, [foreign.root], untrusted=[foreign.signer.certificate]
    )
    assert not without.ok and "chain not trusted" in (without.reason or "")
    assert verify_timestamp_response(
        alone, DATA, [foreign.root], untrusted=[foreign.signer.certificate, foreign.intermediate]
    ).ok


def test_response_status_refuses_what_is_not_a_timestamp_response() -> None:
    with pytest.raises(SignedDataInvalid, match="malformed TimeStampResp"):
        response_status(b"<html>busy</html>")
