"""Detached CMS electronic seals (RFC 5652 SignedData, CAdES-B signed attributes) and their
verification in Python.

A seal is a DER `ContentInfo` holding a `SignedData` without eContent (the checkpoint text travels
beside it), digest SHA-256, one `SignerInfo` whose signed attributes are content-type,
message-digest, signing-time and ESS signing-certificate-v2 (RFC 5035; CAdES-B requires it so the
signer certificate cannot be substituted). Anyone can check it with

    openssl cms -verify -binary -inform DER -in X.p7s -content X.txt -CAfile root.pem -purpose any

`verify_detached` performs the same checks offline, and the SignedData helpers here are shared
with the time-stamp token code (timestamps.py), whose tokens are SignedData as well.

`cryptography`'s PKCS7SignatureBuilder cannot add signing-certificate-v2, hence asn1crypto.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, cms, core
from asn1crypto import tsp as _tsp  # registers the ESS attribute types with cms.CMSAttribute
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import verification

from archive.sealing.keys import Signer

__all__ = [
    "SealVerification",
    "SignedDataInvalid",
    "is_absent",
    "seal_detached",
    "verify_detached",
]

# Digest algorithms we accept when verifying (asn1crypto name -> hashlib name); we sign with
# SHA-256 only. SHA-1 and MD5 are refused: collisions make them useless for evidence.
DIGESTS: dict[str, str] = {"sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
_CRYPTO_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


class SignedDataInvalid(Exception):
    """A SignedData failed a check; the message says which (used as the `reason` of results)."""


@dataclass(frozen=True)
class SealVerification:
    """Outcome of `verify_detached`: `ok` with the signer's details, or `reason` saying why not."""

    ok: bool
    signer_subject: str | None = None
    signing_time: dt.datetime | None = None
    reason: str | None = None
    signer_certificate: x509.Certificate | None = None

    def __bool__(self) -> bool:
        return self.ok


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def _asn1_cert(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def signing_certificate_v2_attribute(cert: x509.Certificate) -> cms.CMSAttribute:
    """ESS signing-certificate-v2 naming `cert` by SHA-256 hash and issuer/serial (RFC 5035).

    hashAlgorithm is left out: its DEFAULT is SHA-256 and DER forbids encoding a default.
    """
    parsed = _asn1_cert(cert)
    cert_id = _tsp.ESSCertIDv2(
        {
            "cert_hash": hashlib.sha256(parsed.dump()).digest(),
            "issuer_serial": {
                "issuer": [asn1_x509.GeneralName(name="directory_name", value=parsed.issuer)],
                "serial_number": parsed.serial_number,
            },
        }
    )
    value = _tsp.SigningCertificateV2({"certs": [cert_id]})
    return cms.CMSAttribute({"type": "signing_certificate_v2", "values": [value]})


def build_signed_data(
    signer: Signer,
    *,
    content_type: str,
    content: bytes,
    encapsulate: bool,
    extra_attributes: Sequence[cms.CMSAttribute] = (),
    include_certificates: bool = True,
) -> bytes:
    """DER ContentInfo(SignedData) with one SignerInfo over `content`.

    Signed attributes: content-type, message-digest, signing-certificate-v2, plus
    `extra_attributes`. `encapsulate` puts `content` inside as eContent (time-stamp tokens);
    otherwise the signature is detached (seals).
    """
    digest = hashlib.sha256(content).digest()
    attributes = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [content_type]}),
            cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
            *extra_attributes,
            signing_certificate_v2_attribute(signer.certificate),
        ]
    )
    # The signature covers the DER of the attributes as a SET OF (tag 0x31, RFC 5652 5.4);
    # asn1crypto sorts SET OF members on encoding, as DER and OpenSSL's re-encoding require.
    signature = signer.sign(attributes.dump())
    cert = _asn1_cert(signer.certificate)
    signer_info = cms.SignerInfo(
        {
            "version": "v1",  # sid is issuerAndSerialNumber
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": cert.issuer, "serial_number": cert.serial_number},
            ),
            "digest_algorithm": {"algorithm": signer.algorithm.digest_algorithm},
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": signer.algorithm.cms_signature_algorithm},
            "signature": signature,
        }
    )
    encap: dict[str, object] = {"content_type": content_type}
    if encapsulate:
        encap["content"] = cms.ParsableOctetString(content)
    signed_data: dict[str, object] = {
        # RFC 5652 5.1: v1 for id-data with issuerAndSerialNumber signers, v3 for other content.
        "version": "v1" if content_type == "data" else "v3",
        "digest_algorithms": [{"algorithm": signer.algorithm.digest_algorithm}],
        "encap_content_info": encap,
        "signer_infos": [signer_info],
    }
    if include_certificates:
        signed_data["certificates"] = [_asn1_cert(c) for c in [signer.certificate, *signer.chain]]
    der: bytes = cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()
    return der


