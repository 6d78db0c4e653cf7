"""Keeping a token alive: the background thread, renewal, and backoff every method shares.

The thread sleeps until the next thing to do (renew at 2/3 of the TTL, retry after a failure)
and does it through :meth:`TokenKeeper.maintain`, which tests call directly with a fake clock.
A renewal that grants less than the token's natural TTL has hit the max TTL: renewing again
cannot save it, so the method logs in again (or, for a token file, warns that the file must be
replaced) while the old token still has life left.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable

from ...errors import KmsError
from .base import OpenBaoRequests
from .stats import AuthStats, RenewalStatus
from .token_calls import Lease, TokenCalls, is_refusal

logger = logging.getLogger(__name__)

#: the thread looks again at least this often even with nothing scheduled
IDLE_WAKE = 60.0
#: and never spins faster than this
MIN_WAKE = 0.05
#: longest wait between attempts while OpenBao cannot be reached: a login is one request at a
#: time (single flight), and a raft election or restart is over in seconds, so waiting longer
#: would only stretch the outage past OpenBao's own
UNAVAILABLE_BACKOFF_CAP = 2.0


class Backoff:
    """Exponential delays with full jitter: many providers retrying at once spread out."""

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 30.0,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng
        self._failures = 0

    def next_delay(self, maximum: float | None = None) -> float:
        """The wait after one more failure: half to all of ``initial * 2**failures``, capped
        at *maximum* (default: the instance's)."""
        cap = self.maximum if maximum is None else maximum
        ceiling = min(cap, self.initial * 2 ** min(self._failures, 30))
        self._failures += 1
        return ceiling * (0.5 + 0.5 * self._rng())

    def reset(self) -> None:
        self._failures = 0


class TokenKeeper:
    """The background half of an :class:`~.base.Auth`: a thread running :meth:`maintain`."""

    def __init__(
        self, method: str, *, clock: Callable[[], float], rng: Callable[[], float]
    ) -> None:
        self.stats = AuthStats(method, clock)
        self._clock = clock
        self._rng = rng
        self._calls: TokenCalls | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._renew_backoff = Backoff(rng=rng)
        self._renew_retry_at = -math.inf

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, openbao: OpenBaoRequests) -> None:
        if self._thread is not None:
            raise RuntimeError("auth already started")
        self.check_credentials()
        self.bind(openbao)
        self._thread = threading.Thread(
            target=self._run, name=f"openbao-auth-{self.stats.method}", daemon=True
        )
        self._thread.start()

    def bind(self, openbao: OpenBaoRequests) -> None:
        """Give the auth its way to OpenBao without starting the thread (tests drive
        :meth:`maintain` themselves)."""
        self._calls = TokenCalls(openbao, self._clock)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(10.0)

    def check_credentials(self) -> None:
        """Raise ConfigError when a credential file is unusable (at start)."""

    def maintain(self) -> float:
        """Do whatever is due now; returns seconds until the next thing is due."""
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                delay = self.maintain()
            except Exception:  # a bug must not end token renewal for good
                logger.exception("token maintenance failed")
                delay = 1.0
            self._wake.wait(min(max(delay, MIN_WAKE), IDLE_WAKE))
            self._wake.clear()

    def _poke(self) -> None:
        """Let the thread look again now (a new token to learn about)."""
        self._wake.set()

    # --- renewal -----------------------------------------------------------------------------

    @property
    def calls(self) -> TokenCalls:
        if self._calls is None:
            raise RuntimeError("auth not started: no way to reach OpenBao")
        return self._calls

    def _renew(self, lease: Lease) -> Lease | None:
        """Renew *lease*; the new lease, *lease* itself on a failure worth retrying, or None
        when OpenBao refuses the token (expired or revoked: it is dead)."""
        now = self._clock()
        try:
            renewed = self.calls.renew(lease)
        except KmsError as error:
            if is_refusal(error):
                self.stats.count_renewal(RenewalStatus.REFUSED)
                logger.warning(
                    "OpenBao refused to renew the token: expired or revoked",
                    extra={"method": self.stats.method},
                )
                return None
            self.stats.count_renewal(RenewalStatus.UNAVAILABLE)
            delay = self._renew_backoff.next_delay(UNAVAILABLE_BACKOFF_CAP)
            # never wait past the token's death for a retry: by then a login is needed anyway
            self._renew_retry_at = min(now + delay, lease.expires_at)
            logger.warning(
                "token renewal failed; retrying",
                extra={"method": self.stats.method, "reason": error.reason, "in_s": delay},
            )
            return lease
        self._renew_backoff.reset()
        self._renew_retry_at = -math.inf
        if renewed.capped:
            self.stats.count_renewal(RenewalStatus.MAX_TTL)
            logger.info(
                "token renewal reached the max TTL",
                extra={"method": self.stats.method, "ttl_s": renewed.ttl},
            )
        else:
            self.stats.count_renewal(RenewalStatus.SUCCESS)
            logger.debug("token renewed", extra={"ttl_s": renewed.ttl})
        self.stats.set_expiry(renewed.expires_at)
        return renewed

    def _new_lease(self, lease: Lease) -> None:
        """A token from a login or a file: renewal starts afresh."""
        self._renew_backoff.reset()
        self._renew_retry_at = -math.inf
        self.stats.set_expiry(lease.expires_at)

    def _next_wake(self, lease: Lease | None, *retry_times: float) -> float:
        """Seconds until *lease* wants renewing (or its renewal retried) or another retry."""
        renewal = math.inf if lease is None else max(lease.renew_at, self._renew_retry_at)
        due = min((renewal, *retry_times))
        return max(MIN_WAKE, min(IDLE_WAKE, due - self._clock()))
