"""The tests' PKI (a pytest plugin, see conftest.py): one development PKI for the whole session,
and the `openssl` command the interop tests run, which must be installed: a missing one fails
the test, saying what to install, instead of skipping the checks that carry our central claim.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from archive.sealing.keys import DevelopmentPKI, FileSigner

__all__ = ["OPENSSL_MISSING", "ForeignTsaPki", "openssl", "openssl_binary"]

OPENSSL_MISSING: Final = (
    "the openssl command is not installed, and the interop tests verify our seals and time "
    "stamps with it: install it (`apt-get install openssl`; `make test` does so when run as "
    "root)"
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> DevelopmentPKI:
    """Root, seal and TSA certificates with their keys, made once (key generation is slow);
    tests only read it."""
    return DevelopmentPKI.ensure(tmp_path_factory.mktemp("pki") / "certs")


@dataclass(frozen=True)
class ForeignTsaPki:
    """A time-stamp authority's PKI that is not ours: its own root, an intermediate CA, and a
    TSA certificate (critical id-kp-timeStamping) issued by the intermediate, as PEM files."""

    directory: Path
    root: x509.Certificate
    intermediate: x509.Certificate
    signer: FileSigner  # the TSA certificate and key; its chain is the intermediate

    @property
    def root_file(self) -> Path:
        return self.directory / "tsa-root.pem"

    @property
    def intermediate_file(self) -> Path:
        return self.directory / "tsa-intermediate.pem"

    @classmethod
    def issue(cls, directory: Path, name: str = "Foreign Time Authority") -> ForeignTsaPki:
        directory.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)
        root_key, ca_key, tsa_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
        root = _certificate(f"{name} Root", root_key, None, root_key, now, ca=True)
        intermediate = _certificate(f"{name} CA 1", ca_key, root, root_key, now, ca=True)
        tsa = _certificate(f"{name} TSU", tsa_key, intermediate, ca_key, now, ca=False)
        pem = serialization.Encoding.PEM
        (directory / "tsa-root.pem").write_bytes(root.public_bytes(pem))
        (directory / "tsa-intermediate.pem").write_bytes(intermediate.public_bytes(pem))
        (directory / "tsa.pem").write_bytes(tsa.public_bytes(pem))
        (directory / "tsa-key.pem").write_bytes(
            tsa_key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cls(directory, root, intermediate, FileSigner(tsa_key, tsa, [intermediate]))


def _certificate(
    common_name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: dt.datetime,
    *,
    ca: bool,
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="session")
def foreign_tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> ForeignTsaPki:
    """A TSA PKI of somebody else's (root, intermediate, TSA certificate), made once."""
    return ForeignTsaPki.issue(tmp_path_factory.mktemp("foreign-tsa"))


def openssl_binary() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.fail(OPENSSL_MISSING, pytrace=False)
    return path


@pytest.fixture
def openssl_installed() -> str:
    """The openssl binary; fails the test when there is none."""
    return openssl_binary()


def openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `openssl ARGS` (failing the test when it is not installed); never raises on its
    exit status: the caller asserts on it."""
    return subprocess.run(
        [openssl_binary(), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        check=False,
    )