def seal_detached(data: bytes, signer: Signer, signing_time: dt.datetime | None = None) -> bytes:
    """Detached CAdES-B-compatible CMS signature (DER) of `data` with the provider's seal."""
    when = signing_time if signing_time is not None else dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        raise ValueError("signing_time must be timezone-aware")
    # UTCTime for 1950-2049 as RFC 5652 11.3 demands; it has no fractions of a second.
    when = when.astimezone(dt.UTC).replace(microsecond=0)
    time_choice = (
        cms.Time(name="utc_time", value=when)
        if 1950 <= when.year < 2050
        else cms.Time(name="general_time", value=when)
    )
    signing_time_attr = cms.CMSAttribute({"type": "signing_time", "values": [time_choice]})
    return build_signed_data(
        signer,
        content_type="data",
        content=data,
        encapsulate=False,
        extra_attributes=[signing_time_attr],
    )


# ---------------------------------------------------------------------------------------------
# Verifying
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignerCheck:
    """What `check_signed_data` established about the (single) signer."""

    certificate: x509.Certificate
    attributes: dict[str, cms.CMSAttribute]


def is_absent(value: core.Asn1Value) -> bool:
    """An OPTIONAL field that is not there (asn1crypto's Void).

    Cheaper than `.native is None`, which decodes the whole subtree, and after which asn1crypto
    re-encodes it on every dump() (tens of milliseconds for a token).
    """
    return isinstance(value, core.Void)


def load_signed_data(der: bytes) -> cms.SignedData:
    """Parse a DER ContentInfo and return its SignedData, or raise SignedDataInvalid.

    asn1crypto parses lazily: deeper malformations surface as ValueError/TypeError/KeyError when
    a field is read, which the verify functions turn into a failed result.
    """
    try:
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "signed_data":
            raise SignedDataInvalid(f"not a SignedData but {info['content_type'].native}")
        signed_data = info["content"]
        if not isinstance(signed_data, cms.SignedData):
            raise SignedDataInvalid("not a SignedData")
    except SignedDataInvalid:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise SignedDataInvalid(f"malformed CMS structure: {exc}") from None
    return signed_data


def embedded_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    certificates = signed_data["certificates"]
    if is_absent(certificates):
        return certs
    for choice in certificates:
        if choice.name == "certificate":
            certs.append(x509.load_der_x509_certificate(choice.chosen.dump()))
    return certs


def _matches_sid(cert: x509.Certificate, sid: cms.SignerIdentifier) -> bool:
    if sid.name == "issuer_and_serial_number":
        parsed = _asn1_cert(cert)
        return bool(
            parsed.serial_number == sid.chosen["serial_number"].native
            and parsed.issuer == sid.chosen["issuer"]
        )
    try:
        ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return False
    return bool(ski == sid.chosen.native)


