"""A tiny scripted HTTP server standing in for OpenBao in unit tests of error classification.

It records every request (method, path, headers, body) and answers from a script: either one
:class:`Reply` for every request, a sequence consumed in order (the last one repeats), or a
function of the request. Replies may be delayed; closing the server wakes delayed handlers so
no thread outlives the test. Behaviour is only ever *classified* against this server; what
OpenBao really does is tested against the real binary.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = b"{}"  # bytes as they are, anything else as JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def payload(self) -> bytes:
        return self.body if isinstance(self.body, bytes) else orjson.dumps(self.body)


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class FakeBao:
    """Context manager: ``with FakeBao() as fake: ... fake.address ... fake.requests``."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._answer: Callable[[Seen], Reply] = lambda seen: Reply()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._server.fake = self  # type: ignore[attr-defined]
        # A short poll interval: shutdown() waits for it, and tests start many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reply(self, *replies: Reply) -> None:
        """Answer with these replies in order; the last one answers everything after."""
        script = list(replies)
        position = 0

        def answer(_: Seen) -> Reply:
            nonlocal position
            with self._lock:
                chosen = script[min(position, len(script) - 1)]
                position += 1
            return chosen

        self._answer = answer

    def reply_with(self, answer: Callable[[Seen], Reply]) -> None:
        self._answer = answer

    def __enter__(self) -> FakeBao:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _record(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
        return self._answer(seen)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OpenBao does, so the client reuses sockets
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms stalls

    def _handle(self) -> None:
        fake: FakeBao = self.server.fake  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, dict(self.headers.items()), body)
        reply = fake._record(seen)
        if reply.delay and fake._closing.wait(reply.delay):
            return
        payload = reply.payload()
        self.send_response(reply.status)
        for name, value in {"Content-Type": "application/json", **reply.headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_LIST = _handle

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib names it `format`
        pass

    def handle_one_request(self) -> None:
        # A client that timed out has closed its end; that is expected, not a test failure.
        try:
            super().handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True


class RefusingAddress:
    """An address whose connections are refused: a bound socket that never listens."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def __enter__(self) -> RefusingAddress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._socket.close()


def errors_body(*texts: str) -> dict[str, Iterable[str]]:
    """OpenBao's error body shape."""
    return {"errors": list(texts)}
