"""A fault-injecting HTTP proxy to put in front of OpenBao: the hostile network in a box.

The provider is pointed at the proxy's address; the proxy forwards each request to the real
OpenBao behind it, or misbehaves as :attr:`FaultProxy.mode` says at the time the request
arrives:

``pass``     forward the request, send the answer back at once
``trickle``  forward it, send the answer back a byte at a time (:attr:`trickle_interval`)
``stall``    read the request, never answer (until the proxy closes)
``huge``     answer 200 with a 1 GiB body of zeros; ``huge_declared`` says whether it is
             announced with Content-Length or sent in chunks of unannounced total
``gzip``     answer 200 with ``Content-Encoding: gzip``: 1 GiB of zeros, deflated, in chunks
``reset``    read the request, then reset the connection (TCP RST)

Bodies are generated lazily, a chunk at a time while the client reads, so a refused 1 GiB
answer costs the proxy (and the test process) almost nothing. Requests are counted by path
(:meth:`count`) whatever the mode, so a test can prove what did or did not reach OpenBao.
Every thread it starts ends when it closes.
"""

from __future__ import annotations

import collections
import http.client
import socket
import struct
import threading
import urllib.parse
import zlib
from collections.abc import Iterator

GIB = 1024**3
_CHUNK = 64 * 1024
_ZEROS = bytes(_CHUNK)
_MEGABYTE_OF_ZEROS = bytes(1024 * 1024)  # allocated once: tests measure their allocations
MODES = ("pass", "trickle", "stall", "huge", "gzip", "reset")


class FaultProxy:
    """``with FaultProxy(upstream) as proxy: ... proxy.address ... proxy.mode = "trickle"``."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.mode = "pass"
        self.trickle_interval = 0.05
        self.huge_declared = True
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._paths: collections.Counter[str] = collections.Counter()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> FaultProxy:
        self._acceptor.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        _shutdown(self._listener)  # wakes the blocked accept(); close() alone does not
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                _shutdown(sock)
        self._acceptor.join(5)
        for thread in list(self._threads):
            thread.join(5)

    def count(self, fragment: str = "") -> int:
        """Requests seen whose path contains *fragment*."""
        with self._lock:
            return sum(n for path, n in self._paths.items() if fragment in path)

    def reset_counts(self) -> None:
        with self._lock:
            self._paths.clear()

    # --- connections -----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            with self._lock:
                self._sockets.add(client)
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: http.client.HTTPConnection | None = None
        reader = client.makefile("rb")
        try:
            while not self._closing.is_set():
                request = _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                with self._lock:
                    self._paths[path.split("?", 1)[0].removeprefix("/v1/")] += 1
                mode = self.mode
                if mode in ("pass", "trickle"):
                    if upstream is None:
                        upstream = http.client.HTTPConnection(*self.upstream, timeout=30)
                    answer = _forward(upstream, method, path, headers, body)
                    if mode == "pass":
                        client.sendall(answer)
                    elif not self._trickle(client, answer):
                        return
                    continue
                if mode == "stall":
                    self._closing.wait()
                elif mode == "huge":
                    self._send_huge(client)
                elif mode == "gzip":
                    self._send_gzip(client)
                elif mode == "reset":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
        except OSError:
            return  # the client went away, or close() shut the socket
        finally:
            reader.close()
            client.close()
            if upstream is not None:
                upstream.close()
            with self._lock:
                self._sockets.discard(client)

    def _trickle(self, client: socket.socket, answer: bytes) -> bool:
        for i in range(len(answer)):
            client.sendall(answer[i : i + 1])
            if self._closing.wait(self.trickle_interval):
                return False
        return True

    def _send_huge(self, client: socket.socket) -> None:
        declared = self.huge_declared
        framing = f"Content-Length: {GIB}" if declared else "Transfer-Encoding: chunked"
        client.sendall(
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
        )
        for _ in range(GIB // _CHUNK):
            if self._closing.is_set():
                return
            client.sendall(_ZEROS if declared else _as_chunk(_ZEROS))

    def _send_gzip(self, client: socket.socket) -> None:
        client.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        for chunk in _gzip_of_zeros(GIB):
            if self._closing.is_set():
                return
            if chunk:
                client.sendall(_as_chunk(chunk))


def _as_chunk(data: bytes) -> bytes:
    """*data* as one HTTP/1.1 chunk (the size in hex, the bytes, CRLF)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read_request(reader: object) -> tuple[str, str, dict[str, str], bytes] | None:
    """One HTTP/1.1 request (Content-Length bodies only: what the provider sends); None at EOF."""
    line = reader.readline(65536)  # type: ignore[attr-defined]
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        line = reader.readline(65536)  # type: ignore[attr-defined]
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip()] = value.strip()
    length = int(headers.get("Content-Length", "0") or 0)
    body = reader.read(length) if length else b""  # type: ignore[attr-defined]
    return method, path, headers, body


def _forward(
    upstream: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> bytes:
    """OpenBao's answer to the request, re-serialized with a Content-Length."""
    sent = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
    upstream.request(method, path, body=body or None, headers=sent)
    response = upstream.getresponse()
    payload = response.read()
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    for name, value in response.getheaders():
        if name.lower() not in ("content-length", "transfer-encoding", "connection"):
            lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _gzip_of_zeros(size: int) -> Iterator[bytes]:
    """A gzip stream of *size* zero bytes, compressed as it is sent (~1 KiB per MiB)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip header and trailer
    for _ in range(size // len(_MEGABYTE_OF_ZEROS)):
        chunk = compressor.compress(_MEGABYTE_OF_ZEROS)
        if chunk:
            yield chunk
    yield compressor.flush()
