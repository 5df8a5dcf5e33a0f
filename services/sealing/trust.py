"""What the sealing service signs with and what it trusts, from the settings: the seal key, its
certificate, intermediates and root; the time-stamp authority's root and intermediates; in
development, the built-in TSA's key.

Production (ARCHIVE_PROFILE=production, the default) takes everything from files, in
Kubernetes a Secret mounted read-only (docs/deploy.md), and refuses to start without a seal
key, its certificate and root, and an external TSA (ARCHIVE_TSA_URL) with its own root
(ARCHIVE_TSA_ROOT_FILE); a built-in TSA key is refused there: a provider that stamps its own
time proves nothing. Development (`archive up`) generates what is not given under
<data_dir>/pki on first start and stamps with the built-in TSA unless a URL is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from archive.config import ConfigError, Settings
from archive.sealing.cms import SignedDataInvalid, validate_chain
from archive.sealing.keys import DevelopmentPKI, FileSigner, Signer, SignerError

__all__ = ["Keys", "load_keys", "require_production_settings"]

# What production needs, by variable, with what each is.
_PRODUCTION_NEEDS = (
    ("ARCHIVE_SEAL_KEY_FILE", "seal_key_file", "the seal's private key"),
    ("ARCHIVE_SEAL_CERT_FILE", "seal_cert_file", "the seal certificate"),
    ("ARCHIVE_SEAL_ROOT_FILE", "seal_root_file", "the root the seal certificate chains to"),
    ("ARCHIVE_TSA_URL", "tsa_url", "the external RFC 3161 time-stamp authority"),
    ("ARCHIVE_TSA_ROOT_FILE", "tsa_root_file", "the root that authority's certificate chains to"),
)


@dataclass(frozen=True)
class Keys:
    """The seal signer and root, and what time stamps must chain to: `tsa_roots` through
    `tsa_chain` (intermediates a TSA may leave out of its tokens). `tsa` signs time stamps in
    process: the built-in TSA of the development profile, None with an external TSA."""

    seal: Signer
    root: x509.Certificate
    tsa_roots: tuple[x509.Certificate, ...]
    tsa_chain: tuple[x509.Certificate, ...] = ()
    tsa: Signer | None = None

    @classmethod
    def of_development_pki(cls, pki: DevelopmentPKI) -> Keys:
        """The generated PKI: its root anchors both the seal and the built-in TSA."""
        tsa = pki.tsa_signer()
        return cls(
            pki.seal_signer(),
            pki.root_certificate,
            (pki.root_certificate,),
            (tsa.certificate, *tsa.chain),
            tsa,
        )


def require_production_settings(settings: Settings) -> None:
    """Refuse, naming the variables, what production must not run without or with."""
    if settings.tsa_key_file is not None or settings.tsa_cert_file is not None:
        variable = "ARCHIVE_TSA_KEY_FILE" if settings.tsa_key_file else "ARCHIVE_TSA_CERT_FILE"
        raise ConfigError(
            variable,
            "the built-in time-stamp authority runs only with ARCHIVE_PROFILE=development; in "
            "production the time comes from an external TSA (ARCHIVE_TSA_URL, "
            "ARCHIVE_TSA_ROOT_FILE)",
        )
    missing = [
        (name, what) for name, field, what in _PRODUCTION_NEEDS if not getattr(settings, field)
    ]
    if missing:
        raise ConfigError(
            missing[0][0],
            "sealing in production (ARCHIVE_PROFILE=production, the default) needs "
            + ", ".join(f"{name} ({what})" for name, what in missing)
            + "; mount them from a Secret (docs/deploy.md), or set ARCHIVE_PROFILE=development "
            "for a throwaway PKI and the built-in TSA",
        )


def _certificates(
    variable: str, path: Path, *, may_be_empty: bool = False
) -> tuple[x509.Certificate, ...]:
    """The PEM certificates of a file; a chain file may be empty (no intermediates)."""
    try:
        pem = path.read_bytes()
        if may_be_empty and not pem.strip():
            return ()
        certificates = x509.load_pem_x509_certificates(pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(variable, f"{path}: not PEM certificates ({exc})") from None
    if not certificates:
        raise ConfigError(variable, f"{path}: holds no certificate")
    return tuple(certificates)


def _signer(key_variable: str, key: Path, cert: Path, chain: Path | None) -> FileSigner:
    try:
        return FileSigner.load(key, cert, chain)
    except (SignerError, OSError, ValueError) as exc:
        raise ConfigError(key_variable, str(exc)) from None


def _needs(settings: Settings, given: str, *fields: tuple[str, str]) -> None:
    for variable, field in fields:
        if getattr(settings, field) is None:
            raise ConfigError(variable, f"{given} is set: set {variable} too")


def load_keys(settings: Settings) -> Keys:
    """The keys and trust anchors of the settings' profile; ConfigError naming the variable."""
    if settings.profile != "development":
        require_production_settings(settings)
    own_tsa = not (settings.tsa_url or settings.tsa_key_file or settings.tsa_cert_file)
    # Production has every file (checked above), so it never gets here with a PKI to make.
    pki = None
    if settings.seal_key_file is None or own_tsa:
        pki = DevelopmentPKI.ensure(settings.data_dir / "pki")
    seal, root = _seal(settings, pki)
    tsa, tsa_roots, tsa_chain = _time_stamping(settings, pki)
    return Keys(seal, root, tsa_roots, tsa_chain, tsa)


