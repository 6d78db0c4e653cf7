"""Total deadlines for OpenBao requests: a watchdog that shuts the socket when time is up.

Socket timeouts bound each socket operation, not the request: an OpenBao (or anything on
its address) that sends its answer a byte at a time holds a call for as long as it likes.
So every request registers a :class:`Ticket` with the transport's :class:`DeadlineWatchdog`,
and the connection pool (:mod:`.connections`) attaches each socket the request uses through
:func:`attach_current`: the TCP socket right after connect, the TLS socket that takes its
descriptor over before the handshake starts, and a pooled connection's socket when it is
reused. When the ticket expires, the watchdog shuts those sockets down: whatever the request
was waiting for (TLS, headers, body) returns at once with an error.

:meth:`DeadlineWatchdog.close` does the same to every request in flight and refuses new ones:
the provider calls it when its drain grace is over, so a stop never waits on OpenBao.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable

from ..errors import OpenBaoUnavailable

# The request a thread is sending: the connection classes attach their sockets to it.
_current = threading.local()
#: seconds without any request after which the watchdog thread ends (a new one starts on use)
_IDLE_EXIT = 30.0


class Ticket:
    """One request's deadline; its state changes only under the watchdog's lock."""

    __slots__ = ("aborted", "cut", "expired", "finished", "sockets")

    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []
        self.expired = False  # its time is up (or the transport was closed)
        self.cut = False  # ... and the watchdog shut a socket the request was using
        self.aborted = False  # ... because the transport was closed, not because time ran out
        self.finished = False


def _shut(sock: socket.socket) -> None:
    try:
        # socket.socket's own shutdown, also for an SSLSocket: it only shuts the descriptor
        # down (waking a blocked recv) and leaves the TLS object to the reading thread
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed or never connected


class DeadlineWatchdog:
    """Expires request tickets on time; one daemon thread, started on first use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # Real time, not the transport's injectable clock: this thread sleeps on it.
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Ticket]] = []
        self._order = itertools.count()
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def watch(self, seconds: float) -> Ticket:
        """A ticket that expires *seconds* from now; OpenBaoUnavailable once closed."""
        ticket = Ticket()
        expires = self._clock() + seconds
        with self._lock:
            if self._closed:
                raise OpenBaoUnavailable("the provider is stopping; no new OpenBao requests")
            heapq.heappush(self._heap, (expires, next(self._order), ticket))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="bao-kms-openbao-deadline", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is ticket:
                self._wake.notify()  # a new earliest deadline
        return ticket

    def attach(self, ticket: Ticket, sock: socket.socket) -> None:
        with self._lock:
            if ticket.finished:
                return
            if ticket.expired:
                ticket.cut = True
                _shut(sock)
            else:
                ticket.sockets.append(sock)

    def detach(self, ticket: Ticket, sock: socket.socket) -> None:
        """*sock* went back to the pool: another request may use it now."""
        with self._lock:
            if sock in ticket.sockets:
                ticket.sockets.remove(sock)

    def finish(self, ticket: Ticket) -> bool:
        """Stop watching *ticket*; True when the watchdog cut its request short (whatever
        answer or error the request got is then the watchdog's doing)."""
        with self._lock:
            ticket.finished = True
            ticket.sockets.clear()
            return ticket.cut

    def close(self) -> None:
        """Abort every request in flight and refuse new ones (the provider is stopping)."""
        with self._lock:
            self._closed = True
            for _, _, ticket in self._heap:
                if not ticket.finished:
                    ticket.aborted = True
                    self._expire(ticket)
            self._heap.clear()
            self._wake.notify()

    def _expire(self, ticket: Ticket) -> None:
        ticket.expired = True
        ticket.cut = bool(ticket.sockets)
        for sock in ticket.sockets:
            _shut(sock)
        ticket.sockets.clear()

    def _run(self) -> None:
        with self._lock:
            while not self._closed:
                now = self._clock()
                heap = self._heap
                # finished tickets stay queued until their time; popping them costs less than
                # removing each one from the middle of the heap when it finishes
                while heap and heap[0][0] <= now:
                    ticket = heapq.heappop(heap)[2]
                    if not ticket.finished:
                        self._expire(ticket)
                if heap:
                    self._wake.wait(heap[0][0] - now)
                elif not self._wake.wait(_IDLE_EXIT) and not heap:
                    self._thread = None  # idle: the next watch() starts a new thread
                    return
            self._thread = None


def attach_current(sock: socket.socket | None) -> None:
    """Hand *sock* to the deadline ticket of the request this thread is sending, if any:
    from now until :func:`detach_current`, the watchdog shuts it when that ticket expires."""
    request = getattr(_current, "request", None)
    if request is not None and sock is not None:
        watchdog, ticket = request
        watchdog.attach(ticket, sock)


def current_expired() -> bool:
    """True when the request this thread is sending has run out of time (or was aborted)."""
    request = getattr(_current, "request", None)
    return request is not None and request[1].expired


def detach_current(sock: socket.socket | None) -> None:
    """*sock* goes back to the pool (or is closed): no longer this request's to shut."""
    request = getattr(_current, "request", None)
    if request is not None and sock is not None:
        watchdog, ticket = request
        watchdog.detach(ticket, sock)


class watching:
    """Context manager: *ticket*'s request is the one this thread sends until exit."""

    __slots__ = ("_request",)

    def __init__(self, watchdog: DeadlineWatchdog, ticket: Ticket) -> None:
        self._request = (watchdog, ticket)

    def __enter__(self) -> None:
        _current.request = self._request

    def __exit__(self, *exc_info: object) -> None:
        _current.request = None
