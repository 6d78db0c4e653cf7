"""The connection pool on its own: keep-alive reuse, and every way a kept connection can go
bad before it is used again (closed by the server, stray bytes, an answer left unread).

A reused connection that carried something other than its own request's answer would hand a
Decrypt another request's bytes; each test below fails if the pool reuses one it must not.
The server is a loopback socket scripted per request; Transit behaviour is tested elsewhere
against a real OpenBao.
"""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from _support.loopback import LoopbackServer
from bao_kms.openbao.connections import (
    AnswerTooLarge,
    CannotConnect,
    ConnectionPool,
    MalformedAnswer,
    NoFreeConnection,
)

pytestmark = pytest.mark.timeout(30)

#: what the server does after answering a request (SILENT: closes without answering at all,
#: LATE_SILENT: the same after 0.6 s; RESET: resets the connection a moment after its bytes)
KEEP, CLOSE, STRAY, SILENT, LATE_SILENT, RESET = (
    "keep", "close", "stray", "silent", "late-silent", "reset"
)  # fmt: skip


def answer(body: bytes, *extra_headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in extra_headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode("ascii") + body


class ScriptedServer(LoopbackServer):
    """Answers the n-th request (over all connections) with ``script[n]``: the answer's bytes
    and what to do next (keep the connection, close it, or send stray bytes after it)."""

    def __init__(self, script: list[tuple[bytes, str]]) -> None:
        self.script = script
        self.targets: list[str] = []
        self.ended = threading.Event()  # a connection ended (the client closed it, or reset it)
        self._lock = threading.Lock()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        try:
            self._converse(client)
        except OSError:  # the client reset the connection (it closed with bytes unread)
            pass
        finally:
            client.close()
            self.ended.set()

    def _converse(self, client: socket.socket) -> None:
        buffered = b""
        while True:
            while b"\r\n\r\n" not in buffered:
                chunk = client.recv(65536)
                if not chunk:
                    return
                buffered += chunk
            head, _, buffered = buffered.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next(
                (
                    int(line.split(":", 1)[1])
                    for line in lines
                    if line.lower().startswith("content-length:")
                ),
                0,
            )
            while len(buffered) < length:
                buffered += client.recv(65536)
            buffered = buffered[length:]
            with self._lock:
                index = len(self.targets)
                self.targets.append(lines[0].split(" ")[1])
            reply, then = self.script[min(index, len(self.script) - 1)]
            if then == LATE_SILENT:
                time.sleep(0.6)
            if then in (SILENT, LATE_SILENT):
                return
            client.sendall(reply)
            if then == STRAY:
                # later, as its own segment: bytes read along with the answer die with it
                time.sleep(0.05)
                client.sendall(answer(b"stray"))
            if then == RESET:
                time.sleep(0.2)  # the client has read what was sent and waits for the rest
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if then in (CLOSE, RESET):
                return


@pytest.fixture
def make_server() -> Iterator[Callable[[list[tuple[bytes, str]]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def make(script: list[tuple[bytes, str]]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    connections = ConnectionPool(ssl_context=None, maxsize=1)
    yield connections
    connections.clear()


def read_all(response: http.client.HTTPResponse) -> bytes:
    return response.read()


def send(
    pool: ConnectionPool,
    address: str,
    target: str = "/v1/a",
    *,
    read: Callable[[http.client.HTTPResponse], Any] = read_all,
    timeout: float = 5.0,
    max_answer: int = 1 << 20,
) -> tuple[int, Any]:
    return pool.request(
        address, "GET", target, body=None, headers={}, timeout=timeout, max_answer=max_answer,
        read=read,
    )  # fmt: skip


def get(pool: ConnectionPool, server: ScriptedServer, target: str = "/v1/a") -> bytes:
    status, body = send(pool, server.address, target)
    assert status == 200
    return body


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 5 s"
        time.sleep(0.01)


def test_a_connection_is_reused_once_its_answer_was_read(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(answer(b"one"), KEEP), (answer(b"two"), KEEP)])
    assert get(pool, server, "/v1/first") == b"one"
    assert get(pool, server, "/v1/second") == b"two"
    assert server.connections == 1
    assert server.targets == ["/v1/first", "/v1/second"]


def test_an_answer_that_says_close_is_not_reused(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(answer(b"one", "Connection: close"), CLOSE), (answer(b"two"), KEEP)])
    assert get(pool, server) == b"one"
    assert get(pool, server) == b"two"
    assert server.connections == 2


def test_an_idle_connection_the_server_closed_is_replaced_not_failed(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # the server closes without saying so (an idle timeout): the next request must not fail
    server = make_server([(answer(b"one"), CLOSE), (answer(b"two"), KEEP)])
    assert get(pool, server) == b"one"
    wait_until(lambda: server.connections == 1 and len(server.targets) == 1)
    time.sleep(0.1)  # the FIN reaches the client's socket
    assert get(pool, server) == b"two"
    assert server.connections == 2


def test_stray_bytes_on_an_idle_connection_are_never_taken_for_an_answer(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(answer(b"one"), STRAY), (answer(b"two"), KEEP)])
    assert get(pool, server) == b"one"
    time.sleep(0.3)  # the stray answer reaches the client's socket
    assert get(pool, server) == b"two"  # not b"stray"


def test_an_answer_left_unread_closes_its_connection(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(answer(b"one"), KEEP), (answer(b"two"), KEEP)])
    status, _ = send(pool, server.address, read=lambda r: None)
    assert status == 200
    assert get(pool, server) == b"two"  # not the unread b"one"
    assert server.connections == 2


def test_a_failed_read_closes_the_connection_and_frees_its_slot(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(answer(b"one"), KEEP), (answer(b"two"), KEEP)])

    def refuse(response: http.client.HTTPResponse) -> bytes:
        raise ValueError("the caller's own limit")

    with pytest.raises(ValueError):
        send(pool, server.address, read=refuse)
    assert get(pool, server) == b"two"  # maxsize=1: the slot came back
    assert server.connections == 2
    wait_until(server.ended.is_set)  # and the first connection was closed, not leaked


def test_a_body_cut_short_is_an_error_not_a_short_answer(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", CLOSE)])
    with pytest.raises(http.client.IncompleteRead):
        get(pool, server)


def test_bytes_that_are_not_http_are_an_error(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(b"SSH-2.0-OpenSSH_9.6\r\n", CLOSE)])
    with pytest.raises(http.client.HTTPException):
        get(pool, server)


def held_request(pool: ConnectionPool, server: ScriptedServer) -> tuple[threading.Event, Any]:
    """Start a request whose answer is read only once the event is set; returns when the
    server has it (the connection is busy until then). Join the thread after setting."""
    release = threading.Event()

    def hold(response: http.client.HTTPResponse) -> bytes:
        release.wait(10)
        return response.read()

    holder = threading.Thread(target=send, args=(pool, server.address), kwargs={"read": hold})
    holder.start()
    wait_until(lambda: len(server.targets) == 1)
    return release, holder


def test_every_connection_busy_waits_at_most_the_timeout(
    make_server: Callable[..., ScriptedServer],
) -> None:
    pool = ConnectionPool(ssl_context=None, maxsize=1)
    server = make_server([(answer(b"one"), KEEP)])
    release, holder = held_request(pool, server)
    began = time.monotonic()
    with pytest.raises(NoFreeConnection):
        send(pool, server.address, "/v1/b", timeout=0.3)
    assert 0.25 <= time.monotonic() - began < 3
    release.set()
    holder.join(10)
    assert get(pool, server) == b"one"
    pool.clear()


def test_a_refused_connection_is_cannot_connect(pool: ConnectionPool) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(CannotConnect):
            send(pool, f"http://127.0.0.1:{port}")


def test_clear_closes_idle_connections(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(answer(b"one"), KEEP)])
    get(pool, server)
    assert not server.ended.is_set()
    pool.clear()
    wait_until(server.ended.is_set)


