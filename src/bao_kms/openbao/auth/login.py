"""Auth by logging in (AppRole, JWT, TLS certificate): one token in memory, kept alive.

:class:`LoginAuth` is the :class:`~.base.Auth` for every method that logs in; a
:class:`LoginMethod` only says how to build its login request from its credential files.

- One login at a time (single flight): callers that find no usable token wait for the login
  in progress instead of starting their own.
- The background thread renews at 2/3 of the TTL and logs in again as soon as a renewal
  comes back cut short by the max TTL, while the old token still lives.
- A 401/403 on a request asks OpenBao (``lookup-self``) whether the token is dead before
  logging in again: a policy that denies one path must not cost a login per request.
- Failed logins back off exponentially with jitter; meanwhile callers get the last error at
  once, which names why no token can be had (a Status reason).
"""

from __future__ import annotations

import copy
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from ...errors import AuthLoginRefused, KmsError
from ...logs import LogThrottle
from .base import OpenBaoRequests
from .credentials import CredentialProblem
from .renewal import IDLE_WAKE, MIN_WAKE, UNAVAILABLE_BACKOFF_CAP, Backoff, TokenKeeper
from .stats import LoginStatus
from .token_calls import Lease

logger = logging.getLogger(__name__)

#: OpenBao's "this token is alive" answer is trusted this long after a 401/403
ALIVE_TRUST = 1.0
#: at most one login per this many seconds because of refused requests
REFRESH_LOGIN_INTERVAL = 1.0


class LoginMethod(Protocol):
    """How one auth method logs in; the credential files are read again for every login."""

    #: the ``method`` metrics label and config name: ``approle``, ``jwt``, ``cert``
    name: str
    #: for messages: ``AppRole``, ``JWT``, ``TLS certificate``
    label: str

    def check(self) -> None:
        """Read and check the credential files now; raises :class:`CredentialProblem`."""
        ...

    def login_request(self, openbao: OpenBaoRequests) -> tuple[str, dict[str, Any]]:
        """The login path below ``/v1/`` and its JSON body, from the files as they are now."""
        ...


def usable(lease: Lease, now: float) -> bool:
    """Whether *lease* may still be sent: not within its last tenth (at most 1 s) of life,
    where it could expire on the way to OpenBao."""
    return now < lease.expires_at - min(1.0, lease.ttl * 0.1)


