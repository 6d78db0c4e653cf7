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
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bao_kms.openbao.connections import CannotConnect, ConnectionPool, NoFreeConnection

pytestmark = pytest.mark.timeout(30)

#: what the server does after answering a request
KEEP, CLOSE, STRAY = "keep", "close", "stray"


def answer(body: bytes, *extra_headers: str) -> bytes:
    head = "".join(f"{header}\r\n" for header in extra_headers)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode("ascii") + body


class ScriptedServer:
    """Answers the n-th request (over all connections) with ``script[n]``: the answer's bytes
    and what to do next (keep the connection, close it, or send stray bytes after it)."""

    def __init__(self, script: list[tuple[bytes, str]]) -> None:
        self.script = script
        self.connections = 0
        self.targets: list[str] = []
        self.ended = threading.Event()  # a connection ended (the client closed it, or reset it)
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
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
            client.sendall(reply)
            if then == STRAY:
                # later, as its own segment: bytes read along with the answer die with it
                time.sleep(0.05)
                client.sendall(answer(b"stray"))
            if then == CLOSE:
                return

    def close(self) -> None:
        self._listener.close()


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


def get(pool: ConnectionPool, server: ScriptedServer, target: str = "/v1/a") -> bytes:
    status, body = pool.request(
        server.address, "GET", target, body=None, headers={}, timeout=5.0, read=read_all
    )
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
    status, _ = pool.request(
        server.address, "GET", "/v1/a", body=None, headers={}, timeout=5.0, read=lambda r: None
    )
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
        pool.request(
            server.address, "GET", "/v1/a", body=None, headers={}, timeout=5.0, read=refuse
        )
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


def test_every_connection_busy_waits_at_most_the_timeout(
    make_server: Callable[..., ScriptedServer],
) -> None:
    pool = ConnectionPool(ssl_context=None, maxsize=1)
    server = make_server([(answer(b"one"), KEEP)])
    release = threading.Event()

    def hold(response: http.client.HTTPResponse) -> bytes:
        release.wait(10)
        return response.read()

    holder = threading.Thread(
        target=pool.request,
        args=(server.address, "GET", "/v1/a"),
        kwargs={"body": None, "headers": {}, "timeout": 5.0, "read": hold},
    )
    holder.start()
    wait_until(lambda: len(server.targets) == 1)
    began = time.monotonic()
    with pytest.raises(NoFreeConnection):
        pool.request(
            server.address, "GET", "/v1/b", body=None, headers={}, timeout=0.3, read=read_all
        )
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
            pool.request(
                f"http://127.0.0.1:{port}",
                "GET",
                "/",
                body=None,
                headers={},
                timeout=5.0,
                read=read_all,
            )


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
        pool.request("ftp://host", "GET", "/", body=None, headers={}, timeout=1.0, read=read_all)
    with pytest.raises(ValueError, match="maxsize"):
        ConnectionPool(ssl_context=None, maxsize=0)


def test_a_connection_in_use_during_clear_is_closed_after_its_request(
    pool: ConnectionPool, make_server: Callable[..., ScriptedServer]
) -> None:
    # cert auth clears the pool before a login so that the login presents the rotated client
    # certificate: a connection busy at that moment must not come back and be reused
    server = make_server([(answer(b"one"), KEEP), (answer(b"two"), KEEP)])
    release = threading.Event()

    def hold(response: http.client.HTTPResponse) -> bytes:
        release.wait(10)
        return response.read()

    holder = threading.Thread(
        target=pool.request,
        args=(server.address, "GET", "/v1/a"),
        kwargs={"body": None, "headers": {}, "timeout": 5.0, "read": hold},
    )
    holder.start()
    wait_until(lambda: len(server.targets) == 1)
    pool.clear()
    release.set()
    holder.join(10)
    assert get(pool, server) == b"two"
    assert server.connections == 2


def test_an_https_address_is_never_spoken_to_in_plain_text() -> None:
    pool = ConnectionPool(ssl_context=None)
    with pytest.raises(ValueError, match="TLS context"):
        pool.request(
            "https://127.0.0.1:8200", "GET", "/", body=None, headers={}, timeout=1.0, read=read_all
        )
