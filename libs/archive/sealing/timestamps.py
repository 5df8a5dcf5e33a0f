"""RFC 3161 time stamps: building a request and verifying the answer, in Python and offline.

Shared by the sealing service (which asks a time-stamp authority for every checkpoint) and the
offline verifier (archive.verify), which checks the same tokens from an evidence bundle. The
TSA itself and the HTTP client are the sealing service's (services/sealing/dev_tsa.py,
services/sealing/tsa_client.py).

A token proves that some data (here: a sealed checkpoint) existed at `genTime`, vouched for by a
TSA certificate carrying the critical id-kp-timeStamping extended key usage and chaining to the
TSA's own trust anchor (not the seal's: a qualified TSA belongs to somebody else). Anyone can
check a response with

    openssl ts -verify -data X.txt -in X.tsr -CAfile tsa-root.pem -untrusted tsa-chain.pem

and `verify_timestamp_response` does the same checks. Tokens are CMS SignedData over an
encapsulated TSTInfo with the ESS signing-certificate(-v2) attribute (RFC 5816); the SignedData
checks are cms.py's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from archive.sealing.cms import (
    DIGESTS,
    SignedDataInvalid,
    check_signed_data,
    embedded_certificates,
    is_absent,
    load_signed_data,
    require_signing_key_usage,
    validate_chain,
)

__all__ = [
    "TIMESTAMP_QUERY",
    "TIMESTAMP_REPLY",
    "ResponseStatus",
    "TimeStampResp",
    "TimestampRequest",
    "TimestampVerification",
    "build_request",
    "check_tsa_certificate",
    "response_status",
    "response_token",
    "verify_timestamp_response",
    "verify_timestamp_token",
]

# RFC 3161 3.4: the media types of a query and of its answer over HTTP.
TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"
_GRANTED = frozenset({"granted", "granted_with_mods"})


class TimeStampResp(tsp.TimeStampResp):  # type: ignore[misc]  # asn1crypto has no types
    """TimeStampResp with the token OPTIONAL as in RFC 3161 2.4.2 (asn1crypto 1.5 requires it,
    so rejections, which carry none, could neither be built nor parsed)."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimestampRequest:
    """A DER TimeStampReq and what the answer must echo."""

    der: bytes
    nonce: int | None
    digest: bytes
    hash_algorithm: str = "sha256"


def build_request(
    data: bytes,
    *,
    nonce: int | None = None,
    cert_req: bool = True,
    policy_oid: str | None = None,
    use_nonce: bool = True,
) -> TimestampRequest:
    """TimeStampReq for `data` with a SHA-256 imprint and a random 64-bit nonce.

    The nonce ties the answer to this request, so a replayed older response is detected.
    """
    if nonce is None and use_nonce:
        nonce = secrets.randbits(63) | 1 << 62  # positive, fixed length, never zero
    digest = hashlib.sha256(data).digest()
    fields: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
        "cert_req": cert_req,
    }
    if policy_oid is not None:
        fields["req_policy"] = policy_oid
    if nonce is not None:
        fields["nonce"] = nonce
    return TimestampRequest(tsp.TimeStampReq(fields).dump(), nonce, digest)


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimestampVerification:
    """Outcome of verifying a time stamp: `ok` with what the TSA vouched for, or `reason`."""

    ok: bool
    gen_time: dt.datetime | None = None
    tsa_subject: str | None = None
    reason: str | None = None
    serial_number: int | None = None
    policy: str | None = None
    nonce: int | None = None
    # The path that validated: the TSA certificate, its intermediates, the trust anchor last.
    chain: tuple[x509.Certificate, ...] = ()

    def __bool__(self) -> bool:
        return self.ok


