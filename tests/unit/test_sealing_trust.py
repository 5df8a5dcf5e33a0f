"""What sealing signs with and trusts (services/sealing/trust.py): keys from files as a
Kubernetes Secret mounts them, the development PKI, and the refusals that keep production from
starting without its keys and an external time-stamp authority, or with a TSA of its own."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pki import ForeignTsaPki

from archive.config import ConfigError, Settings
from archive.sealing.cms import seal_detached, verify_detached
from archive.sealing.keys import DevelopmentPKI
from services.sealing.dev_tsa import InProcessTsa
from services.sealing.main import tsa_client
from services.sealing.trust import Keys, load_keys
from services.sealing.tsa_client import HttpTransport

TSA_URL = "https://tsa.example.invalid/rfc3161"
PRODUCTION_VARIABLES = (
    "ARCHIVE_SEAL_KEY_FILE",
    "ARCHIVE_SEAL_CERT_FILE",
    "ARCHIVE_SEAL_ROOT_FILE",
    "ARCHIVE_TSA_URL",
    "ARCHIVE_TSA_ROOT_FILE",
)


@pytest.fixture
def secret(pki: DevelopmentPKI, foreign_tsa_pki: ForeignTsaPki, tmp_path: Path) -> Path:
    """A directory laid out as the sealing Secret is mounted (docs/deploy.md): the seal key,
    certificate and root, the TSA's root and intermediates."""
    directory = tmp_path / "secret"
    directory.mkdir()
    shutil.copy(pki.directory / DevelopmentPKI.SEAL_KEY, directory / "seal-key.pem")
    shutil.copy(pki.directory / DevelopmentPKI.SEAL_CERT, directory / "seal.pem")
    (directory / "seal-chain.pem").write_text("")  # the seal is issued by the root itself
    shutil.copy(pki.directory / DevelopmentPKI.ROOT, directory / "seal-root.pem")
    shutil.copy(foreign_tsa_pki.root_file, directory / "tsa-root.pem")
    shutil.copy(foreign_tsa_pki.intermediate_file, directory / "tsa-chain.pem")
    for path in directory.iterdir():
        path.chmod(0o400)
    return directory


def production_env(secret: Path, tmp_path: Path) -> dict[str, str]:
    return {
        "ARCHIVE_DATA_DIR": str(tmp_path / "data"),
        "ARCHIVE_SEAL_KEY_FILE": str(secret / "seal-key.pem"),
        "ARCHIVE_SEAL_CERT_FILE": str(secret / "seal.pem"),
        "ARCHIVE_SEAL_CHAIN_FILE": str(secret / "seal-chain.pem"),
        "ARCHIVE_SEAL_ROOT_FILE": str(secret / "seal-root.pem"),
        "ARCHIVE_TSA_URL": TSA_URL,
        "ARCHIVE_TSA_ROOT_FILE": str(secret / "tsa-root.pem"),
        "ARCHIVE_TSA_CHAIN_FILE": str(secret / "tsa-chain.pem"),
    }


def test_production_is_the_default_profile() -> None:
    assert Settings().profile == "production"
    assert Settings.from_env({}).profile == "production"
    assert Settings.from_env({"ARCHIVE_PROFILE": "Development"}).profile == "development"
    with pytest.raises(ConfigError, match="ARCHIVE_PROFILE: 'staging' is not one of"):
        Settings.from_env({"ARCHIVE_PROFILE": "staging"})


def test_production_loads_file_keys_and_trusts_the_tsa_root_it_is_given(
    secret: Path, tmp_path: Path, pki: DevelopmentPKI, foreign_tsa_pki: ForeignTsaPki
) -> None:
    settings = Settings.from_env(production_env(secret, tmp_path))
    keys = load_keys(settings)
    assert keys.tsa is None, "production never stamps its own time"
    assert keys.root == pki.root_certificate
    assert keys.tsa_roots == (foreign_tsa_pki.root,)
    assert keys.tsa_chain == (foreign_tsa_pki.intermediate,)
    # The seal key is the one of the files: its seals verify against the seal root.
    assert verify_detached(seal_detached(b"x", keys.seal), b"x", [keys.root]).ok
    assert not (tmp_path / "data" / "pki").exists(), "no development PKI is generated"
    client = tsa_client(settings, keys)
    assert isinstance(client.transport, HttpTransport) and client.transport.url == TSA_URL


