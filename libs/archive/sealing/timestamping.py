"""RFC 3161 time stamps: requests, a built-in time-stamping authority, its HTTP transport
(RFC 3161 3.4), a client, and verification in Python.

A token proves that some data (here: a sealed checkpoint) existed at `genTime`, vouched for by a
TSA certificate carrying the critical id-kp-timeStamping extended key usage. Anyone can check a
response with

    openssl ts -verify -data X.txt -in X.tsr -CAfile root.pem -untrusted tsa-chain.pem

and `verify_timestamp_response` does the same checks offline. Tokens are CMS SignedData over an
encapsulated TSTInfo with the ESS signing-certificate-v2 attribute (RFC 5816), built with the
helpers of cms.py.

The HTTP pieces are deliberately minimal (asyncio streams, one request per connection,
Content-Length bodies): a TSA exchanges a few hundred bytes, no web framework is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from archive.sealing.cms import (
    DIGESTS,
    SignedDataInvalid,
    build_signed_data,
    check_signed_data,
    embedded_certificates,
    is_absent,
    load_signed_data,
    validate_chain,
)
from archive.sealing.keys import Signer

__all__ = [
    "DEFAULT_POLICY_OID",
    "TIMESTAMP_QUERY",
    "TIMESTAMP_REPLY",
    "TimeStampAuthority",
    "TimeStampResp",
    "TimestampError",
    "TimestampRequest",
    "TimestampVerification",
    "TsaClient",
    "TsaHttpServer",
    "TsaInvalidResponse",
    "TsaRefused",
    "TsaUnavailable",
    "build_request",
    "response_token",
    "verify_timestamp_response",
    "verify_timestamp_token",
]

log = logging.getLogger(__name__)

# Private enterprise arc 1.3.6.1.4.1.99999 (reserved for examples and private use), sub-arc 3161
# for time-stamping, policy 1: "development TSA, clock as good as the host's NTP".
DEFAULT_POLICY_OID = "1.3.6.1.4.1.99999.3161.1"
TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"
# Some TSAs still answer with the media type of the old drafts.
_REPLY_TYPES = frozenset({TIMESTAMP_REPLY, "application/timestamp-response"})
_GRANTED = frozenset({"granted", "granted_with_mods"})


class TimestampError(Exception):
    """Base class of the time-stamping client errors."""


class TsaUnavailable(TimestampError):
    """The TSA could not be reached or did not answer properly over HTTP (worth a retry)."""


class TsaRefused(TimestampError):
    """The TSA answered with a status other than granted."""

    def __init__(self, status: str, fail_info: set[str] | None, text: str | None) -> None:
        self.status = status
        self.fail_info = fail_info or set()
        self.text = text
        detail = ", ".join(sorted(self.fail_info)) or "no failure info"
        super().__init__(f"TSA refused: {status} ({detail})" + (f": {text}" if text else ""))


class TsaInvalidResponse(TimestampError):
    """The TSA granted a token that does not verify (wrong imprint or nonce, bad signature...)."""


class TimeStampResp(tsp.TimeStampResp):
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
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not (usage.digital_signature or usage.content_commitment):
        raise SignedDataInvalid("TSA certificate key usage does not allow signing")


def _verify_token(
    token_der: bytes,
    data: bytes,
    trusted_roots: Sequence[x509.Certificate] | None,
    nonce: int | None,
    untrusted: Sequence[x509.Certificate],
    policy: str | None,
) -> TimestampVerification:
    """All checks of a token; `trusted_roots=None` skips only the chain (client use)."""
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
    if trusted_roots is not None:
        intermediates = [*embedded_certificates(signed_data), *untrusted]
        # The certificate must have been valid when the stamp was made, not necessarily today.
        validate_chain(check.certificate, intermediates, trusted_roots, gen_time)
    return TimestampVerification(
        ok=True,
        gen_time=gen_time,
        tsa_subject=check.certificate.subject.rfc4514_string(),
        serial_number=tst["serial_number"].native,
        policy=token_policy,
        nonce=token_nonce,
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
        response = TimeStampResp.load(response_der, strict=True)
        response["status"]["status"].native  # noqa: B018 -- the outer structure must parse
    except (ValueError, TypeError, KeyError) as exc:
        raise SignedDataInvalid(f"malformed TimeStampResp: {exc}") from None
    return response


def _status(response: TimeStampResp) -> tuple[str, set[str] | None, str | None]:
    status = response["status"]
    text = status["status_string"].native
    return status["status"].native, status["fail_info"].native, "; ".join(text) if text else None


def response_token(response_der: bytes) -> bytes:
    """The TimeStampToken (DER ContentInfo) inside a granted TimeStampResp."""
    response = _load_response(response_der)
    if is_absent(response["time_stamp_token"]):
        raise SignedDataInvalid("response carries no token")
    return response["time_stamp_token"].dump()


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
    `trusted_roots` valid at genTime. `untrusted` adds certificates for path building (needed
    when the token was requested without certReq). Never raises for bad input.
    """

    def check() -> TimestampVerification:
        response = _load_response(response_der)
        status, fail_info, text = _status(response)
        if status not in _GRANTED:
            detail = ", ".join(sorted(fail_info or ())) or text or "no detail"
            raise SignedDataInvalid(f"TSA did not grant the request: {status} ({detail})")
        if is_absent(response["time_stamp_token"]):
            raise SignedDataInvalid("granted response carries no token")
        token = response["time_stamp_token"].dump()
        return _verify_token(token, data, trusted_roots, nonce, untrusted, policy)

    return _guarded(check)


