"""A small HTTP endpoint that answers time-stamp queries, for tests: a stdlib HTTP/1.1 server
(keep-alive, optional TLS) on a free loopback port, in a thread, calling `answer` with each
request. It records what it received, so a test can see the method, path, body and the
client's connection (keep-alive) of every request.

It is not a TSA: `answer` decides what comes back (a development TSA's reply, `openssl ts
-reply`'s, an HTTP error, a redirect, garbage...).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from archive.sealing.timestamps import TIMESTAMP_REPLY

__all__ = ["Received", "Reply", "serving", "without_proxies"]

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # as sent: absolute-form through a proxy
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]  # the client's address and port: one per connection


@dataclass(frozen=True)
class Reply:
    body: bytes = b""
    status: int = 200
    content_type: str = TIMESTAMP_REPLY
    headers: dict[str, str] = field(default_factory=dict)


Answer = Callable[[Received], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, answer: Answer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer = answer
        self.received: list[Received] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        received = Received(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            self.rfile.read(length),
            (self.client_address[0], self.client_address[1]),
        )
        self.server.received.append(received)
        reply = self.server.answer(received)
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the tests assert on `received`


@dataclass
class Endpoint:
    url: str
    received: list[Received]


@contextmanager
def serving(answer: Answer, *, tls: ssl.SSLContext | None = None) -> Iterator[Endpoint]:
    """Serve `answer` at http(s)://127.0.0.1:<free port>/ until the block ends."""
    server = _Server(answer)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.02,), name="tsa-endpoint", daemon=True
    )
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield Endpoint(f"{scheme}://127.0.0.1:{server.server_address[1]}/", server.received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The TSA client honours the environment's proxies: the machine's must not take the
    requests to a loopback endpoint."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
