"""Throwaway TLS material for tests: a CA, a server certificate it issued for 127.0.0.1 and
localhost, and an unrelated CA (whose trust must fail)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA that issued the server's certificate
    other_ca: Path  # a CA that did not
    cert: Path
    key: Path


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    """A CA certificate (no issuer: self-signed), or a server certificate for 127.0.0.1 and
    localhost issued by `issuer` (its name and key)."""
    now = datetime.now(UTC)
    issuer_name, signer = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    return builder.sign(signer, hashes.SHA256())


def make_tls_files(directory: Path) -> TlsFiles:
    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    files = TlsFiles(*(directory / n for n in ("ca.pem", "other-ca.pem", "cert.pem", "key.pem")))
    files.ca.write_bytes(_certificate("test CA", ca_key).public_bytes(Encoding.PEM))
    files.other_ca.write_bytes(_certificate("other CA", other_key).public_bytes(Encoding.PEM))
    server = _certificate("archive", server_key, ("test CA", ca_key))
    files.cert.write_bytes(server.public_bytes(Encoding.PEM))
    files.key.write_bytes(
        server_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    )
    return files