def test_the_pool_refuses_an_address_it_cannot_use() -> None:
    pool = ConnectionPool(ssl_context=None)
    with pytest.raises(ValueError, match="http:// or https://"):
        send(pool, "ftp://host", timeout=1.0)
    with pytest.raises(ValueError, match="maxsize"):
        ConnectionPool(ssl_context=None, maxsize=0)


def test_a_connection_in_use_during_clear_is_closed_after_its_request(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # cert auth clears the pool before a login so that the login presents the rotated client
    # certificate: a connection busy at that moment must not come back and be reused
    server = make_server([(answer(b"one"), KEEP), (answer(b"two"), KEEP)])
    release, holder = held_request(pool, server)
    pool.clear()
    release.set()
    holder.join(10)
    assert get(pool, server) == b"two"
    assert server.connections == 2


def test_an_https_address_is_never_spoken_to_in_plain_text() -> None:
    pool = ConnectionPool(ssl_context=None)
    with pytest.raises(ValueError, match="TLS context"):
        send(pool, "https://127.0.0.1:8200", timeout=1.0)


# --- one meaning for every answer ------------------------------------------------------------

BODY = b'{"data":{"plaintext":"b25l"}}'


LENGTH = f"Content-Length: {len(BODY)}"


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(f"{LENGTH}\r\n{LENGTH}", id="two-lengths"),
        pytest.param(f"Content-Length: 12\r\n{LENGTH}", id="two-lengths-differ"),
        pytest.param(f"Content-Length: +{len(BODY)}", id="signed-length"),
        pytest.param(f"{LENGTH}\r\nTransfer-Encoding: identity", id="identity"),
        pytest.param(f"{LENGTH}\r\nTransfer-Encoding: chunked", id="length-and-chunked"),
        pytest.param("Transfer-Encoding: gzip, chunked", id="coded-chunks"),
        pytest.param("", id="close-delimited"),
    ],
)
def test_an_answer_with_ambiguous_framing_is_refused(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer], head: str
) -> None:
    # each of these could end the body somewhere else than the server meant: a truncated
    # answer taken for a whole one, or the rest read as the next request's answer
    reply = f"HTTP/1.1 200 OK\r\n{head}\r\n\r\n".replace("\r\n\r\n\r\n", "\r\n\r\n")
    server = make_server([(reply.encode() + BODY, CLOSE), (answer(b"two"), KEEP)])
    with pytest.raises(MalformedAnswer):
        get(pool, server)
    assert get(pool, server) == b"two"  # on a new connection