def _verify_signature(
    cert: x509.Certificate,
    signature_algorithm: algos.SignedDigestAlgorithm,
    digest_name: str,
    signature: bytes,
    message: bytes,
) -> None:
    name = signature_algorithm["algorithm"].native
    kind = signature_algorithm.signature_algo
    # Plain "ecdsa"/"rsassa_pkcs1v15" identifiers take their hash from the digest algorithm.
    hash_name = digest_name if name in ("ecdsa", "rsassa_pkcs1v15") else None
    if kind == "rsassa_pss":
        hash_name = signature_algorithm["parameters"]["hash_algorithm"]["algorithm"].native
    elif hash_name is None:
        hash_name = signature_algorithm.hash_algo
    if hash_name not in _CRYPTO_HASHES:
        raise SignedDataInvalid(f"unsupported signature hash {hash_name}")
    chosen = _CRYPTO_HASHES[hash_name]()
    key = cert.public_key()
    try:
        if kind == "ecdsa" and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(chosen))
        elif kind == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), chosen)
        elif kind == "rsassa_pss" and isinstance(key, rsa.RSAPublicKey):
            params = signature_algorithm["parameters"]
            mgf_hash = params["mask_gen_algorithm"]["parameters"]["algorithm"].native
            if mgf_hash not in _CRYPTO_HASHES:
                raise SignedDataInvalid(f"unsupported MGF1 hash {mgf_hash}")
            key.verify(
                signature,
                message,
                padding.PSS(
                    mgf=padding.MGF1(_CRYPTO_HASHES[mgf_hash]()),
                    salt_length=params["salt_length"].native,
                ),
                chosen,
            )
        else:
            raise SignedDataInvalid(
                f"signature algorithm {name} does not fit the signer's {type(key).__name__}"
            )
    except InvalidSignature:
        raise SignedDataInvalid("signature does not verify with the signer certificate") from None


def _check_ess(attributes: dict[str, cms.CMSAttribute], cert: x509.Certificate) -> None:
    """The ESS signing-certificate(-v2) attribute must name the certificate that verified."""
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    if "signing_certificate_v2" in attributes:
        cert_id = attributes["signing_certificate_v2"]["values"][0]["certs"][0]
        hash_name = cert_id["hash_algorithm"]["algorithm"].native
        if hash_name not in DIGESTS:
            raise SignedDataInvalid(f"unsupported ESS certificate hash {hash_name}")
        expected = hashlib.new(DIGESTS[hash_name], cert_der).digest()
    elif "signing_certificate" in attributes:
        cert_id = attributes["signing_certificate"]["values"][0]["certs"][0]
        expected = hashlib.sha1(cert_der).digest()  # ESS v1 is SHA-1 by definition (RFC 2634)
    else:
        raise SignedDataInvalid("no ESS signing-certificate(-v2) attribute")
    if cert_id["cert_hash"].native != expected:
        raise SignedDataInvalid("ESS signing certificate hash does not match the signer")
    issuer_serial = cert_id["issuer_serial"]
    if not is_absent(issuer_serial):
        parsed = _asn1_cert(cert)
        names = [g.chosen for g in issuer_serial["issuer"] if g.name == "directory_name"]
        if issuer_serial["serial_number"].native != parsed.serial_number or not any(
            n == parsed.issuer for n in names
        ):
            raise SignedDataInvalid("ESS signing certificate issuer/serial do not match")


def _single(attributes: dict[str, cms.CMSAttribute], name: str) -> Any:
    if name not in attributes:
        raise SignedDataInvalid(f"signed attribute {name} missing")
    values = attributes[name]["values"]
    if len(values) != 1:
        raise SignedDataInvalid(f"signed attribute {name} must have exactly one value")
    return values[0]