def _seal(settings: Settings, pki: DevelopmentPKI | None) -> tuple[Signer, x509.Certificate]:
    if settings.seal_key_file is None:
        assert pki is not None
        return pki.seal_signer(), pki.root_certificate
    _needs(
        settings,
        "ARCHIVE_SEAL_KEY_FILE",
        ("ARCHIVE_SEAL_CERT_FILE", "seal_cert_file"),
        ("ARCHIVE_SEAL_ROOT_FILE", "seal_root_file"),
    )
    assert settings.seal_cert_file is not None and settings.seal_root_file is not None
    seal = _signer(
        "ARCHIVE_SEAL_KEY_FILE",
        settings.seal_key_file,
        settings.seal_cert_file,
        settings.seal_chain_file,
    )
    root = _certificates("ARCHIVE_SEAL_ROOT_FILE", settings.seal_root_file)[0]
    try:  # seals that no verifier accepts must not be made: refuse at start instead
        validate_chain(seal.certificate, seal.chain, [root], datetime.now(UTC))
    except SignedDataInvalid as exc:
        raise ConfigError(
            "ARCHIVE_SEAL_ROOT_FILE",
            f"the seal certificate ({settings.seal_cert_file}) does not chain to it: {exc}",
        ) from None
    return seal, root


_Certificates = tuple[x509.Certificate, ...]


def _time_stamping(
    settings: Settings, pki: DevelopmentPKI | None
) -> tuple[Signer | None, _Certificates, _Certificates]:
    """(built-in TSA signer or None, TSA roots, TSA intermediates)."""
    chain: _Certificates = ()
    if settings.tsa_chain_file is not None:
        chain = _certificates("ARCHIVE_TSA_CHAIN_FILE", settings.tsa_chain_file, may_be_empty=True)
    if settings.tsa_url:
        if settings.tsa_key_file is not None:
            raise ConfigError(
                "ARCHIVE_TSA_KEY_FILE",
                "ARCHIVE_TSA_URL names the TSA, so the built-in one's key is not used: unset "
                "one of the two",
            )
        if settings.tsa_root_file is None:
            raise ConfigError(
                "ARCHIVE_TSA_ROOT_FILE",
                "ARCHIVE_TSA_URL is set: give the root its certificate chains to (PEM); the "
                "seal's root does not vouch for somebody else's TSA",
            )
        return None, _certificates("ARCHIVE_TSA_ROOT_FILE", settings.tsa_root_file), chain
    if settings.tsa_key_file is None and settings.tsa_cert_file is None:
        assert pki is not None
        signer = pki.tsa_signer()
        return signer, (pki.root_certificate,), (signer.certificate, *signer.chain)
    _needs(
        settings,
        "ARCHIVE_TSA_KEY_FILE or ARCHIVE_TSA_CERT_FILE",
        ("ARCHIVE_TSA_KEY_FILE", "tsa_key_file"),
        ("ARCHIVE_TSA_CERT_FILE", "tsa_cert_file"),
        ("ARCHIVE_TSA_ROOT_FILE", "tsa_root_file"),
    )
    assert settings.tsa_key_file is not None and settings.tsa_cert_file is not None
    assert settings.tsa_root_file is not None
    signer = _signer(
        "ARCHIVE_TSA_KEY_FILE",
        settings.tsa_key_file,
        settings.tsa_cert_file,
        settings.tsa_chain_file,
    )
    roots = _certificates("ARCHIVE_TSA_ROOT_FILE", settings.tsa_root_file)
    return signer, roots, (signer.certificate, *signer.chain)