def test_a_refusal_the_server_ends_by_closing_is_read(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # Go's TLS listener answers a plain-HTTP request so: HTTP/1.0, no length, then close
    refusal = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
    server = make_server([(refusal, CLOSE)])
    status, body = send(pool, server.address)
    assert status == 400 and body.startswith(b"Client sent")


def test_an_http_1_0_answer_without_a_length_is_refused(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(b"HTTP/1.0 200 OK\r\n\r\n" + BODY[:10], CLOSE)])
    with pytest.raises(MalformedAnswer):
        get(pool, server)


@pytest.mark.parametrize(
    "interim", ["101 Switching Protocols", "102 Processing", "103 Early Hints"]
)
def test_an_interim_answer_is_never_taken_for_the_final_one(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer], interim: str
) -> None:
    # http.client skips only "100 Continue"; taking any other 1xx for the answer would leave
    # the real one on the connection, for the next request (another Decrypt) to read
    reply = f"HTTP/1.1 {interim}\r\n\r\n".encode() + answer(b"first's answer")
    server = make_server([(reply, KEEP), (answer(b"second's answer"), KEEP)])
    with pytest.raises(MalformedAnswer, match="interim"):
        get(pool, server, "/v1/first")
    assert get(pool, server, "/v1/second") == b"second's answer"


def test_a_100_continue_before_the_answer_is_skipped(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(b"HTTP/1.1 100 Continue\r\n\r\n" + answer(b"one"), KEEP)])
    assert get(pool, server) == b"one"


def test_a_no_body_answer_with_an_odd_length_is_refused_not_a_bug(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # the length rule holds for every status: "²" passes str.isdigit() but not int()
    odd = "HTTP/1.1 204 No Content\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1")
    server = make_server([(odd, KEEP)])
    with pytest.raises(MalformedAnswer):
        get(pool, server)


def test_an_answer_without_a_body_needs_no_length(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(b"HTTP/1.1 204 No Content\r\n\r\n", KEEP), (answer(b"two"), KEEP)])
    assert send(pool, server.address) == (204, b"")
    assert get(pool, server) == b"two"
    assert server.connections == 1  # and the connection was reused


# --- bounded memory ---------------------------------------------------------------------------


def _stream(head: bytes, total: int) -> bytes:
    return head + b"x" * total


