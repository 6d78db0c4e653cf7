"""The stop signals of ``serve`` and ``dev``: SIGTERM, SIGINT and SIGHUP all mean "drain and stop".

SIGHUP is a stop, not a reload: a closed terminal sends it to ``dev``, and ``serve`` re-reads
nothing at run time. SIGUSR1 and SIGQUIT keep their default actions (terminate; terminate with
a core dump): neither is a polite stop request, and nothing here would use a reload.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from ._output import EXIT_RUNTIME

#: the signals a supervisor, a terminal or Ctrl-C use to ask a process to stop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_FORCED_EXIT_LINE = (
    b'{"level":"warning","logger":"bao_kms.cli","msg":"second signal: exiting without draining"}\n'
)


class SignalLatch:
    """Stop signals set a flag instead of killing the process; installed *before* start-up
    so a signal that arrives while binding or probing still leads to a clean stop.

    The handler runs in the main thread between any two bytecodes, possibly while that thread
    holds a lock (inside ``threading.Event``, ``logging``, or a first run of this very
    handler), so it takes no lock at all: plain assignments, ``os.write``, ``os._exit``.
    ``Event.set()`` here once deadlocked a provider that got the same signal twice. The
    injected *clock* must obey the same rule (``time.monotonic`` does).
    """

    #: duplicates of one signal (a process group, a supervisor forwarding it) arrive within
    #: this window and count once; a later second signal means "stop now, skip the drain"
    DOUBLE_SIGNAL_WINDOW = 1.0
    POLL_SECONDS = 0.1

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        signals: tuple[signal.Signals, ...] = STOP_SIGNALS,
    ) -> None:
        self.received: int | None = None
        self._clock = clock
        self._signals = signals
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalLatch:
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        now = self._clock()
        if self.received is None:
            self._first_at = now
            self.received = signum
            return
        if now - self._first_at > self.DOUBLE_SIGNAL_WINDOW:
            os.write(2, _FORCED_EXIT_LINE)
            os._exit(EXIT_RUNTIME)  # a socket left behind is reclaimed as stale next start

    def wait(self) -> int:
        """Block until a signal arrives (at once if one already did); return its number."""
        while self.received is None:
            time.sleep(self.POLL_SECONDS)  # the handler interrupts it; no lock to share
        return self.received
