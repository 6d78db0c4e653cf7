"""HTTP/1.1 keep-alive connections to OpenBao: a small pool over the standard library's client.

Every OpenBao request the provider sends (a Transit batch, a status probe, a login) goes
through :meth:`ConnectionPool.request`. The exchange itself is :mod:`http.client`'s: request
framing, status line and header limits (65,536-byte lines, 100 headers), chunked and
``Content-Length`` bodies. The pool adds only what a long-running client needs around it:

* at most *maxsize* connections per address; a request waits for a free one at most its
  timeout (:class:`NoFreeConnection`), never without bound;
* a connection goes back for reuse only after its answer was read to the end and the server
  did not ask to close it; any error closes it. An idle connection that became readable (the
  server closed it, or sent bytes nobody asked for) is closed instead of reused;
* TLS from the given context, always verified (:mod:`._tls` builds it), with
  ``tlsServerName`` as SNI and the name checked, and the handshake inside the request's time;
* every socket a request uses is handed to its deadline ticket (:mod:`._deadline`): the raw
  socket right after connect, before the TLS handshake, and a reused socket when it is taken.

Why not urllib3: it did the same job at about twice the CPU per request (0.58 against
0.30 ms for one Transit decrypt on the benchmark machine, ``benchmarks/http_clients.py``),
most of it in URL parsing, retry and header bookkeeping this provider turns off anyway. A lone
Decrypt pays that on its latency, and a storm on every batch.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TypeVar

from . import _deadline

_T = TypeVar("_T")


class CannotConnect(OSError):
    """No TCP connection to the address (refused, unreachable, name not resolved); a TLS
    failure or a timeout is not this, it keeps its own type."""


class NoFreeConnection(TimeoutError):
    """Every connection to the address stayed busy for the whole timeout."""


class _Connection(http.client.HTTPConnection):
    """One connection; TLS when *tls* is given. Its socket is attached to the request's
    deadline ticket before any handshake, so a trickling server cannot stretch that either."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._tls = tls
        self._server_hostname = server_hostname or host
        self.generation = 0  # the pool's generation when this connection was made

    def connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), self.timeout)
        except TimeoutError:
            raise  # "did not answer in time", not "cannot connect"
        except OSError as error:
            raise CannotConnect(error.errno, error.strerror) from error
        _deadline.attach_current(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_hostname=self._server_hostname)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Address:
    """The connections to one address: idle ones (last used first) and the free slots."""

    __slots__ = ("host", "idle", "port", "slots", "tls")

    def __init__(self, address: str, maxsize: int, tls: ssl.SSLContext | None) -> None:
        parts = urllib.parse.urlsplit(address)
        https = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an OpenBao address is an http:// or https:// URL with a host")
        self.host = parts.hostname
        self.port = parts.port or (443 if https else 80)
        if https and tls is None:
            raise ValueError("an https:// address needs the pool's TLS context")  # never plain
        self.tls = tls if https else None
        self.idle: list[_Connection] = []
        self.slots = threading.BoundedSemaphore(maxsize)


def _dropped(connection: _Connection) -> bool:
    """True when an idle connection cannot carry a request: closed, or readable (EOF from a
    server that closed it, or bytes no request asked for)."""
    sock = connection.sock
    if sock is None:
        return True
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _close(connection: _Connection, response: http.client.HTTPResponse | None) -> None:
    # An answer with "Connection: close" owns the socket from getresponse() on: closing the
    # connection alone would leave it open until garbage collection.
    if response is not None:
        response.close()
    connection.close()


class ConnectionPool:
    """Keep-alive HTTP/1.1 connections to OpenBao's addresses; thread-safe.

    *ssl_context* is used for ``https://`` addresses (verification is the context's: the
    provider's always verifies); *server_hostname* is the name sent as SNI and checked against
    the certificate instead of the address's host. *maxsize* bounds the connections per address.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None = None,
        maxsize: int = 16,
    ) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._addresses: dict[str, _Address] = {}
        # bumped by clear(): a connection made before it is closed when its request ends,
        # not kept (a rotated client certificate is presented from then on, everywhere)
        self._generation = 0

    def request(
        self,
        address: str,
        method: str,
        target: str,
        *,
        body: bytes | None,
        headers: Mapping[str, str],
        timeout: float,
        read: Callable[[http.client.HTTPResponse], _T],
    ) -> tuple[int, _T]:
        """Send ``<method> <target>`` to *address* (``scheme://host[:port]``); the answer's
        status and what *read* made of the answer (it reads the body, with its own limits).

        *timeout* (seconds) bounds the wait for a free connection and each socket operation;
        the caller's deadline ticket bounds the whole. Raises :class:`NoFreeConnection`,
        :class:`CannotConnect`, :class:`TimeoutError`, :class:`ssl.SSLError`, any other
        :class:`OSError` or :class:`http.client.HTTPException` (the answer could not be
        read as HTTP), or whatever *read* raises; the connection is closed on any of them.
        """
        slot = self._address(address)
        if not slot.slots.acquire(timeout=timeout):
            raise NoFreeConnection(f"no free connection within {timeout:g} s")
        try:
            connection = self._take(slot, timeout)
            sock = connection.sock
            response: http.client.HTTPResponse | None = None
            try:
                connection.request(method, target, body, dict(headers))
                sock = connection.sock  # connected by the request if it was new
                response = connection.getresponse()
                answer = read(response)
            except BaseException:
                _deadline.detach_current(sock)
                _close(connection, response)
                raise
            # from here on the socket is no longer this request's for its ticket to shut
            _deadline.detach_current(sock)
            reusable = (
                response.isclosed() and not response.will_close and connection.sock is not None
            )
            with self._lock:
                kept = reusable and connection.generation == self._generation
                if kept:
                    slot.idle.append(connection)
            if not kept:
                # unread bytes, "Connection: close", or made before the last clear()
                _close(connection, response)
            return response.status, answer
        finally:
            slot.slots.release()

    def _address(self, address: str) -> _Address:
        slot = self._addresses.get(address)
        if slot is None:
            with self._lock:
                slot = self._addresses.get(address)
                if slot is None:
                    slot = _Address(address, self.maxsize, self.ssl_context)
                    self._addresses[address] = slot
        return slot

    def _take(self, slot: _Address, timeout: float) -> _Connection:
        """An idle connection still usable, else a new one (connected on first send)."""
        while True:
            with self._lock:
                connection = slot.idle.pop() if slot.idle else None
            if connection is None:
                made = _Connection(slot.host, slot.port, timeout, slot.tls, self.server_hostname)
                made.generation = self._generation
                return made
            if _dropped(connection):
                connection.close()
                continue
            assert connection.sock is not None
            connection.sock.settimeout(timeout)
            _deadline.attach_current(connection.sock)
            return connection

    def clear(self) -> None:
        """Close every idle connection: the next request connects (and shakes hands) anew.
        Connections in use now are closed when their requests end, not kept."""
        with self._lock:
            self._generation += 1
            idle = [connection for slot in self._addresses.values() for connection in slot.idle]
            for slot in self._addresses.values():
                slot.idle.clear()
        for connection in idle:
            connection.close()