def test_a_negative_chunk_size_does_not_read_without_bound(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # int("-1", 16) is -1, and http.client then reads "-1 bytes": to the end of the stream
    reply = _stream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", 8 << 20)
    server = make_server([(reply, CLOSE)])
    tracemalloc.start()
    try:
        with pytest.raises(AnswerTooLarge):
            send(pool, server.address, max_answer=256 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_headers_count_towards_the_answer_limit(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # 98 lines of 65,000 bytes each pass http.client's own limits (65,536 a line, 100 lines)
    lines = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"y" * 65000) for i in range(98))
    reply = b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 2\r\n\r\n{}"
    server = make_server([(reply, CLOSE)])
    with pytest.raises(AnswerTooLarge):
        send(pool, server.address, max_answer=1 << 20)


def test_an_answer_within_the_limit_is_read_whole(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    body = b"z" * 200_000
    server = make_server([(answer(body), KEEP)])
    assert send(pool, server.address, max_answer=len(answer(body)))[1] == body


# --- the keep-alive race ----------------------------------------------------------------------


def test_a_reused_connection_closed_before_any_answer_is_replaced_once(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # the server takes the second request on the kept connection and closes it unanswered,
    # as a server whose idle timeout fires as the request arrives does
    server = make_server([(answer(b"one"), KEEP), (b"", SILENT), (answer(b"three"), KEEP)])
    assert get(pool, server) == b"one"
    assert get(pool, server) == b"three"  # sent again, on a new connection
    assert server.connections == 2


def test_a_new_connection_closed_before_any_answer_is_not_sent_again(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    server = make_server([(b"", SILENT), (answer(b"two"), KEEP)])
    with pytest.raises(http.client.RemoteDisconnected):
        get(pool, server)
    assert len(server.targets) == 1


def test_a_connection_that_fails_during_the_answer_is_not_sent_again(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    truncated = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"
    server = make_server([(answer(b"one"), KEEP), (truncated, CLOSE), (answer(b"three"), KEEP)])
    assert get(pool, server) == b"one"
    with pytest.raises(http.client.IncompleteRead):
        get(pool, server)
    assert len(server.targets) == 2


@pytest.mark.parametrize(
    "partial",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc", id="part-of-body"),
        pytest.param(b"HTTP/1.1 200 OK\r\n", id="status-line-only"),
    ],
)
def test_a_reused_connection_reset_after_part_of_the_answer_is_not_sent_again(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer], partial: bytes
) -> None:
    # the server had the request and began answering: no keep-alive race, so no second try
    server = make_server([(answer(b"one"), KEEP), (partial, RESET), (answer(b"three"), KEEP)])
    assert get(pool, server) == b"one"
    with pytest.raises(ConnectionError) as caught:
        get(pool, server)
    assert not isinstance(caught.value, ConnectionResetError)  # not taken for the race
    assert len(server.targets) == 2


class RecordingPool(ConnectionPool):
    """Records the time each new connection is given to connect."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.connect_timeouts: list[float] = []

    def _new(self, host: Any, timeout: float) -> Any:
        self.connect_timeouts.append(timeout)
        return super()._new(host, timeout)


def test_the_second_try_gets_only_what_is_left_of_the_timeout(
    make_server: Callable[..., ScriptedServer],
) -> None:
    # a connect cannot be cut by the deadline watchdog (no socket yet): its own timeout
    # must be what is left, or a retry could run for twice the request's timeout
    pool = RecordingPool(ssl_context=None, maxsize=1)
    server = make_server([(answer(b"one"), KEEP), (b"", LATE_SILENT), (answer(b"three"), KEEP)])
    try:
        assert get(pool, server) == b"one"
        assert send(pool, server.address, timeout=1.0) == (200, b"three")
        first, retry = pool.connect_timeouts
        assert first > 4.9 and retry < 0.45  # 0.6 s of the 1 s went to the closed connection
    finally:
        pool.clear()


def test_a_connect_after_waiting_for_a_free_slot_gets_only_what_is_left(
    make_server: Callable[..., ScriptedServer],
) -> None:
    pool = RecordingPool(ssl_context=None, maxsize=1)
    closing = answer(b"one", "Connection: close")
    server = make_server([(closing, CLOSE), (answer(b"two"), KEEP)])
    try:
        release, holder = held_request(pool, server)
        threading.Timer(0.5, release.set).start()
        assert send(pool, server.address, timeout=1.0) == (200, b"two")
        holder.join(10)
        assert pool.connect_timeouts[-1] < 0.55  # the slot took 0.5 s of the 1 s
    finally:
        pool.clear()


def test_a_name_with_several_dead_addresses_is_tried_within_one_timeout(
    pool: ConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a listener whose backlog is full drops new connections' SYNs: connecting hangs there
    with socket.socket() as blackhole, socket.socket() as filler:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        filler.connect(blackhole.getsockname())
        port = blackhole.getsockname()[1]
        addresses = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))] * 3
        monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: addresses)
        began = time.monotonic()
        with pytest.raises(TimeoutError):
            send(pool, f"http://openbao.test:{port}", timeout=0.5)
        # socket.create_connection would have given each of the three the whole 0.5 s
        assert time.monotonic() - began < 1.0