# ---------------------------------------------------------------------------------------------
# The built-in TSA
# ---------------------------------------------------------------------------------------------

_ACCEPTED_IMPRINTS = {"sha256": 32, "sha384": 48, "sha512": 64}


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class TimeStampAuthority:
    """Answers DER TimeStampReqs with signed tokens (or rejections with a proper failInfo).

    Serial numbers are unique and increasing: the larger of "previous + 1" and the wall clock
    in microseconds, so they keep increasing across restarts of the process too.
    """

    def __init__(
        self,
        signer: Signer,
        policy_oid: str = DEFAULT_POLICY_OID,
        clock: Callable[[], dt.datetime] = _utc_now,
        accuracy: dt.timedelta | None = dt.timedelta(seconds=1),
    ) -> None:
        # Fail at start-up rather than hand out tokens no verifier accepts.
        try:
            check_tsa_certificate(signer.certificate)
        except SignedDataInvalid as exc:
            raise ValueError(f"unusable TSA certificate: {exc}") from None
        self.signer = signer
        self.policy_oid = policy_oid
        self.clock = clock
        self.accuracy = accuracy
        self._serial_lock = threading.Lock()  # respond() may run in worker threads
        self._last_serial = 0
        self._tsa_name = asn1_x509.GeneralName(
            name="directory_name",
            value=asn1_x509.Name.load(signer.certificate.subject.public_bytes()),
        )

    def _next_serial(self) -> int:
        with self._serial_lock:
            self._last_serial = max(self._last_serial + 1, time.time_ns() // 1000)
            return self._last_serial

    def _accuracy(self) -> dict[str, int] | None:
        if self.accuracy is None:
            return None
        micros_total = round(self.accuracy.total_seconds() * 1_000_000)
        seconds, rest = divmod(micros_total, 1_000_000)
        millis, micros = divmod(rest, 1000)
        fields = {"seconds": seconds, "millis": millis, "micros": micros}
        # Zero components are left out; millis/micros must be 1..999 when present.
        return {k: v for k, v in fields.items() if v}

    @staticmethod
    def _reject(fail_info: str, text: str) -> bytes:
        return TimeStampResp(
            {"status": {"status": "rejection", "status_string": [text], "fail_info": {fail_info}}}
        ).dump()

    def respond(self, request_der: bytes) -> bytes:
        """DER TimeStampResp for a DER TimeStampReq. Never raises: failures become rejections."""
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            # Read every field now (asn1crypto parses lazily) so garbage is caught here.
            version = request["version"].native
            hash_name = request["message_imprint"]["hash_algorithm"]["algorithm"].native
            digest = request["message_imprint"]["hashed_message"].native
            req_policy = request["req_policy"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
            has_extensions = not is_absent(request["extensions"]) and len(request["extensions"]) > 0
        except Exception as exc:  # whatever the parser trips over, the answer is badDataFormat
            return self._reject("bad_data_format", f"malformed request: {exc}")
        if version != "v1":
            return self._reject("bad_data_format", "unsupported request version")
        if hash_name not in _ACCEPTED_IMPRINTS:
            return self._reject("bad_alg", f"unsupported hash algorithm {hash_name}")
        if len(digest) != _ACCEPTED_IMPRINTS[hash_name]:
            return self._reject("bad_data_format", f"imprint length wrong for {hash_name}")
        if req_policy is not None and req_policy != self.policy_oid:
            return self._reject("unaccepted_policy", f"policy {req_policy} not offered")
        if has_extensions:
            return self._reject("unaccepted_extensions", "no request extensions supported")
        try:
            return self._grant(request["message_imprint"], nonce, cert_req)
        except Exception:  # signer/HSM failure: the client gets systemFailure, we get a log
            log.exception("time-stamp signing failed")
            return self._reject("system_failure", "time-stamp could not be signed")

    def _grant(self, imprint: tsp.MessageImprint, nonce: int | None, cert_req: bool) -> bytes:
        now = self.clock().astimezone(dt.UTC)
        # Millisecond precision: finer than any NTP-disciplined clock can honestly claim.
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        fields: dict[str, object] = {
            "version": "v1",
            "policy": self.policy_oid,
            # Copied as received: RFC 3161 requires the same value, encoding included.
            "message_imprint": imprint,
            "serial_number": self._next_serial(),
            "gen_time": now,
            "tsa": self._tsa_name,
        }
        accuracy = self._accuracy()
        if accuracy:
            fields["accuracy"] = accuracy
        if nonce is not None:
            fields["nonce"] = nonce
        tst_der = tsp.TSTInfo(fields).dump()
        token = build_signed_data(
            self.signer,
            content_type="tst_info",
            content=tst_der,
            encapsulate=True,
            include_certificates=cert_req,
        )
        return TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
        ).dump()


# ---------------------------------------------------------------------------------------------
# HTTP transport (RFC 3161 3.4)
# ---------------------------------------------------------------------------------------------

_REASONS = {
    200: "OK",
    400: "Bad Request",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
}


class _HttpError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    """First line and lower-cased header fields of an HTTP message head."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _HttpError(400, "undecodable head") from None
    lines = text.split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _HttpError(400, f"bad header line {line!r}")
        key = name.lower()
        # Repeated Content-Length values could smuggle a second body: refuse them.
        if key in headers and key in ("content-length", "transfer-encoding", "content-type"):
            raise _HttpError(400, f"repeated {name}")
        headers[key] = value.strip()
    return lines[0], headers


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


class TsaHttpServer:
    """RFC 3161 over HTTP: POST application/timestamp-query, answer application/timestamp-reply.

    One request per connection (`Connection: close`), bodies with Content-Length only, bounded
    sizes and a per-request deadline so slow or hostile clients cannot hold resources.
    """

    def __init__(
        self,
        tsa: TimeStampAuthority,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        max_body: int = 16 * 1024,
        request_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.tsa = tsa
        self.ssl_context = ssl_context  # usually TLS ends at a proxy in front; this is for tests
        self.host = host
        self.port = port
        self.max_body = max_body
        self.request_timeout = request_timeout
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}/"

    async def start(self) -> TsaHttpServer:
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=16 * 1024, ssl=self.ssl_context
        )
        # Port 0 asks the kernel for a free port: report the one we got.
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> TsaHttpServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(self.request_timeout):
                    body = await self._read_request(reader, writer)
                reply = await asyncio.to_thread(self.tsa.respond, body)  # an HSM may be slow
                await self._send(writer, 200, reply, {"Content-Type": TIMESTAMP_REPLY})
            except _HttpError as exc:
                await self._send(
                    writer,
                    exc.status,
                    f"{exc}\n".encode(),
                    {"Content-Type": "text/plain; charset=utf-8", **exc.headers},
                )
            except TimeoutError:
                await self._send(writer, 408, b"request timeout\n", {"Content-Type": "text/plain"})
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away (or failed the TLS handshake); nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bytes:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _HttpError(431, "request head too large") from None
        request_line, headers = _parse_head(head[:-4])
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _HttpError(400, "bad request line")
        if parts[0] != "POST":
            raise _HttpError(405, "only POST is supported", {"Allow": "POST"})
        if _media_type(headers.get("content-type")) != TIMESTAMP_QUERY:
            raise _HttpError(415, f"Content-Type must be {TIMESTAMP_QUERY}")
        if "transfer-encoding" in headers:
            raise _HttpError(501, "Transfer-Encoding not supported; send Content-Length")
        length_text = headers.get("content-length")
        if length_text is None:
            raise _HttpError(411, "Content-Length required")
        if not length_text.isdigit():
            raise _HttpError(400, "bad Content-Length")
        length = int(length_text)
        if length > self.max_body:
            raise _HttpError(413, f"request larger than {self.max_body} bytes")
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        return await reader.readexactly(length)

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
        writer.write("\r\n".join(head).encode("latin-1") + body)
        await writer.drain()


class TsaClient:
    """Asks a TSA over HTTP(S) for a time stamp and checks the answer before returning it.

    `trusted_roots` are the roots the TSA certificate must chain to; `None` skips only that
    check (the token is still checked for status, imprint, nonce and signature), for callers
    that validate the chain later against their own trust list. Retries are the caller's.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        trusted_roots: Sequence[x509.Certificate] | None = None,
        *,
        untrusted: Sequence[x509.Certificate] = (),
        policy_oid: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        max_response: int = 1024 * 1024,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"TSA URL must be http:// or https://, got {url!r}")
        self.url = url
        self.timeout = timeout
        self.trusted_roots = list(trusted_roots) if trusted_roots is not None else None
        self.untrusted = list(untrusted)
        self.policy_oid = policy_oid
        self.max_response = max_response
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = 443 if self._tls else 80
        self._host_header = parts.netloc.rpartition("@")[2]
        if parts.port in (None, default_port):
            self._host_header = f"[{self._host}]" if ":" in self._host else self._host
        self._ssl_context = ssl_context

    async def timestamp(self, data: bytes) -> bytes:
        """The DER TimeStampResp for `data`, verified (imprint, nonce, signature, chain)."""
        request = build_request(data, policy_oid=self.policy_oid)
        try:
            async with asyncio.timeout(self.timeout):
                content_type, body = await self._post(request.der)
        except TimeoutError:
            raise TsaUnavailable(f"{self.url}: no answer within {self.timeout} s") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise TsaUnavailable(f"{self.url}: {exc or type(exc).__name__}") from None
        if content_type not in _REPLY_TYPES:
            raise TsaInvalidResponse(f"{self.url}: unexpected Content-Type {content_type!r}")
        try:
            response = _load_response(body)
        except SignedDataInvalid as exc:
            raise TsaInvalidResponse(f"{self.url}: {exc}") from None
        status, fail_info, text = _status(response)
        if status not in _GRANTED:
            raise TsaRefused(status, fail_info, text)
        if is_absent(response["time_stamp_token"]):
            raise TsaInvalidResponse(f"{self.url}: granted response carries no token")
        result = _guarded(
            lambda: _verify_token(
                response["time_stamp_token"].dump(),
                data,
                self.trusted_roots,
                request.nonce,
                self.untrusted,
                self.policy_oid,
            )
        )
        if not result.ok:
            raise TsaInvalidResponse(f"{self.url}: {result.reason}")
        return body

    async def _post(self, body: bytes) -> tuple[str, bytes]:
        context: ssl.SSLContext | None = None
        if self._tls:
            context = self._ssl_context or ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            self._host, self._port, ssl=context, limit=64 * 1024
        )
        try:
            head = (
                f"POST {self._target} HTTP/1.1\r\n"
                f"Host: {self._host_header}\r\n"
                f"Content-Type: {TIMESTAMP_QUERY}\r\n"
                f"Accept: {TIMESTAMP_REPLY}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("latin-1") + body)
            await writer.drain()
            return await self._read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _read_response(self, reader: asyncio.StreamReader) -> tuple[str, bytes]:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            try:
                status_line, headers = _parse_head(head[:-4])
            except _HttpError as exc:
                raise TsaUnavailable(f"{self.url}: malformed HTTP response: {exc}") from None
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
                raise TsaUnavailable(f"{self.url}: malformed status line {status_line!r}")
            code = int(parts[1])
            if code != 100:  # interim answers precede the real one
                break
        if code != 200:
            raise TsaUnavailable(f"{self.url}: HTTP {code} {parts[2] if len(parts) > 2 else ''}")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked(reader)
        elif "content-length" in headers:
            length_text = headers["content-length"]
            if not length_text.isdigit() or int(length_text) > self.max_response:
                raise TsaUnavailable(f"{self.url}: bad or too large Content-Length")
            body = await reader.readexactly(int(length_text))
        else:
            body = await reader.read(self.max_response + 1)  # delimited by closing
            if len(body) > self.max_response:
                raise TsaUnavailable(f"{self.url}: response too large")
        return _media_type(headers.get("content-type")), body

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            size_line = (await reader.readuntil(b"\r\n")).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise TsaUnavailable(f"{self.url}: bad chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailer fields, ignored
                return bytes(body)
            if len(body) + size > self.max_response:
                raise TsaUnavailable(f"{self.url}: response too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)  # CRLF after each chunk