def validate_chain(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trusted_roots: Sequence[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    """Path from `cert` to one of `trusted_roots`, every certificate valid at `at`; returns it
    (`cert` first, the root last).

    cryptography's path builder does signatures, names, validity and CA constraints; the
    extension policies are relaxed because seals and TSA certificates are not WebPKI certificates
    (purpose checks are the callers').
    """
    if not trusted_roots:
        raise SignedDataInvalid("no trusted root certificates given")
    ca_policy = verification.ExtensionPolicy.permit_all().require_present(
        x509.BasicConstraints, verification.Criticality.AGNOSTIC, None
    )
    verifier = (
        verification.PolicyBuilder()
        .store(verification.Store(list(trusted_roots)))
        .time(at)
        .extension_policies(
            ca_policy=ca_policy, ee_policy=verification.ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(cert, list(intermediates))
    except verification.VerificationError as exc:
        raise SignedDataInvalid(f"chain not trusted at {at.isoformat()}: {exc}") from None
    return list(verified.chain)


def check_signed_data(
    signed_data: cms.SignedData,
    content: bytes,
    *,
    expected_content_type: str,
    extra_certificates: Sequence[x509.Certificate] = (),
) -> SignerCheck:
    """Check one SignerInfo over `content`: signed attributes, message digest, ESS certificate
    reference and signature. Chain and purpose are left to the caller (they need a time)."""
    econtent_type = signed_data["encap_content_info"]["content_type"].native
    if econtent_type != expected_content_type:
        raise SignedDataInvalid(f"content type {econtent_type}, expected {expected_content_type}")
    signer_infos = signed_data["signer_infos"]
    if len(signer_infos) != 1:
        raise SignedDataInvalid(f"expected exactly one signer, found {len(signer_infos)}")
    signer_info = signer_infos[0]
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in DIGESTS:
        raise SignedDataInvalid(f"unsupported digest algorithm {digest_name}")
    signed_attrs = signer_info["signed_attrs"]
    if not signed_attrs:
        raise SignedDataInvalid("no signed attributes")
    attributes: dict[str, cms.CMSAttribute] = {}
    for attr in signed_attrs:
        name = attr["type"].native
        if name in attributes:
            raise SignedDataInvalid(f"signed attribute {name} appears twice")
        attributes[name] = attr
    if _single(attributes, "content_type").native != econtent_type:
        raise SignedDataInvalid("content-type attribute differs from the encapsulated type")
    expected_digest = hashlib.new(DIGESTS[digest_name], content).digest()
    if _single(attributes, "message_digest").native != expected_digest:
        raise SignedDataInvalid("message digest does not match the content")

    candidates = [*embedded_certificates(signed_data), *extra_certificates]
    sid = signer_info["sid"]
    signer_cert = next((c for c in candidates if _matches_sid(c, sid)), None)
    if signer_cert is None:
        raise SignedDataInvalid("signer certificate not found")
    # What was signed is the attributes' own encoding with the [0] IMPLICIT tag turned back into
    # SET OF (RFC 5652 5.4); only the tag byte differs, the length and contents are as received.
    signed_bytes = b"\x31" + signed_attrs.dump()[1:]
    _verify_signature(
        signer_cert,
        signer_info["signature_algorithm"],
        digest_name,
        signer_info["signature"].native,
        signed_bytes,
    )
    _check_ess(attributes, signer_cert)
    return SignerCheck(signer_cert, attributes)


def require_signing_key_usage(cert: x509.Certificate, whose: str) -> None:
    """A key usage extension, when present, must allow signing data: RFC 5280 4.2.1.3 asks
    for digitalSignature or nonRepudiation (contentCommitment)."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise SignedDataInvalid(f"{whose} certificate key usage does not allow signing")


def verify_detached(
    signature_der: bytes,
    data: bytes,
    trusted_roots: Sequence[x509.Certificate],
    *,
    at: dt.datetime | None = None,
) -> SealVerification:
    """Verify a detached seal over `data` offline.

    Checks the message digest, the signature over the signed attributes, the ESS
    signing-certificate-v2 reference, key usage and the chain to one of `trusted_roots`, valid
    at `at` (default: the signed signing-time, which is the signer's claim; pass a time-stamp's
    genTime for a time vouched for by a TSA). Never raises for bad input: `ok=False, reason=...`.
    """
    try:
        signed_data = load_signed_data(signature_der)
        if not is_absent(signed_data["encap_content_info"]["content"]):
            raise SignedDataInvalid("signature is not detached (carries eContent)")
        check = check_signed_data(signed_data, data, expected_content_type="data")
        if "signing_certificate_v2" not in check.attributes:
            raise SignedDataInvalid("no ESS signing-certificate-v2 attribute (CAdES-B)")
        signing_time: dt.datetime | None = None
        if "signing_time" in check.attributes:
            signing_time = _single(check.attributes, "signing_time").native
        require_signing_key_usage(check.certificate, "signer")
        when = at or signing_time or dt.datetime.now(dt.UTC)
        validate_chain(check.certificate, embedded_certificates(signed_data), trusted_roots, when)
    except SignedDataInvalid as exc:
        return SealVerification(ok=False, reason=str(exc))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        # asn1crypto parses lazily: a malformed inner field surfaces here.
        return SealVerification(ok=False, reason=f"malformed CMS structure: {exc}")
    return SealVerification(
        ok=True,
        signer_subject=check.certificate.subject.rfc4514_string(),
        signing_time=signing_time,
        signer_certificate=check.certificate,
    )
