"""The signals of ``serve`` and ``dev``: no signal kills the provider without cleaning up.

SIGTERM, SIGINT, SIGHUP and SIGQUIT mean "drain and stop". SIGHUP is a stop, not a reload: a
closed terminal sends it to ``dev``, and ``serve`` re-reads nothing at run time. SIGQUIT would
dump core by default; a KMS plugin's memory holds tokens, so it drains like the others.

Every other catchable signal whose default action would end the process (SIGUSR1, SIGUSR2,
SIGALRM, SIGPROF, SIGVTALRM, SIGIO, SIGPWR, SIGSTKFLT, SIGXCPU, the real-time signals) is
caught, logged and otherwise ignored: a stray ``kill -USR1`` must not take every apiserver's
encryption down, nor leave a socket behind. Left alone: SIGKILL and SIGSTOP (they cannot be
caught; a socket left by SIGKILL is reclaimed as stale at the next start), the faults (SIGSEGV,
SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS), job control, and the signals that are
ignored already (SIGPIPE, SIGXFSZ, SIGCHLD, SIGCONT, SIGURG, SIGWINCH).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from ._output import EXIT_RUNTIME

log = logging.getLogger("bao_kms.cli")

#: the signals a supervisor, a terminal or Ctrl-C use to ask a process to stop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)

_NOT_IGNORED = {
    *STOP_SIGNALS,
    # cannot be caught
    signal.SIGKILL,
    signal.SIGSTOP,
    # faults: Python must see these (faulthandler, a core dump); catching them would spin
    signal.SIGSEGV,
    signal.SIGBUS,
    signal.SIGFPE,
    signal.SIGILL,
    signal.SIGABRT,
    signal.SIGTRAP,
    signal.SIGSYS,
    # stop the process rather than end it (job control), or are ignored already
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGCHLD,
    signal.SIGCONT,
    signal.SIGURG,
    signal.SIGWINCH,
}
#: signals whose default action would end the process, caught and logged instead
IGNORED_SIGNALS = tuple(sorted(set(signal.valid_signals()) - _NOT_IGNORED))


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"


class SignalLatch:
    """Stop signals set a flag instead of killing the process; installed *before* start-up
    so a signal that arrives while binding or probing still leads to a clean stop.

    The handler runs in the main thread between any two bytecodes, possibly while that thread
    holds a lock (inside ``threading.Event``, ``logging``, or a first run of this very
    handler), so it takes no lock at all: plain assignments, ``os.write``, ``os._exit``.
    ``Event.set()`` here once deadlocked a provider that got the same signal twice. The
    injected *clock* must obey the same rule (``time.monotonic`` does), and so must
    :attr:`before_forced_exit` (removing the socket: ``lstat`` and ``unlink`` only).
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
        ignored: tuple[int, ...] = IGNORED_SIGNALS,
    ) -> None:
        self.received: int | None = None
        #: run (lock-free) just before a second signal ends the process without draining
        self.before_forced_exit: Callable[[], None] | None = None
        self._clock = clock
        self._signals = signals
        self._ignored = ignored
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}
        self._ignored_seen: list[int] = []  # appended by the handler, drained by wait()

    def __enter__(self) -> SignalLatch:
        for sig in self._signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        for other in self._ignored:
            try:
                self._previous[other] = signal.signal(other, self._ignore)
            except (OSError, ValueError):
                continue  # reserved by the C library on this platform
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
            cleanup = self.before_forced_exit
            if cleanup is not None:
                try:
                    cleanup()
                except OSError:
                    pass  # exiting anyway; a socket left behind is reclaimed as stale
            os.write(2, _forced_exit_line())
            os._exit(EXIT_RUNTIME)

    def _ignore(self, signum: int, frame: object) -> None:
        self._ignored_seen.append(signum)  # list.append takes no lock

    def _log_ignored(self) -> None:
        while self._ignored_seen:
            signum = self._ignored_seen.pop(0)
            log.warning(
                "signal ignored: it is not a stop signal",
                extra={"signal": signal_name(signum)},
            )

    def wait(self) -> int:
        """Block until a stop signal arrives (at once if one already did); return its number."""
        while self.received is None:
            self._log_ignored()
            time.sleep(self.POLL_SECONDS)  # the handler interrupts it; no lock to share
        self._log_ignored()
        return self.received


def _forced_exit_line() -> bytes:
    """The JSON log line of a forced exit, built without logging (which takes locks); it
    carries ``ts`` like every other line."""
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
    return (
        b'{"ts":"' + stamp.encode("ascii") + b'","level":"warning","logger":"bao_kms.cli",'
        b'"msg":"second signal: exiting without draining"}\n'
    )
