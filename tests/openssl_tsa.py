"""A time-stamp authority that is not ours, for integration tests: OpenSSL's, with a PKI of its
own made by the openssl command (a root CA, an issuing CA, a time-stamping unit certificate
with the critical id-kp-timeStamping usage), answering RFC 3161 queries over HTTP by running
`openssl ts -reply` on each (tests/tsa_http.py serves them).

Its tokens carry the TSA certificate only (certReq), not the issuing CA: whoever verifies them
needs that intermediate from elsewhere, as with many real TSAs.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from pki import openssl
from tsa_http import Received, Reply, serving

__all__ = ["OpensslTsa", "running_openssl_tsa"]

POLICY = "1.3.6.1.4.1.99999.3161.77"
ORGANISATION = "Independent Time Ltd"

_CONFIG = """\
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused

[ root_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ issuing_ca ]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ tsu ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {directory}
serial = $dir/serial
signer_cert = $dir/tsa.pem
signer_key = $dir/tsa-key.pem
signer_digest = sha256
default_policy = {policy}
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True)
class OpensslTsa:
    directory: Path
    url: str
    received: list[Received]

    @property
    def root_file(self) -> Path:
        """Its root CA: what ARCHIVE_TSA_ROOT_FILE names."""
        return self.directory / "tsa-root.pem"

    @property
    def chain_file(self) -> Path:
        """Its issuing CA, which its tokens leave out: what ARCHIVE_TSA_CHAIN_FILE names."""
        return self.directory / "tsa-ca.pem"

    def certificate(self, name: str) -> x509.Certificate:
        """tsa-root.pem, tsa-ca.pem or tsa.pem."""
        return x509.load_pem_x509_certificate((self.directory / name).read_bytes())


def _run(*args: str | Path, cwd: Path) -> None:
    done = openssl(*args, cwd=cwd)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}:\n{done.stderr}"


def make_pki(directory: Path) -> Path:
    """Root CA, issuing CA and TSA certificate (ECDSA P-256) with the openssl command; returns
    the openssl configuration (also the TSA's)."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(_CONFIG.format(directory=directory, policy=POLICY))
    (directory / "serial").write_text("01\n")
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _run(
        "req", "-x509", "-config", config, "-extensions", "root_ca", *key,
        "-keyout", "root-key.pem", "-out", "tsa-root.pem", "-days", "30",
        "-subj", f"/O={ORGANISATION}/CN={ORGANISATION} Root CA",
        cwd=directory,
    )  # fmt: skip
    for name, issuer, extensions, common_name in (
        ("tsa-ca", "tsa-root", "issuing_ca", f"{ORGANISATION} Issuing CA"),
        ("tsa", "tsa-ca", "tsu", f"{ORGANISATION} Time-Stamping Unit 7"),
    ):
        issuer_key = "root-key.pem" if issuer == "tsa-root" else "tsa-ca-key.pem"
        _run(
            "req", "-new", "-config", config, *key, "-keyout", f"{name}-key.pem",
            "-out", f"{name}.csr", "-subj", f"/O={ORGANISATION}/CN={common_name}",
            cwd=directory,
        )  # fmt: skip
        _run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", issuer_key,
            "-CAcreateserial", "-days", "30", "-extfile", config, "-extensions", extensions,
            "-out", f"{name}.pem",
            cwd=directory,
        )  # fmt: skip
    return config


@contextmanager
def running_openssl_tsa(directory: Path) -> Iterator[OpensslTsa]:
    """OpenSSL as a TSA at an http://127.0.0.1 URL until the block ends."""
    config = make_pki(directory)
    lock = threading.Lock()  # `openssl ts -reply` increments its serial file
    work = directory / "queries"
    work.mkdir()

    def answer(received: Received) -> Reply:
        with lock:
            (work / "query.tsq").write_bytes(received.body)
            done = openssl(
                "ts", "-reply", "-config", config, "-queryfile", "query.tsq",
                "-out", "reply.tsr",
                cwd=work,
            )  # fmt: skip
            if done.returncode != 0:
                return Reply(done.stderr.encode(), 500, "text/plain")
            return Reply((work / "reply.tsr").read_bytes())

    with serving(answer) as endpoint:
        yield OpensslTsa(directory, endpoint.url, endpoint.received)
