"""Review findings in the transport: a hostile ``Content-Length`` must be an OpenBao answer
problem (UNAVAILABLE), never an exception the provider calls a bug (INTERNAL).

``str.isdigit()`` accepts characters ``int()`` refuses (``"²"``, which a Latin-1 header can
carry), and ``int()`` refuses more than 4300 digits; http.client tolerates such a header (it
reads until the connection closes), so only the provider's own checks see it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from _support.leaks import expect_error
from _support.loopback import LoopbackServer
from bao_kms.errors import KmsError, OpenBaoBadResponse
from bao_kms.openbao import Transport, make_pool
from bao_kms.openbao.auth.token_file import TokenFileAuth
from bao_kms.openbao.connections import ConnectionPool

pytestmark = pytest.mark.timeout(30)
BODY = b'{"data":{}}'


class RawServer(LoopbackServer):
    """Answers every request on a loopback port with *header* bytes and :data:`BODY`."""

    def __init__(self, content_length: bytes) -> None:
        self.content_length = content_length
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        with client:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(4096)
                if not chunk:
                    break
                data += chunk
            client.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Connection: close\r\nContent-Length: " + self.content_length + b"\r\n\r\n" + BODY
            )


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    manager = make_pool(ca_file=None, maxsize=1)
    yield manager
    manager.clear()


def _transport(server: RawServer, pool: ConnectionPool) -> Transport:
    return Transport([server.address], TokenFileAuth("/nonexistent"), pool=pool, timeout=5.0)


def test_a_superscript_content_length_is_no_bug(pool: ConnectionPool) -> None:
    server = RawServer("\u00b2".encode("latin-1"))
    try:
        try:
            answer = _transport(server, pool).request("GET", "transit/keys/k", anonymous=True)
        except KmsError:
            return  # refused as an answer problem: fine too
        assert answer == BODY  # read until the connection closed, like http.client does
    finally:
        server.close()


def test_a_content_length_of_thousands_of_digits_is_refused(pool: ConnectionPool) -> None:
    server = RawServer(b"9" * 5000)
    try:
        transport = _transport(server, pool)
        expect_error(OpenBaoBadResponse, transport.request, "GET", "transit/keys/k", anonymous=True)
    finally:
        server.close()
