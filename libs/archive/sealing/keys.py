"""Signing keys behind a small interface, and a development PKI that makes its own.

The sealing service and the built-in time-stamping authority only ever need "the certificate,
the chain above it, and something that signs bytes with SHA-256". `Signer` is that interface so
that a hardware module (PKCS#11, cloud KMS) can replace `FileSigner` without touching CMS code.

Development PKI layout (`DevelopmentPKI.ensure(directory)`), all PEM, fixed names:

    directory/            0700
      root.pem            root CA certificate (ECDSA P-256, 10 years, CA:TRUE)
      seal.pem            provider's electronic seal certificate, issued by the root
      seal-key.pem        its private key (PKCS#8, unencrypted)              0600
      tsa.pem             time-stamping unit certificate (EKU timeStamping, critical)
      tsa-key.pem         its private key (PKCS#8, unencrypted)              0600
      tsa-chain.pem       tsa.pem followed by intermediates (none here): the file
                          `openssl ts -verify -untrusted` expects in a bundle
      .lock               advisory lock taken while generating or loading

The root's private key is thrown away after issuing the two certificates: a development root
that can mint nothing more is one less secret to guard. `root.pem` is written last, so its
presence means the set is complete; a set interrupted before that is generated anew.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from archive.files import atomic_write

__all__ = [
    "ECDSA_SHA256",
    "RSA_PKCS1_SHA256",
    "DevelopmentPKI",
    "FileSigner",
    "SignatureAlgorithm",
    "Signer",
    "SignerError",
]

DEFAULT_ORGANISATION = "Trusted Archive (development)"


class SignerError(Exception):
    """A key or certificate cannot be used for signing (wrong type, mismatch, unreadable)."""


@dataclass(frozen=True)
class SignatureAlgorithm:
    """What a signer produces, named the way CMS (asn1crypto) and humans need it."""

    name: str  # human-readable, e.g. "ecdsa-with-SHA256"
    cms_signature_algorithm: str  # asn1crypto SignedDigestAlgorithmId name
    digest_algorithm: str = "sha256"  # asn1crypto DigestAlgorithmId name


ECDSA_SHA256 = SignatureAlgorithm("ecdsa-with-SHA256", "sha256_ecdsa")
# rsaEncryption rather than sha256WithRSAEncryption: what OpenSSL itself writes in CMS (RFC 5754
# allows both), so the least surprising for other verifiers.
RSA_PKCS1_SHA256 = SignatureAlgorithm("sha256WithRSAEncryption", "rsassa_pkcs1v15")


@runtime_checkable
class Signer(Protocol):
    """A private key that signs with SHA-256, with its certificate and chain.

    `chain` holds the intermediates from the issuer of `certificate` up to, but excluding, the
    root: what goes into a CMS `certificates` set besides the signer's own certificate.
    """

    @property
    def certificate(self) -> x509.Certificate: ...

    @property
    def chain(self) -> list[x509.Certificate]: ...

    @property
    def algorithm(self) -> SignatureAlgorithm: ...

    @abstractmethod
    def sign(self, data: bytes) -> bytes:
        """Signature over `data` (hashed here with SHA-256): DER ECDSA-Sig-Value or PKCS#1 v1.5."""


