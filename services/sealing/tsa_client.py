"""Asking a time-stamp authority for a token (RFC 3161), and checking the answer against the
TSA's own trust anchor before the sealer uses it.

`TsaClient` builds the query (SHA-256 imprint, random nonce, certReq), hands it to a transport
and verifies what comes back: granted, imprint and nonce echoed, signature, timeStamping EKU,
and a chain from the TSA certificate to one of the configured TSA roots (ARCHIVE_TSA_ROOT_FILE),
through the certificates in the token and the configured intermediates (ARCHIVE_TSA_CHAIN_FILE).
The path that validated is returned with the token: it goes into the checkpoint record and into
every evidence bundle, so the time stamp verifies later without asking anyone.

Transports: `HttpTransport` (RFC 3161 3.4 over HTTP(S), with httpx: keep-alive, proxies from the
environment, redirects followed, TLS verified against the system's roots or ARCHIVE_TSA_CA_FILE,
timeouts) for a real TSA, and services/sealing/dev_tsa.py's `InProcessTsa` for development.

Errors say who is at fault: `TsaUnavailable` (no answer, or an HTTP error: try again later),
`TsaRefused` (the TSA answered and said no) and `TsaInvalidResponse` (it answered something that
is not a valid token for our query). Retries are the sealer's.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Final, Protocol

import httpx
from cryptography import x509

from archive.sealing.cms import SignedDataInvalid
from archive.sealing.timestamps import (
    TIMESTAMP_QUERY,
    TIMESTAMP_REPLY,
    ResponseStatus,
    build_request,
    response_status,
    verify_timestamp_response,
)

__all__ = [
    "GrantedTimestamp",
    "HttpTransport",
    "TimestampError",
    "TsaClient",
    "TsaInvalidResponse",
    "TsaRefused",
    "TsaTransport",
    "TsaTrust",
    "TsaUnavailable",
]

# Some TSAs still answer with the media type of the old drafts.
_REPLY_TYPES: Final = frozenset({TIMESTAMP_REPLY, "application/timestamp-response"})
# A token is a few kilobytes; anything this large is not one (and must not exhaust memory).
MAX_RESPONSE_BYTES: Final = 1024 * 1024


class TimestampError(Exception):
    """Base class of the time-stamping client's errors."""


class TsaUnavailable(TimestampError):
    """The TSA could not be reached or did not answer over HTTP properly (worth a retry)."""


class TsaRefused(TimestampError):
    """The TSA answered with a status other than granted."""

    def __init__(self, tsa: str, status: ResponseStatus) -> None:
        self.status = status
        text = f": {status.text}" if status.text and status.text not in status.describe() else ""
        super().__init__(f"{tsa} refused the time stamp: {status.describe()}{text}")


class TsaInvalidResponse(TimestampError):
    """The TSA answered something that is no valid token for our query: not a TimeStampResp,
    wrong imprint or nonce, a bad signature, or a certificate that does not chain to the TSA
    root we trust."""


