"""The development time-stamp authority: RFC 3161 tokens signed with a key of our own, asked
in process by the sealing service of the development profile (`archive up`, tests).

Production never runs it: there the time comes from an independent, external TSA
(ARCHIVE_TSA_URL, services/sealing/tsa_client.py), for a provider that stamps its own time
proves nothing a court would accept. It exists so that development has the same evidence
format, verifiable by `openssl ts -verify`, without a network or a contract.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509

from archive.sealing.cms import SignedDataInvalid, build_signed_data, is_absent
from archive.sealing.keys import Signer
from archive.sealing.timestamps import TimeStampResp, check_tsa_certificate

__all__ = ["DEFAULT_POLICY_OID", "InProcessTsa", "TimeStampAuthority"]

log = logging.getLogger(__name__)

# Private enterprise arc 1.3.6.1.4.1.99999 (reserved for examples and private use), sub-arc 3161
# for time-stamping, policy 1: "development TSA, clock as good as the host's NTP".
DEFAULT_POLICY_OID = "1.3.6.1.4.1.99999.3161.1"

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
        der: bytes = TimeStampResp(
            {"status": {"status": "rejection", "status_string": [text], "fail_info": {fail_info}}}
        ).dump()
        return der

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
        der: bytes = TimeStampResp(
            {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
        ).dump()
        return der


class InProcessTsa:
    """The development TSA as the time-stamping client's transport: the query goes to
    `TimeStampAuthority.respond` in a worker thread (a signer may be slow), no HTTP."""

    def __init__(self, authority: TimeStampAuthority) -> None:
        self.authority = authority

    @property
    def name(self) -> str:
        return "the built-in development TSA"

    async def exchange(self, query: bytes) -> bytes:
        return await asyncio.to_thread(self.authority.respond, query)

    async def aclose(self) -> None:
        return None
