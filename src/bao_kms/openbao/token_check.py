"""Is a 403 the policy's, or is the token itself dead? Asked of ``auth/token/lookup-self``.

OpenBao answers "permission denied" (403) both when the policy does not allow a path and when
the token expired or was revoked. The remedies differ (apply the policy / give a new token),
so the transport asks ``lookup-self`` with the same token: refused too means the token is bad.

A storm of 403s must not become a storm of lookups, so the check is single-flight (concurrent
callers share one lookup) and rate-limited (at most one per ``interval``). A verdict is kept
for the token it was made for only: "rejected" for as long as that token is in use (a dead
token never comes back), "valid" for one interval. When no verdict for this token can be had
(rate-limited, or the lookup failed), the answer is None: unknown, never a guess.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

#: at most one lookup-self per this many seconds, however many 403s arrive
CHECK_INTERVAL = 1.0

#: (token, deadline) -> True valid, False refused, None no answer
Lookup = Callable[[str, float | None], bool | None]


class TokenCheck:
    """Thread-safe; *lookup* sends ``GET auth/token/lookup-self`` with the given token."""

    def __init__(
        self,
        lookup: Lookup,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = CHECK_INTERVAL,
        wait_limit: float = 5.0,
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self.interval = interval
        self._wait_limit = wait_limit  # without a caller deadline, how long to queue
        self._lock = threading.Lock()
        # (fingerprint of the token it is about - never the token -, verdict, when), replaced
        # whole so a reader without the lock never sees one token's verdict with another's time
        self._verdict: tuple[bytes, bool, float] | None = None
        self._looked_up_at = -float("inf")
        self.lookups = 0  # for tests and metrics: how many lookups were sent

    def token_valid(self, token: str, deadline: float | None = None) -> bool | None:
        """True: the token works (the 403 is the policy's); False: OpenBao refuses the token
        itself; None: not known now."""
        fingerprint = hashlib.sha256(token.encode("utf-8")).digest()
        wait = self._wait_limit if deadline is None else deadline - self._clock()
        if wait <= 0 or not self._lock.acquire(timeout=wait):
            return self._cached(fingerprint)
        try:
            cached = self._cached(fingerprint)
            now = self._clock()
            if cached is not None or now - self._looked_up_at < self.interval:
                return cached
            self._looked_up_at = now
            self.lookups += 1
            verdict = self._lookup(token, deadline)
            if verdict is not None:
                self._verdict = (fingerprint, verdict, now)
            return verdict
        finally:
            self._lock.release()

    def _cached(self, fingerprint: bytes) -> bool | None:
        kept = self._verdict
        if kept is None or kept[0] != fingerprint:
            return None
        if not kept[1]:
            return False  # a refused token stays refused
        return True if self._clock() - kept[2] < self.interval else None