def test_production_refuses_to_start_without_its_keys_naming_every_variable(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_keys(Settings.from_env({"ARCHIVE_DATA_DIR": str(tmp_path)}))
    assert caught.value.variable == "ARCHIVE_SEAL_KEY_FILE"
    for variable in PRODUCTION_VARIABLES:
        assert variable in str(caught.value)
    assert "ARCHIVE_PROFILE=development" in str(caught.value)
    assert not (tmp_path / "pki").exists()


@pytest.mark.parametrize("missing", PRODUCTION_VARIABLES)
def test_production_refuses_each_missing_setting(
    secret: Path, tmp_path: Path, missing: str
) -> None:
    env = production_env(secret, tmp_path)
    del env[missing]
    with pytest.raises(ConfigError) as caught:
        load_keys(Settings.from_env(env))
    assert caught.value.variable == missing


@pytest.mark.parametrize("variable", ["ARCHIVE_TSA_KEY_FILE", "ARCHIVE_TSA_CERT_FILE"])
def test_production_refuses_the_built_in_tsa(
    secret: Path, tmp_path: Path, pki: DevelopmentPKI, variable: str
) -> None:
    env = production_env(secret, tmp_path)
    env[variable] = str(pki.directory / DevelopmentPKI.TSA_KEY)
    with pytest.raises(ConfigError, match="only with ARCHIVE_PROFILE=development") as caught:
        load_keys(Settings.from_env(env))
    assert caught.value.variable == variable


def test_a_seal_certificate_that_does_not_chain_to_the_seal_root_is_refused(
    secret: Path, tmp_path: Path, foreign_tsa_pki: ForeignTsaPki
) -> None:
    env = production_env(secret, tmp_path)
    env["ARCHIVE_SEAL_ROOT_FILE"] = str(foreign_tsa_pki.root_file)
    with pytest.raises(ConfigError, match="does not chain to it") as caught:
        load_keys(Settings.from_env(env))
    assert caught.value.variable == "ARCHIVE_SEAL_ROOT_FILE"


def test_a_key_that_is_not_the_certificates_is_refused(
    secret: Path, tmp_path: Path, foreign_tsa_pki: ForeignTsaPki
) -> None:
    env = production_env(secret, tmp_path)
    env["ARCHIVE_SEAL_KEY_FILE"] = str(foreign_tsa_pki.directory / "tsa-key.pem")
    with pytest.raises(ConfigError, match="does not match certificate") as caught:
        load_keys(Settings.from_env(env))
    assert caught.value.variable == "ARCHIVE_SEAL_KEY_FILE"


def test_a_tsa_root_file_without_a_certificate_is_refused(secret: Path, tmp_path: Path) -> None:
    env = production_env(secret, tmp_path)
    (tmp_path / "empty.pem").write_text("")
    env["ARCHIVE_TSA_ROOT_FILE"] = str(tmp_path / "empty.pem")
    with pytest.raises(ConfigError) as caught:
        load_keys(Settings.from_env(env))
    assert caught.value.variable == "ARCHIVE_TSA_ROOT_FILE"


def test_an_empty_tsa_chain_file_means_no_intermediates(secret: Path, tmp_path: Path) -> None:
    env = production_env(secret, tmp_path)
    (tmp_path / "empty.pem").write_text("\n")
    env["ARCHIVE_TSA_CHAIN_FILE"] = str(tmp_path / "empty.pem")
    assert load_keys(Settings.from_env(env)).tsa_chain == ()


def test_the_old_trust_root_variable_is_refused_with_its_new_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ARCHIVE_SEAL_ROOT_FILE.*ARCHIVE_TSA_ROOT_FILE"):
        Settings.from_env({"ARCHIVE_TRUST_ROOT_FILE": str(tmp_path / "root.pem")})


def test_development_generates_a_pki_and_stamps_in_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, profile="development")
    keys = load_keys(settings)
    pki = DevelopmentPKI.ensure(tmp_path / "pki")  # what load_keys made, loaded again
    assert keys.root == pki.root_certificate and keys.tsa_roots == (pki.root_certificate,)
    assert keys.tsa is not None and keys.tsa.certificate == pki.tsa_signer().certificate
    assert isinstance(tsa_client(settings, keys).transport, InProcessTsa)
    assert load_keys(settings).root == keys.root, "the same PKI on the next start"


def test_development_with_an_external_tsa_needs_its_root(
    secret: Path, tmp_path: Path, foreign_tsa_pki: ForeignTsaPki
) -> None:
    settings = Settings(data_dir=tmp_path, profile="development", tsa_url=TSA_URL)
    with pytest.raises(ConfigError, match="seal's root does not vouch") as caught:
        load_keys(settings)
    assert caught.value.variable == "ARCHIVE_TSA_ROOT_FILE"
    keys = load_keys(
        Settings(
            data_dir=tmp_path,
            profile="development",
            tsa_url=TSA_URL,
            tsa_root_file=foreign_tsa_pki.root_file,
        )
    )
    assert keys.tsa is None and keys.tsa_roots == (foreign_tsa_pki.root,)


def test_development_keys_match_the_development_pki_helper(pki: DevelopmentPKI) -> None:
    keys = Keys.of_development_pki(pki)
    assert keys.tsa is not None
    assert keys.tsa_chain == (keys.tsa.certificate,)
    assert keys.tsa_roots == (keys.root,)
