"""A hostile server on an https:// address: the total deadline and ``Transport.close()`` bound
a request on a new TLS connection too, from the handshake to the last byte of the answer.

The socket the watchdog must shut is the TLS socket: wrapping takes the TCP socket's
descriptor over, so a watchdog still holding only the TCP socket would shut nothing, and each
trickled byte would reset the per-read timeout (a 1 s timeout once ran for 19.5 s).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.leaks import TOKEN, expect_error
from _support.loopback import LoopbackServer
from _support.pki import TestPki
from bao_kms.errors import DeadlineExceeded, OpenBaoUnavailable
from bao_kms.openbao import TokenFileAuth, Transport, make_pool

pytestmark = pytest.mark.timeout(60)
PATH = "transit/keys/kms"
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n{"data":{"padding":"xxxxxxxxxxxxxxxxxx"}}'


class TricklingTlsServer(LoopbackServer):
    """Shakes hands (or trickles the handshake), reads a request, trickles the answer."""

    scheme = "https"

    def __init__(self, pki: TestPki, *, handshake: bool = True) -> None:
        cert, key = pki.server()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._handshake = handshake
        self._stop = threading.Event()
        super().__init__()

    def serve(self, client: socket.socket) -> None:
        try:
            if not self._handshake:
                client.sendall(b"\x16\x03\x03\x40\x00")  # a 16 KiB handshake record ...
                while not self._stop.wait(0.2):
                    client.sendall(b"\x00")  # ... a byte at a time
                return
            with self._context.wrap_socket(client, server_side=True) as tls:
                received = b""
                while b"\r\n\r\n" not in received:
                    received += tls.recv(65536)
                for index in range(len(ANSWER)):
                    if self._stop.wait(0.2):
                        return
                    tls.sendall(ANSWER[index : index + 1])
        except OSError:
            pass  # the client gave up, as it must
        finally:
            client.close()

    def close(self) -> None:
        self._stop.set()
        super().close()


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    path.chmod(0o600)
    return path


@pytest.fixture
def serve(pki: TestPki) -> Iterator[type[TricklingTlsServer]]:
    servers: list[TricklingTlsServer] = []

    class Served(TricklingTlsServer):
        def __init__(self, *, handshake: bool = True) -> None:
            super().__init__(pki, handshake=handshake)
            servers.append(self)

    yield Served
    for server in servers:
        server.close()


def _transport(server: TricklingTlsServer, pki: TestPki, token_file: Path, timeout: float):
    pool = make_pool(ca_file=pki.ca_file, maxsize=1)
    return Transport([server.address], TokenFileAuth(token_file), pool=pool, timeout=timeout)


@pytest.mark.parametrize("handshake", [True, False], ids=["trickled-answer", "trickled-handshake"])
def test_a_new_tls_connection_ends_at_the_timeout(
    serve: type[TricklingTlsServer], pki: TestPki, token_file: Path, handshake: bool
) -> None:
    transport = _transport(serve(handshake=handshake), pki, token_file, timeout=1.0)
    started = time.monotonic()
    error = expect_error(OpenBaoUnavailable, transport.request, "GET", PATH)
    assert time.monotonic() - started < 2.5  # the answer alone takes 19 s to trickle
    assert "did not answer within 1 s" in str(error)


def test_a_new_tls_connection_ends_at_the_callers_deadline(
    serve: type[TricklingTlsServer], pki: TestPki, token_file: Path
) -> None:
    transport = _transport(serve(), pki, token_file, timeout=30.0)
    started = time.monotonic()
    expect_error(DeadlineExceeded, transport.request, "GET", PATH, deadline=started + 1.0)
    assert time.monotonic() - started < 2.5


def test_close_abandons_a_tls_request_in_flight(
    serve: type[TricklingTlsServer], pki: TestPki, token_file: Path
) -> None:
    transport = _transport(serve(), pki, token_file, timeout=30.0)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            transport.request("GET", PATH)
        except Exception as error:  # noqa: BLE001 - recorded for the assertion below
            outcome.append(error)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.8)  # handshake done, the answer arriving a byte at a time
    closed_at = time.monotonic()
    transport.close()
    sender.join(5)
    assert not sender.is_alive() and time.monotonic() - closed_at < 1.0
    assert isinstance(outcome[0], OpenBaoUnavailable) and "stopping" in str(outcome[0])