class TsaTransport(Protocol):
    """Carries one DER TimeStampReq to a TSA and brings back its DER TimeStampResp."""

    @property
    def name(self) -> str:
        """Who is asked, for messages (the URL)."""
        ...

    async def exchange(self, query: bytes) -> bytes:
        """The TSA's answer; TsaUnavailable or TsaInvalidResponse when there is none."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class TsaTrust:
    """What a TSA's tokens must chain to (`roots`) and the intermediates that may be needed to
    get there (`chain`: TSAs often put only their own certificate into a token)."""

    roots: tuple[x509.Certificate, ...]
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("a TSA needs at least one trusted root")


@dataclass(frozen=True)
class GrantedTimestamp:
    """A verified TimeStampResp, the time it certifies, and the path that validated it: the
    TSA certificate and its intermediates (`chain`), then the TSA root it chains to (`root`)."""

    response: bytes
    gen_time: datetime
    chain: tuple[x509.Certificate, ...]
    root: x509.Certificate


class HttpTransport:
    """RFC 3161 over HTTP(S): POST application/timestamp-query, answer
    application/timestamp-reply. One pooled httpx client: connections are kept alive between
    checkpoints, HTTP(S)_PROXY and NO_PROXY are honoured, redirects followed (307/308 keep the
    POST), and https:// is verified against `ca_file` or, without one, the default roots.

    `timeout` bounds the whole exchange (connect, send, answer), not each step.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        ca_file: Path | None = None,
        max_response: int = MAX_RESPONSE_BYTES,
    ) -> None:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"a TSA URL is http:// or https://, got {url!r}")
        self.url = url
        self.timeout = timeout
        self.max_response = max_response
        verify: ssl.SSLContext | bool = True
        if ca_file is not None:
            verify = ssl.create_default_context(cafile=str(ca_file))
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            follow_redirects=True,
            max_redirects=5,
            verify=verify,
            trust_env=True,
            headers={"Accept": TIMESTAMP_REPLY},
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        )

    @property
    def name(self) -> str:
        return self.url

    async def exchange(self, query: bytes) -> bytes:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post(query)
        except TimeoutError:
            raise TsaUnavailable(f"{self.url}: no answer within {self.timeout:g} s") from None
        except httpx.TimeoutException:
            raise TsaUnavailable(f"{self.url}: no answer within {self.timeout:g} s") from None
        except httpx.TooManyRedirects:
            raise TsaUnavailable(f"{self.url}: too many redirects") from None
        except httpx.TransportError as exc:  # connect, TLS, proxy, protocol and read errors
            raise TsaUnavailable(f"{self.url}: {exc or type(exc).__name__}") from None

    async def _post(self, query: bytes) -> bytes:
        async with self._client.stream(
            "POST", self.url, content=query, headers={"Content-Type": TIMESTAMP_QUERY}
        ) as response:
            if response.status_code != httpx.codes.OK:
                raise TsaUnavailable(
                    f"{self.url}: HTTP {response.status_code} {response.reason_phrase}".rstrip()
                )
            media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type not in _REPLY_TYPES:
                raise TsaInvalidResponse(
                    f"{self.url}: answered {media_type or 'no Content-Type'}, not {TIMESTAMP_REPLY}"
                )
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > self.max_response:
                    raise TsaInvalidResponse(
                        f"{self.url}: answer larger than {self.max_response} bytes"
                    )
            return bytes(body)

    async def aclose(self) -> None:
        await self._client.aclose()


class TsaClient:
    """Time stamps from one TSA, each verified against `trust` before it is returned."""

    def __init__(
        self, transport: TsaTransport, trust: TsaTrust, *, policy_oid: str | None = None
    ) -> None:
        self.transport = transport
        self.trust = trust
        self.policy_oid = policy_oid

    async def timestamp(self, data: bytes) -> GrantedTimestamp:
        """A verified time stamp of `data`; TsaUnavailable, TsaRefused or TsaInvalidResponse."""
        request = build_request(data, policy_oid=self.policy_oid)
        answer = await self.transport.exchange(request.der)
        tsa = self.transport.name
        try:
            status = response_status(answer)
        except SignedDataInvalid as exc:
            raise TsaInvalidResponse(f"{tsa}: {exc}") from None
        if not status.granted:
            raise TsaRefused(tsa, status)
        verified = verify_timestamp_response(
            answer,
            data,
            self.trust.roots,
            nonce=request.nonce,
            untrusted=self.trust.chain,
            policy=self.policy_oid,
        )
        if not verified.ok or verified.gen_time is None or not verified.chain:
            raise TsaInvalidResponse(f"{tsa}: {verified.reason}")
        *chain, root = verified.chain
        return GrantedTimestamp(answer, verified.gen_time, tuple(chain), root)

    async def aclose(self) -> None:
        await self.transport.aclose()

    async def __aenter__(self) -> TsaClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
