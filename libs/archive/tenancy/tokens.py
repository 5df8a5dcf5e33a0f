"""Tenant bearer tokens: "arc_<token_id>_<secret>".

The token id is public (listed, used to revoke); the secret part is 32 random bytes. Only the
SHA-256 of the whole token is ever stored, so a leak of the event store leaks no usable token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from typing import Final

from archive.config import Secret

TOKEN_PREFIX: Final = "arc_"
TOKEN_ID_LENGTH: Final = 12
SECRET_BYTES: Final = 32
# Lower-case letters and digits only, so "_" can separate the parts unambiguously.
_TOKEN_ID_ALPHABET: Final = string.ascii_lowercase + string.digits
_TOKEN_ID_RE: Final = re.compile(rf"^[a-z0-9]{{{TOKEN_ID_LENGTH}}}$")
# token_urlsafe(32) gives 43 characters of [A-Za-z0-9_-].
_TOKEN_RE: Final = re.compile(
    rf"^{TOKEN_PREFIX}(?P<token_id>[a-z0-9]{{{TOKEN_ID_LENGTH}}})_(?P<secret>[A-Za-z0-9_-]{{43,128}})$"
)


@dataclass(frozen=True)
class GeneratedToken:
    token_id: str
    # The bearer token itself; handed to the caller once, never stored.
    token: Secret
    sha256: bytes


def generate_token() -> GeneratedToken:
    token_id = "".join(secrets.choice(_TOKEN_ID_ALPHABET) for _ in range(TOKEN_ID_LENGTH))
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return GeneratedToken(token_id=token_id, token=Secret(token), sha256=hash_token(token))


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def token_id_of(token: str) -> str | None:
    """The token id of a well-formed token, else None (garbage is refused before any lookup)."""
    match = _TOKEN_RE.match(token)
    return match.group("token_id") if match else None


def is_valid_token_id(token_id: str) -> bool:
    return bool(_TOKEN_ID_RE.match(token_id))


def digest_matches(token: str, expected_sha256: bytes) -> bool:
    """Constant-time check of a presented token against a stored hash."""
    return hmac.compare_digest(hash_token(token), expected_sha256)