class LoginAuth(TokenKeeper):
    """The :class:`~.base.Auth` of a :class:`LoginMethod`; thread-safe."""

    def __init__(
        self,
        method: LoginMethod,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        super().__init__(method.name, clock=clock, rng=rng)
        self.method = method
        # single flight: logins, renewals and lookups happen one at a time, under this lock;
        # token() on the request path reads self._lease without it
        self._lock = threading.Lock()
        self._lease: Lease | None = None
        self._login_backoff = Backoff(rng=rng)
        self._login_retry_at = -math.inf
        self._login_error: KmsError | None = None
        self._refresh_login_at = -math.inf
        self._alive: tuple[str, float] | None = None
        self._throttle = LogThrottle(clock=clock)

    def check_credentials(self) -> None:
        try:
            self.method.check()
        except CredentialProblem as problem:
            raise problem.config_error() from None

    # --- the request path --------------------------------------------------------------------

    def token(self) -> str:
        lease = self._lease
        if lease is not None and usable(lease, self._clock()):
            return lease.token
        with self._lock:
            lease = self._lease
            if lease is not None and usable(lease, self._clock()):
                return lease.token  # the login this caller waited for
            return self._login().token

    def refresh(self, refused: str | None = None) -> bool:
        with self._lock:
            lease = self._lease
            if lease is None or (refused is not None and lease.token != refused):
                return True  # already replaced while this request was out
            now = self._clock()
            if self._alive is not None and self._alive[0] == lease.token:
                if now - self._alive[1] < ALIVE_TRUST:
                    return False
            if now - self._refresh_login_at < REFRESH_LOGIN_INTERVAL:
                return False  # just logged in for this reason: the 403 is the policy's
            try:
                looked_up = self.calls.lookup(lease.token)
            except KmsError:
                return False  # cannot tell now; this request fails as it is
            if looked_up is not None:
                self._alive = (lease.token, now)
                return False
            logger.warning(
                "OpenBao no longer accepts the token (revoked or expired); logging in again",
                extra={"method": self.method.name},
            )
            self._forget()
            self._refresh_login_at = now
            try:
                self._login()
            except KmsError:
                pass  # token() raises it for the caller, with its reason
            return True

    # --- the background thread ---------------------------------------------------------------

    def maintain(self) -> float:
        with self._lock:
            now = self._clock()
            lease = self._lease
            if lease is not None and not usable(lease, now):
                self._forget()  # expired: only a login helps
                lease = None
            if (
                lease is not None
                and lease.renewable
                and not lease.capped
                and now >= max(lease.renew_at, self._renew_retry_at)
            ):
                lease = self._lease = self._renew(lease)
                if lease is None:
                    self._forget()
            if self._wants_login(lease, now) and now >= self._login_retry_at:
                try:
                    self._login()
                except KmsError:
                    pass  # retried after the backoff; the old token serves until then
            return max(MIN_WAKE, min(IDLE_WAKE, self._due() - self._clock()))

    def _wants_login(self, lease: Lease | None, now: float) -> bool:
        if lease is None or lease.capped:
            return True
        return not lease.renewable and now >= lease.renew_at

    def _due(self) -> float:
        """Clock time of the next thing to do."""
        lease = self._lease
        if lease is None or lease.capped:
            return self._login_retry_at
        if not lease.renewable:
            return max(lease.renew_at, self._login_retry_at)
        return max(lease.renew_at, self._renew_retry_at)

    # --- login (caller holds self._lock) -----------------------------------------------------

    def _forget(self) -> None:
        self._lease = None
        self.stats.set_expiry(None)

    def _login(self) -> Lease:
        if self._clock() < self._login_retry_at and self._login_error is not None:
            # a copy (class, message and attributes such as its answer class): raising the
            # stored instance again and again would pile tracebacks onto it
            raise copy.copy(self._login_error)
        try:
            path, body = self.method.login_request(self.calls.openbao)
            lease = self.calls.login(path, body, self.method.label)
        except CredentialProblem as problem:
            self._login_failed(problem.runtime_error(), LoginStatus.INVALID_CREDENTIAL)
        except AuthLoginRefused as error:
            self._login_failed(error, LoginStatus.REFUSED)
        except KmsError as error:
            self._login_failed(error, LoginStatus.UNAVAILABLE)
        self._login_backoff.reset()
        self._login_retry_at = -math.inf
        self._login_error = None
        self._lease = lease
        self._new_lease(lease)
        self.stats.count_login(LoginStatus.SUCCESS)
        logger.info(
            "logged in to OpenBao",
            extra={"method": self.method.name, "ttl_s": lease.ttl, "renewable": lease.renewable},
        )
        return lease

    def _login_failed(self, error: KmsError, status: LoginStatus) -> NoReturn:
        self.stats.count_login(status)
        # refusals wait up to 30 s (a person must fix something); unreachable, up to 2 s
        unreachable = status is LoginStatus.UNAVAILABLE
        delay = self._login_backoff.next_delay(UNAVAILABLE_BACKOFF_CAP if unreachable else None)
        self._login_retry_at = self._clock() + delay
        self._login_error = error
        if self._throttle.admit(error.reason) is not None:
            logger.warning(
                "OpenBao login failed",
                extra={
                    "method": self.method.name,
                    "reason": error.reason,
                    "error": str(error),
                    "retry_in_s": round(delay, 2),
                },
            )
        raise error