class FileSigner:
    """A software key held in memory (loaded from PEM files or given directly).

    repr/str name the certificate only, and pickling is refused: the private key must not end up
    in logs, tracebacks, caches or queues by accident.
    """

    __slots__ = ("_algorithm", "_certificate", "_chain", "_key")

    def __init__(
        self,
        private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            algorithm = ECDSA_SHA256
        elif isinstance(private_key, rsa.RSAPrivateKey):
            algorithm = RSA_PKCS1_SHA256
        else:
            raise SignerError(f"unsupported key type {type(private_key).__name__}: use EC or RSA")
        if private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise SignerError(
                f"private key does not match certificate {certificate.subject.rfc4514_string()}"
            )
        self._key = private_key
        self._certificate = certificate
        self._chain = list(chain)
        self._algorithm = algorithm

    @classmethod
    def load(
        cls,
        key_pem_path: str | os.PathLike[str],
        cert_pem_path: str | os.PathLike[str],
        chain_pem_path: str | os.PathLike[str] | None = None,
        password: bytes | None = None,
    ) -> FileSigner:
        """Key (PKCS#8 or traditional PEM), certificate PEM, optional PEM file of intermediates
        (an empty one means none, as a Secret key that must exist but has nothing to hold)."""
        try:
            key = serialization.load_pem_private_key(
                Path(key_pem_path).read_bytes(), password=password
            )
        except (ValueError, TypeError) as exc:
            # The message of these errors never contains key material, only what went wrong.
            raise SignerError(f"cannot load private key {key_pem_path}: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise SignerError(f"unsupported key type {type(key).__name__} in {key_pem_path}")
        certificate = x509.load_pem_x509_certificate(Path(cert_pem_path).read_bytes())
        chain: list[x509.Certificate] = []
        chain_pem = Path(chain_pem_path).read_bytes() if chain_pem_path is not None else b""
        if chain_pem.strip():
            chain = x509.load_pem_x509_certificates(chain_pem)
            # A chain file often starts with the leaf itself (tsa-chain.pem does): skip it.
            chain = [c for c in chain if c != certificate]
        return cls(key, certificate, chain)

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def chain(self) -> list[x509.Certificate]:
        return list(self._chain)

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    def sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(hashes.SHA256()))
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def __repr__(self) -> str:
        return (
            f"FileSigner(subject={self._certificate.subject.rfc4514_string()!r}, "
            f"algorithm={self._algorithm.name!r})"
        )

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("FileSigner holds a private key and cannot be pickled or copied")


# ---------------------------------------------------------------------------------------------
# Development PKI
# ---------------------------------------------------------------------------------------------

_VALIDITY = dt.timedelta(days=3652)  # ten years, leap days included
_BACKDATE = dt.timedelta(minutes=5)  # tolerate small clock differences between machines


def _name(organisation: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_usage(
    *, digital_signature: bool = False, content_commitment: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=content_commitment,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
    now: dt.datetime,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # two processes starting at once generate only one PKI
        yield
    finally:
        os.close(fd)


class DevelopmentPKI:
    """A self-contained root, seal certificate and TSA certificate for development and tests.

    Not for production: the keys sit unencrypted on disk. Production plugs a `Signer` backed by
    a qualified seal certificate and an HSM into the same code.
    """

    ROOT = "root.pem"
    SEAL_CERT = "seal.pem"
    SEAL_KEY = "seal-key.pem"
    TSA_CERT = "tsa.pem"
    TSA_KEY = "tsa-key.pem"
    TSA_CHAIN = "tsa-chain.pem"

    def __init__(self, directory: Path, root_certificate: x509.Certificate) -> None:
        self.directory = directory
        self._root = root_certificate

    @classmethod
    def ensure(
        cls, directory: str | os.PathLike[str], organisation: str = DEFAULT_ORGANISATION
    ) -> DevelopmentPKI:
        """Generate the PKI under `directory` on first use; load the existing one afterwards."""
        path = Path(directory)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)
        with _locked(path):
            if not (path / cls.ROOT).exists():
                cls._generate(path, organisation, dt.datetime.now(dt.UTC))
            root = x509.load_pem_x509_certificate((path / cls.ROOT).read_bytes())
        return cls(path, root)

    @classmethod
    def _generate(cls, path: Path, organisation: str, now: dt.datetime) -> None:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = _issue(
            _name(organisation, f"{organisation} Development Root CA"),
            root_key.public_key(),
            None,
            root_key,
            [
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (_key_usage(cert_sign=True), True),
            ],
            now,
        )
        seal_key = ec.generate_private_key(ec.SECP256R1())
        seal = _issue(
            _name(organisation, f"{organisation} Electronic Seal"),
            seal_key.public_key(),
            root,
            root_key,
            [
                (x509.BasicConstraints(ca=False, path_length=None), True),
                # No extended key usage: a seal is not an S/MIME or TLS key, and without the
                # extension every verifier purpose check accepts it.
                (_key_usage(digital_signature=True, content_commitment=True), True),
            ],
            now,
        )
        tsa_key = ec.generate_private_key(ec.SECP256R1())
        tsa = _issue(
            _name(organisation, f"{organisation} Time-Stamping Unit"),
            tsa_key.public_key(),
            root,
            root_key,
            [
                (x509.BasicConstraints(ca=False, path_length=None), True),
                (_key_usage(digital_signature=True), True),
                # RFC 3161 2.3: exactly id-kp-timeStamping, and the extension MUST be critical.
                (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True),
            ],
            now,
        )
        atomic_write(path / cls.SEAL_KEY, _key_pem(seal_key), 0o600)
        atomic_write(path / cls.SEAL_CERT, _pem(seal), 0o644)
        atomic_write(path / cls.TSA_KEY, _key_pem(tsa_key), 0o600)
        atomic_write(path / cls.TSA_CERT, _pem(tsa), 0o644)
        atomic_write(path / cls.TSA_CHAIN, _pem(tsa), 0o644)
        atomic_write(path / cls.ROOT, _pem(root), 0o644)  # last: marks the set complete

    @property
    def root_certificate(self) -> x509.Certificate:
        return self._root

    def seal_signer(self) -> FileSigner:
        return FileSigner.load(self.directory / self.SEAL_KEY, self.directory / self.SEAL_CERT)

    def tsa_signer(self) -> FileSigner:
        return FileSigner.load(
            self.directory / self.TSA_KEY,
            self.directory / self.TSA_CERT,
            self.directory / self.TSA_CHAIN,
        )

    def __repr__(self) -> str:
        return f"DevelopmentPKI(directory={str(self.directory)!r})"
