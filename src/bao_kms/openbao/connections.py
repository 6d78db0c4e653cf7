"""HTTP/1.1 keep-alive connections to OpenBao: a small pool over the standard library's client.

Every OpenBao request the provider sends (a Transit batch, a status probe, a login) goes
through :meth:`ConnectionPool.request`. The exchange itself is :mod:`http.client`'s: request
framing, status line and header limits (65,536-byte lines, 100 headers), chunked and
``Content-Length`` bodies. The pool adds what a client on the path that must never return a
wrong answer needs around it:

* **Bounded waits**: at most *maxsize* connections per address; a request waits for a free one
  at most its timeout (:class:`NoFreeConnection`). Every socket a request uses is handed to
  its deadline ticket (:mod:`._deadline`): the TCP socket right after connect, the TLS socket
  before its handshake, a reused socket when it is taken. So the total deadline bounds the
  handshake and the answer too, whatever trickles in.
* **Bounded memory**: an answer may take at most *max_answer* bytes on the wire, status line,
  headers and body together (:class:`AnswerTooLarge`); no read is ever unbounded.
* **One meaning for every answer**: exactly one framing is accepted: ``Transfer-Encoding:
  chunked`` alone, or a single ``Content-Length`` of plain digits, or no body (204, 304), or,
  for a refusal (3xx-5xx) only, a body the server ends by closing the connection. Anything
  else (two lengths, a length and chunked, a success whose truncation nobody could see, a 1xx
  interim answer http.client would take for the final one) is a :class:`MalformedAnswer` and
  its connection is closed: its next bytes could otherwise be read as another request's
  answer.
* **Reuse only what is clean**: a connection goes back only after its answer was read to the
  end and the server did not ask to close it; any error closes it. An idle connection that
  became readable (the server closed it, or sent bytes nobody asked for) is closed instead of
  reused. A reused connection that fails before a single byte of its answer came back (the
  keep-alive race: the server closed it as it was taken) is replaced once by a new
  connection, within what is left of the request's timeout. A server that closed an idle
  connection never saw the request; one that failed after reading it (it cannot be told
  apart) sees it twice, which every request this provider sends allows: Transit encrypt and
  decrypt, logins (an unused extra token), renew-self and reads. Once any answer byte came,
  a failure is final.
* **TLS** from the given context, always verified (:mod:`._tls` builds it), with
  ``tlsServerName`` as SNI and the name checked; an ``https://`` address is never spoken to
  without it.

Why not urllib3: it did the same job at 0.67 ms of the caller's CPU per Transit decrypt on the
benchmark machine, against 0.40 ms for this pool (``benchmarks/http_clients.py``, the
provider's whole transport either way), most of it in URL parsing, retry and header
bookkeeping this provider turns off anyway. A lone Decrypt pays that on its latency, and a
storm on every batch.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from . import _deadline

_T = TypeVar("_T")

#: what a reused connection raises when the server had closed it before answering anything
#: (RemoteDisconnected is a ConnectionResetError)
_STALE_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class CannotConnect(OSError):
    """No TCP connection to the address (refused, unreachable, a name that does not resolve or
    cannot be one); a TLS failure or a timeout is not this, it keeps its own type."""


class NoFreeConnection(TimeoutError):
    """Every connection to the address stayed busy for the whole timeout."""


class MalformedAnswer(http.client.HTTPException):
    """An answer whose framing is ambiguous or not HTTP/1.1 as OpenBao sends it."""


class AnswerTooLarge(MalformedAnswer):
    """An answer that took more bytes on the wire than the request allowed."""


class _CappedStream(io.RawIOBase):
    """One answer's bytes from the socket, refused past *limit* bytes in all."""

    def __init__(self, raw: io.RawIOBase, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._limit = self._left = limit

    @property
    def received(self) -> int:
        """Bytes of the answer received so far (read ahead included)."""
        return self._limit - self._left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        view = memoryview(buffer).cast("B")
        if len(view) > self._left + 1:
            view = view[: self._left + 1]  # one byte past the limit tells "more" from "done"
        count = self._raw.readinto(view)
        if count is None:
            return None
        self._left -= count
        if self._left < 0:
            raise AnswerTooLarge("the answer is larger than the request allows")
        return count

    def fileno(self) -> int:
        return self._raw.fileno()

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Answer(http.client.HTTPResponse):
    """http.client's response, reading through a :class:`_CappedStream`: even a read
    http.client itself leaves unbounded (a negative chunk size) stops at the limit."""

    def __init__(self, sock: socket.socket, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # the uncapped reader http.client made (the socket stays open)
        self.stream = _CappedStream(sock.makefile("rb", buffering=0), limit)
        self.fp = io.BufferedReader(self.stream)


def _check_framing(response: http.client.HTTPResponse) -> None:
    """MalformedAnswer unless *response* has exactly one way to tell where its body ends."""
    if response.status < 200:
        # http.client skips "100 Continue" only; it would take 101-199 for the final answer
        # and leave the real one on the connection for the next request to read
        raise MalformedAnswer(f"an interim answer (HTTP {response.status}) nobody asked for")
    lengths = response.msg.get_all("Content-Length") or []
    codings = response.msg.get_all("Transfer-Encoding") or []
    if lengths and (len(lengths) > 1 or not _plain_digits(lengths[0].strip())):
        raise MalformedAnswer("the answer has no single plain Content-Length")
    if codings:
        if lengths or len(codings) > 1 or codings[0].strip().lower() != "chunked":
            raise MalformedAnswer("the answer's Transfer-Encoding is ambiguous or unsupported")
    elif not lengths and 200 <= response.status < 300 and response.status != 204:
        # a close-delimited success ends wherever the connection drops: a truncated answer
        # would look whole. OpenBao always sends a 2xx with a length or in chunks. (204 and
        # 304 never have a body; a refusal ending at the close, as Go's TLS listener answers
        # plain HTTP with a 400, is only read for its category and never reused.)
        raise MalformedAnswer("the answer has no single plain Content-Length")


def _plain_digits(value: str) -> bool:
    return value.isascii() and value.isdigit()  # "²".isdigit() is True; int() refuses it


def _connect_tcp(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the first of *host*'s addresses that takes one, all the addresses
    within *timeout* seconds together. ``socket.create_connection`` gives each address the
    whole timeout: a name with three dead addresses would wait three times as long, before any
    socket exists for the deadline watchdog to cut. (The name lookup itself is the resolver's:
    a literal IP, or the system's resolver timeouts.)"""
    deadline = time.monotonic() + timeout
    failure: OSError = TimeoutError(f"no connection within {timeout:g} s")
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        left = deadline - time.monotonic()
        if left <= 0:
            failure = TimeoutError(f"no connection within {timeout:g} s")
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(left)
            sock.connect(address)
        except OSError as error:
            sock.close()
            failure = error
            continue
        sock.settimeout(timeout)  # each read from now on; the watchdog bounds the whole
        return sock
    raise failure


class _Connection(http.client.HTTPConnection):
    """One connection; TLS when *tls* is given. Its sockets are attached to the request's
    deadline ticket before any handshake, so a trickling server cannot stretch that either."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        tls: ssl.SSLContext | None,
        server_hostname: str | None,
        generation: int,
    ) -> None:
        super().__init__(host, port, timeout=timeout)
        self._connect_timeout = timeout  # what is left of the request's timeout when made
        self._tls = tls
        self._server_hostname = server_hostname or host
        self.generation = generation  # the pool's generation when this connection was made
        self.reused = False
        self.answer_limit = 0  # set for each request
        #: the current request's answer once http.client began reading it
        self.answer: _Answer | None = None

    # http.client builds each answer with self.response_class(sock, method=...): a method
    # here, so that the answer gets this request's byte limit (and the pool sees it even when
    # getresponse() fails half-way)
    def response_class(self, sock: socket.socket, *args: Any, **kwargs: Any) -> _Answer:  # type: ignore[override]
        self.answer = _Answer(sock, *args, limit=self.answer_limit, **kwargs)
        return self.answer

    @property
    def answer_began(self) -> bool:
        """True when any byte of the current request's answer arrived."""
        return self.answer is not None and self.answer.stream.received > 0

    def connect(self) -> None:
        try:
            sock = _connect_tcp(self.host, self.port, self._connect_timeout)
        except TimeoutError:
            raise  # "did not answer in time", not "cannot connect"
        except (OSError, UnicodeError) as error:  # UnicodeError: a name IDNA cannot encode
            raise CannotConnect(getattr(error, "errno", None), "cannot connect") from error
        _deadline.attach_current(sock)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._tls is not None:
                tcp = sock
                sock = self._tls.wrap_socket(
                    tcp, server_hostname=self._server_hostname, do_handshake_on_connect=False
                )
                # the TLS socket owns the descriptor now: it is the one the watchdog must shut
                _deadline.detach_current(tcp)
                _deadline.attach_current(sock)
                sock.do_handshake()
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _Host:
    """The connections to one address: idle ones (last used first) and the free slots."""

    __slots__ = ("free", "hostname", "idle", "port", "tls")

    def __init__(self, address: str, maxsize: int, tls: ssl.SSLContext | None) -> None:
        parts = urllib.parse.urlsplit(address)
        https = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("an OpenBao address is an http:// or https:// URL with a host")
        if https and tls is None:
            raise ValueError("an https:// address needs the pool's TLS context")  # never plain
        self.hostname = parts.hostname
        self.port = parts.port or (443 if https else 80)
        self.tls = tls if https else None
        self.idle: list[_Connection] = []
        self.free = threading.BoundedSemaphore(maxsize)


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
        self._hosts: dict[str, _Host] = {}
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
        max_answer: int,
        read: Callable[[http.client.HTTPResponse], _T],
    ) -> tuple[int, _T]:
        """Send ``<method> <target>`` to *address* (``scheme://host[:port]``); the answer's
        status (200-599) and what *read* made of the answer (it reads the body).

        *timeout* (seconds) bounds the wait for a free connection and each socket operation;
        the caller's deadline ticket bounds the whole. *max_answer* bounds the answer's bytes
        on the wire (status line, headers and body). Raises :class:`NoFreeConnection`,
        :class:`CannotConnect`, :class:`TimeoutError`, :class:`ssl.SSLError`, any other
        :class:`OSError`, :class:`MalformedAnswer` / :class:`AnswerTooLarge` or another
        :class:`http.client.HTTPException` (the answer could not be read as HTTP), or
        whatever *read* raises; the connection is closed on any of them.
        """
        host = self._host(address)
        began = time.monotonic()
        if not host.free.acquire(timeout=timeout):
            raise NoFreeConnection(f"no free connection within {timeout:g} s")
        try:
            # what is left of the timeout bounds the connect, which no deadline ticket can
            # reach (there is no socket to shut before it connects)
            left = timeout - (time.monotonic() - began)
            if left <= 0:
                raise NoFreeConnection(f"no free connection within {timeout:g} s")
            connection = self._take(host, left)
            exchange = (method, target, body, headers, max_answer, read)
            try:
                return self._exchange(host, connection, *exchange)
            except _STALE_ERRORS:
                left = timeout - (time.monotonic() - began)
                # (_exchange already turned a failure after any answer byte into a final one)
                if not connection.reused or left <= 0 or _deadline.current_expired():
                    raise  # not the keep-alive race, or no time left for another try
            # the keep-alive race: the server closed the connection as it was taken
            return self._exchange(host, self._new(host, left), *exchange)
        finally:
            host.free.release()

    def _exchange(
        self,
        host: _Host,
        connection: _Connection,
        method: str,
        target: str,
        body: bytes | None,
        headers: Mapping[str, str],
        max_answer: int,
        read: Callable[[http.client.HTTPResponse], _T],
    ) -> tuple[int, _T]:
        sock = connection.sock
        response: http.client.HTTPResponse | None = None
        connection.answer = None
        try:
            connection.request(method, target, body, headers)
            sock = connection.sock  # connected by the request if it was new
            connection.answer_limit = max_answer
            response = connection.getresponse()
            _check_framing(response)
            answer = read(response)
        except BaseException as error:
            _deadline.detach_current(sock)
            _close(connection, response)
            if connection.answer_began and isinstance(error, _STALE_ERRORS):
                # a reset after the answer began is no keep-alive race: never sent again
                raise ConnectionError("the connection failed during the answer") from error
            raise
        # from here on the socket is no longer this request's for its ticket to shut
        _deadline.detach_current(sock)
        reusable = response.isclosed() and not response.will_close and connection.sock is not None
        with self._lock:
            kept = reusable and connection.generation == self._generation
            if kept:
                connection.reused = True
                host.idle.append(connection)
        if not kept:
            # unread bytes, "Connection: close", or made before the last clear()
            _close(connection, response)
        return response.status, answer

    def _host(self, address: str) -> _Host:
        host = self._hosts.get(address)
        if host is None:
            with self._lock:
                host = self._hosts.get(address)
                if host is None:
                    host = _Host(address, self.maxsize, self.ssl_context)
                    self._hosts[address] = host
        return host

    def _take(self, host: _Host, timeout: float) -> _Connection:
        """An idle connection still usable, else a new one (connected on first send)."""
        while True:
            with self._lock:
                connection = host.idle.pop() if host.idle else None
            if connection is None:
                return self._new(host, timeout)
            if _dropped(connection):
                connection.close()
                continue
            assert connection.sock is not None
            connection.sock.settimeout(timeout)
            _deadline.attach_current(connection.sock)
            return connection

    def _new(self, host: _Host, timeout: float) -> _Connection:
        return _Connection(
            host.hostname, host.port, timeout, host.tls, self.server_hostname, self._generation
        )

    def clear(self) -> None:
        """Close every idle connection: the next request connects (and shakes hands) anew.
        Connections in use now are closed when their requests end, not kept."""
        with self._lock:
            self._generation += 1
            idle = [connection for host in self._hosts.values() for connection in host.idle]
            for host in self._hosts.values():
                host.idle.clear()
        for connection in idle:
            connection.close()
