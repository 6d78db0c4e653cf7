"""OpenBao token from a file: cached in memory, re-read when the file is replaced, renewed.

The token is rotated by whoever writes the file (an agent, an operator), so the file is the
source of truth; the provider never writes it. Stat results are trusted for about a second,
which keeps ``token()`` on the request path free of syscalls almost always while still picking
up a new token quickly.

Once started, the background thread looks the token up (``lookup-self``) and renews it at 2/3
of its TTL, so a periodic token lives as long as the provider does. A token that cannot be
renewed any more (max TTL, not renewable) is logged with the time it has left: only a new file
can help. A token OpenBao has refused after once accepting it, or whose known TTL has run out,
is not sent again: requests fail at once with ``auth_credential_invalid`` until the file
changes.
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable

from ...errors import AuthCredentialInvalid, KmsError
from ...logs import LogThrottle
from .credentials import (
    CredentialFile,
    CredentialProblem,
    Signature,
    read_credential,
    single_value,
)
from .renewal import IDLE_WAKE, MIN_WAKE, Backoff, TokenKeeper
from .stats import LoginStatus
from .token_calls import Lease

logger = logging.getLogger(__name__)

#: how long a stat of the token file is trusted before the next one
STAT_INTERVAL = 1.0
DEAD_MESSAGE = "the token in the OpenBao token file has expired or was revoked"


class TokenFileAuth(TokenKeeper):
    """Supplies the ``X-Vault-Token`` value from a file; thread-safe."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__("token", clock=clock, rng=rng)
        self.path = os.fspath(path)
        self._file = CredentialFile("auth.token.file", "OpenBao token file", self.path)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._signature: Signature | None = None
        self._checked_at = -math.inf
        #: what OpenBao said of the current token (lookup, renewal); None: not known yet
        self._lease: Lease | None = None
        #: a token OpenBao refused after once accepting it: never sent again
        self._dead: str | None = None
        self._lookup_backoff = Backoff(rng=rng)
        self._lookup_retry_at = -math.inf
        self._throttle = LogThrottle(clock=clock)

    def check_credentials(self) -> None:
        try:
            single_value(self._file, read_credential(self._file)[0])
        except CredentialProblem as problem:
            raise problem.config_error() from None

    # --- the request path --------------------------------------------------------------------

    def token(self) -> str:
        """The current token; re-read only when the file's identity, size or mtime changed."""
        token = self._token
        if token is not None and self._clock() - self._checked_at < STAT_INTERVAL:
            return self._alive(token)
        with self._lock:
            now = self._clock()
            # Another thread may have checked while this one waited for the lock.
            if self._token is not None and now - self._checked_at < STAT_INTERVAL:
                return self._alive(self._token)
            try:
                stat = os.stat(self.path)
                signature: Signature | None = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            except OSError:
                signature = None  # _load names the problem precisely
            if self._token is None or signature is None or signature != self._signature:
                self._load()
            self._checked_at = now
            assert self._token is not None
            return self._alive(self._token)

    def refresh(self, refused: str | None = None) -> bool:
        """Re-read the file now; True when the next token() differs from the refused one."""
        with self._lock:
            previous = self._token
            self._load()
            self._checked_at = self._clock()
            token = self._token
        if token != previous or (refused is not None and refused != token):
            return True
        lease = self._lease
        if self._calls is None or lease is None or lease.token != token or token == self._dead:
            return False  # never looked up: a 403 may be the policy's, not a dead token
        try:
            alive = self.calls.lookup(token) is not None
        except KmsError:
            return False
        if alive:
            return False
        self._mark_dead(token)
        return True

    def _alive(self, token: str) -> str:
        lease = self._lease
        expired = lease is not None and lease.token == token and self._clock() >= lease.expires_at
        if token == self._dead or expired:
            if self._throttle.admit("dead") is not None:
                logger.warning("OpenBao token file holds a dead token", extra={"path": self.path})
            raise AuthCredentialInvalid(DEAD_MESSAGE)
        return token

    def _load(self) -> None:
        try:
            content, signature = read_credential(self._file)
            token = single_value(self._file, content)
        except CredentialProblem as problem:
            # The next call must look at the file again instead of trusting the last good check.
            self._checked_at = -math.inf
            self.stats.count_login(LoginStatus.INVALID_CREDENTIAL)
            raise problem.runtime_error() from None
        if token != self._token:
            self.stats.count_login(LoginStatus.SUCCESS)
            self.stats.set_expiry(None)
            self._lookup_backoff.reset()
            self._lookup_retry_at = -math.inf
            self._poke()  # the thread looks the new token up
        self._token = token
        self._signature = signature

    def _mark_dead(self, token: str) -> None:
        logger.warning(
            "OpenBao refuses the token from the token file; replace the file",
            extra={"path": self.path},
        )
        self._dead = token
        self.stats.set_expiry(None)

    # --- the background thread ---------------------------------------------------------------

    def maintain(self) -> float:
        token = self._token
        now = self._clock()
        if token is None or token == self._dead:
            return IDLE_WAKE  # woken when the file brings a new token
        lease = self._lease
        if lease is None or lease.token != token:
            if now < self._lookup_retry_at:
                return self._lookup_retry_at - now
            lease = self._look_up(token)
            if lease is None:
                return max(MIN_WAKE, self._lookup_retry_at - self._clock())
        elif lease.renewable and not lease.capped and now >= self._renewal_due(lease):
            renewed = self._renew(lease)
            if renewed is None:
                self._mark_dead(token)
                return IDLE_WAKE
            lease = self._lease = renewed
            if renewed.capped:
                self._warn_no_renewal(renewed)
        if not lease.renewable or lease.capped:
            return max(MIN_WAKE, min(IDLE_WAKE, lease.expires_at - self._clock()))
        return self._next_wake(lease)

    def _renewal_due(self, lease: Lease) -> float:
        return max(lease.renew_at, self._renew_retry_at)

    def _look_up(self, token: str) -> Lease | None:
        try:
            lease = self.calls.lookup(token)
        except KmsError as error:
            lease, reason = None, error.reason
        else:
            reason = "refused"
        if lease is None:
            # Refused: dead, or its policies lack lookup-self (the default policy). It is still
            # sent; only a token once looked up successfully is ever judged dead.
            delay = self._lookup_backoff.next_delay()
            self._lookup_retry_at = self._clock() + delay
            if self._throttle.admit(("lookup", reason)) is not None:
                logger.warning(
                    "cannot look up the token from the token file; it is not renewed",
                    extra={"path": self.path, "reason": reason},
                )
            return None
        self._lease = lease
        self._new_lease(lease)
        logger.info(
            "token from the token file looked up",
            extra={"ttl_s": lease.ttl, "renewable": lease.renewable},
        )
        if lease.ttl > 0 and not lease.renewable:
            self._warn_no_renewal(lease)
        return lease

    def _warn_no_renewal(self, lease: Lease) -> None:
        logger.warning(
            "the token in the token file cannot be renewed further; replace the file before "
            "it expires",
            extra={"path": self.path, "expires_in_s": round(lease.expires_at - self._clock())},
        )