def check_tsa_certificate(cert: x509.Certificate) -> None:
    """RFC 3161 2.3: the extended key usage is exactly id-kp-timeStamping and critical."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise SignedDataInvalid("TSA certificate has no extended key usage") from None
    if not eku.critical:
        raise SignedDataInvalid("TSA certificate extended key usage is not critical")
    if list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise SignedDataInvalid("TSA certificate extended key usage is not only timeStamping")
    require_signing_key_usage(cert, "TSA")


def _verify_token(
    token_der: bytes,
    data: bytes,
    trusted_roots: Sequence[x509.Certificate],
    nonce: int | None,
    untrusted: Sequence[x509.Certificate],
    policy: str | None,
) -> TimestampVerification:
    """All checks of a token, the chain to one of `trusted_roots` included."""
    signed_data = load_signed_data(token_der)
    encap = signed_data["encap_content_info"]
    if encap["content_type"].native != "tst_info":
        raise SignedDataInvalid("token does not carry a TSTInfo")
    if is_absent(encap["content"]):
        raise SignedDataInvalid("token has no encapsulated TSTInfo")
    tst_der = bytes(encap["content"])
    tst = tsp.TSTInfo.load(tst_der, strict=True)
    check = check_signed_data(
        signed_data, tst_der, expected_content_type="tst_info", extra_certificates=untrusted
    )
    check_tsa_certificate(check.certificate)
    if tst["version"].native != "v1":
        raise SignedDataInvalid(f"unsupported TSTInfo version {tst['version'].native}")
    imprint = tst["message_imprint"]
    hash_name = imprint["hash_algorithm"]["algorithm"].native
    if hash_name not in DIGESTS:
        raise SignedDataInvalid(f"unsupported imprint hash algorithm {hash_name}")
    if imprint["hashed_message"].native != hashlib.new(DIGESTS[hash_name], data).digest():
        raise SignedDataInvalid("message imprint does not match the data")
    token_nonce = tst["nonce"].native
    if nonce is not None and token_nonce != nonce:
        raise SignedDataInvalid("nonce does not match the request")
    token_policy = tst["policy"].native
    if policy is not None and token_policy != policy:
        raise SignedDataInvalid(f"policy {token_policy}, expected {policy}")
    tsa_name = tst["tsa"]
    if not is_absent(tsa_name) and tsa_name.name == "directory_name":
        subject = asn1_x509.Name.load(check.certificate.subject.public_bytes())
        if tsa_name.chosen != subject:
            raise SignedDataInvalid("TSTInfo tsa name differs from the signing certificate")
    gen_time: dt.datetime = tst["gen_time"].native
    intermediates = [*embedded_certificates(signed_data), *untrusted]
    # The certificate must have been valid when the stamp was made, not necessarily today.
    chain = validate_chain(check.certificate, intermediates, trusted_roots, gen_time)
    return TimestampVerification(
        ok=True,
        gen_time=gen_time,
        tsa_subject=check.certificate.subject.rfc4514_string(),
        serial_number=tst["serial_number"].native,
        policy=token_policy,
        nonce=token_nonce,
        chain=tuple(chain),
    )


def _guarded(check: Callable[[], TimestampVerification]) -> TimestampVerification:
    try:
        return check()
    except SignedDataInvalid as exc:
        return TimestampVerification(ok=False, reason=str(exc))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        return TimestampVerification(ok=False, reason=f"malformed time stamp: {exc}")


def _load_response(response_der: bytes) -> TimeStampResp:
    try:
        response: TimeStampResp = TimeStampResp.load(response_der, strict=True)
        response["status"]["status"].native  # noqa: B018 -- the outer structure must parse
    except (ValueError, TypeError, KeyError) as exc:
        raise SignedDataInvalid(f"malformed TimeStampResp: {exc}") from None
    return response


@dataclass(frozen=True)
class ResponseStatus:
    """The PKIStatusInfo of a TimeStampResp: granted or not, and the TSA's words why."""

    status: str  # "granted", "granted_with_mods", "rejection", "waiting", ...
    fail_info: frozenset[str]
    text: str | None

    @property
    def granted(self) -> bool:
        return self.status in _GRANTED

    def describe(self) -> str:
        detail = ", ".join(sorted(self.fail_info)) or self.text or "no detail"
        return f"{self.status} ({detail})"


def _status(response: TimeStampResp) -> ResponseStatus:
    status = response["status"]
    text = status["status_string"].native
    return ResponseStatus(
        status["status"].native,
        frozenset(status["fail_info"].native or ()),
        "; ".join(text) if text else None,
    )


def response_status(response_der: bytes) -> ResponseStatus:
    """The status of a DER TimeStampResp; SignedDataInvalid if it is not one."""
    return _status(_load_response(response_der))


def response_token(response_der: bytes) -> bytes:
    """The TimeStampToken (DER ContentInfo) inside a granted TimeStampResp."""
    response = _load_response(response_der)
    if is_absent(response["time_stamp_token"]):
        raise SignedDataInvalid("response carries no token")
    token: bytes = response["time_stamp_token"].dump()
    return token


def verify_timestamp_token(
    token_der: bytes,
    data: bytes,
    trusted_roots: Sequence[x509.Certificate],
    *,
    nonce: int | None = None,
    untrusted: Sequence[x509.Certificate] = (),
    policy: str | None = None,
) -> TimestampVerification:
    """Verify a bare TimeStampToken (as embedded in signatures or `openssl ts -token_out`)."""
    return _guarded(lambda: _verify_token(token_der, data, trusted_roots, nonce, untrusted, policy))


def verify_timestamp_response(
    response_der: bytes,
    data: bytes,
    trusted_roots: Sequence[x509.Certificate],
    *,
    nonce: int | None = None,
    untrusted: Sequence[x509.Certificate] = (),
    policy: str | None = None,
) -> TimestampVerification:
    """Verify a TimeStampResp (.tsr) over `data`, like `openssl ts -verify -data`.

    Status granted, TSTInfo imprint equal to the hash of `data`, `nonce` (when given) echoed,
    CMS signature and ESS certificate reference, critical timeStamping EKU, chain to one of
    `trusted_roots` (the TSA's anchors) valid at genTime. `untrusted` adds certificates for path
    building (the TSA's intermediates, or its certificate when the token was requested without
    certReq). The result's `chain` is the path that validated. Never raises for bad input.
    """

    def check() -> TimestampVerification:
        response = _load_response(response_der)
        status = _status(response)
        if not status.granted:
            raise SignedDataInvalid(f"TSA did not grant the request: {status.describe()}")
        if is_absent(response["time_stamp_token"]):
            raise SignedDataInvalid("granted response carries no token")
        token = response["time_stamp_token"].dump()
        return _verify_token(token, data, trusted_roots, nonce, untrusted, policy)

    return _guarded(check)
