"""A deadline for receiving the request message, so a stalled stream cannot pin a worker.

grpcio's sync server hands a call to a worker thread as soon as its HTTP/2 headers arrive; for
a unary method that thread then waits for the request message with no time limit. A client
that opens streams and never sends their message would hold every worker until it hung up,
and Status would stop answering for everyone.

The provider therefore registers its methods as client-streaming (on the wire a unary call is
exactly a client-streaming call with one message), so its handler runs *before* the message
arrives and can arm a deadline. One watchdog thread cancels each call whose message has not
arrived within :data:`RECEIVE_TIMEOUT`: the worker wakes at once and the client sees
``CANCELLED``. A call whose own gRPC deadline is shorter ends sooner, by grpcio's doing.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from ..logs import LogThrottle

log = logging.getLogger("bao_kms.server")

#: kube-apiserver writes headers and message back to back; a message of at most ~100 KiB over
#: a Unix socket arrives in microseconds, so two seconds is generous even on a loaded node
RECEIVE_TIMEOUT = 2.0
#: how long a stream that ended without a message waits to see whether grpcio is ending the call
#: (it refused the message, e.g. as too large) or the client half-closed it (a malformed call)
END_GRACE = 0.25
#: the watchdog wakes at most this often: under steady traffic the head of its queue expires
#: every millisecond, and waking for each cost ~4% of the server's CPU in a Decrypt storm; a
#: stalled call is cancelled at most this late
WATCH_GRANULARITY = 0.05


class _Pending:
    """One call waiting for its message; ``context`` is dropped once the message arrived so
    finished calls are not kept alive until the watchdog reaches their entry."""

    __slots__ = ("context", "expires")

    def __init__(self, expires: float, context: grpc.ServicerContext) -> None:
        self.expires = expires
        self.context: grpc.ServicerContext | None = context


class ReceiveDeadline:
    """Reads the one request message of a call, cancelling calls that stall; thread-safe.

    ``stalled`` counts the calls cancelled for never sending their message (read it at scrape
    time). Entries are queued in arrival order with the same timeout, so their deadlines are
    (nearly) ordered and the watchdog only ever looks at the head of the queue.
    """

    def __init__(
        self,
        timeout: float = RECEIVE_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.stalled = 0
        self._clock = clock
        # deque.append/popleft are atomic: request threads append, the watchdog pops
        self._pending: collections.deque[_Pending] = collections.deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._throttle = LogThrottle()

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._watch, name="bao-kms-receive-deadline", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def receive(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes | None:
        """The call's request message; None when the client closed its side without one.

        Raises :class:`grpc.RpcError` when the call was cancelled while waiting (by the client,
        by its deadline, by grpcio refusing an oversized message, or by this watchdog); grpcio
        recognises that error as its own and ends the call quietly.
        """
        entry = _Pending(self._clock() + self.timeout, context)
        self._pending.append(entry)
        try:
            return next(requests)
        except StopIteration:
            entry.context = None  # the stream has ended: not a stall for the watchdog to cancel
            self._no_message(requests, context)  # raises if grpcio is ending the call
            return None
        finally:
            entry.context = None

    def _no_message(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> None:
        """The stream ended without a message. grpcio ends it that way too when it refuses the
        message itself (larger than the receive limit), and marks the call cancelled a moment
        later: then the call is not the servicer's to judge or count (the client already has
        grpcio's RESOURCE_EXHAUSTED). Asking the iterator again raises grpcio's own error for a
        cancelled call, which ends the handler quietly. A client that really half-closed
        without a message waits :data:`END_GRACE` for its INVALID_ARGUMENT.
        """
        ended = threading.Event()
        if context.add_callback(ended.set):
            ended.wait(END_GRACE)
        if not context.is_active():
            with contextlib.suppress(StopIteration):  # ended, but not cancelled: ours to judge
                next(requests)  # raises grpcio's RpcError for a cancelled call

    def _watch(self) -> None:
        tick = self.timeout / 4
        while not self._stopping.is_set():
            now = self._clock()
            pending = self._pending
            while pending and pending[0].expires <= now:
                context = pending.popleft().context
                if context is not None:
                    self._cancel(context)
            wait = pending[0].expires - now if pending else tick
            self._stopping.wait(min(max(wait, WATCH_GRANULARITY), tick))

    def _cancel(self, context: grpc.ServicerContext) -> None:
        self.stalled += 1  # one writer: this thread
        context.cancel()
        suppressed = self._throttle.admit("stalled")
        if suppressed is not None:
            log.warning(
                "call cancelled: no request message within the receive deadline",
                extra={
                    "receive_timeout_seconds": self.timeout,
                    "suppressed_since_last": suppressed,
                },
            )
