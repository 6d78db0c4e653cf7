"""A circuit breaker in front of OpenBao: fail fast while it is down.

When OpenBao hangs (a partition, a stuck leader), every request would hold a gRPC worker for
the whole OpenBao timeout, and a cold-start Decrypt burst would fill the queue with calls that
are all going to fail. After ``threshold`` consecutive failures the breaker *opens*: requests
fail at once with ``OpenBaoUnavailable`` for ``open_for`` seconds. Then it lets exactly one
trial request through (*half-open*); its success closes the breaker, its failure re-opens it.

Only a failure to get a usable answer counts (connection, TLS, timeout, 5xx, sealed): any
other answer, a 4xx, a 429 or a redirect included, means OpenBao is up and resets the count.
The transport applies the answer table (:mod:`.answers`, column "breaker"); a caller's
deadline is no verdict either way. The status probes are not held back by the breaker (they
must see OpenBao's real state), but their outcomes count, so a successful probe closes it at
once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import OpenBaoCircuitOpen as CircuitOpen

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "CircuitOpen"]


class CircuitBreaker:
    """Thread-safe; the clock is injected so tests can step time."""

    def __init__(
        self,
        threshold: int = 3,
        open_for: float = 5.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if threshold < 1 or open_for <= 0:
            raise ValueError("threshold must be at least 1 and open_for positive")
        self.threshold = threshold
        self.open_for = open_for
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._trial_at = 0.0
        #: a trial that never reports back (a bug, a lost thread) must not block forever
        self.trial_timeout = open_for + 60.0
        self._state = CLOSED

    @property
    def state(self) -> str:
        return self._state

    def before_request(self) -> None:
        """Raise CircuitOpen unless this request may go to OpenBao."""
        if self._state == CLOSED:  # the common case, without the lock
            return
        with self._lock:
            if self._state == CLOSED:
                return
            now = self._clock()
            if (self._state == OPEN and now - self._opened_at >= self.open_for) or (
                self._state == HALF_OPEN and now - self._trial_at >= self.trial_timeout
            ):
                self._state = HALF_OPEN  # this caller is the one trial
                self._trial_at = now
                return
        raise CircuitOpen("OpenBao is unavailable (failing fast after repeated failures)")

    def record_success(self) -> None:
        if self._state == CLOSED and not self._failures:
            return
        with self._lock:
            self._failures = 0
            self._state = CLOSED

    def record_inconclusive(self) -> None:
        """The request ended without an answer either way (the caller's deadline passed): a
        trial in flight is over, so re-open and allow another one later."""
        if self._state != HALF_OPEN:
            return
        with self._lock:
            if self._state == HALF_OPEN:
                self._state = OPEN
                self._opened_at = self._clock()

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._state == HALF_OPEN or self._failures >= self.threshold:
                self._state = OPEN
                self._opened_at = self._clock()
