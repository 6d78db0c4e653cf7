"""What an auth method counts for ``/metrics``: logins, renewals, and the token's lifetime.

A Prometheus custom collector reads :class:`AuthStats` at scrape time (house style: state is
never copied into gauges on every change). The names map one to one:

========================================  ===============================================
``openbao_kms_auth_login_total``          :meth:`AuthStats.logins` by ``(method, status)``
``openbao_kms_auth_renewal_total``        :meth:`AuthStats.renewals` by ``status``
``openbao_kms_token_ttl_seconds``         :meth:`AuthStats.token_ttl` (``None``: no sample)
========================================  ===============================================
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from enum import StrEnum


class LoginStatus(StrEnum):
    """``status`` label of ``openbao_kms_auth_login_total``."""

    SUCCESS = "success"
    #: OpenBao refused the credential (wrong role, secret ID, JWT or certificate)
    REFUSED = "refused"
    #: a credential file is missing, unsafe, empty, malformed or expired: nothing was sent
    INVALID_CREDENTIAL = "invalid_credential"
    #: OpenBao could not be reached (every address), or answered 5xx
    UNAVAILABLE = "unavailable"


class RenewalStatus(StrEnum):
    """``status`` label of ``openbao_kms_auth_renewal_total``."""

    SUCCESS = "success"
    #: renewed, but less than asked: the token's max TTL is near, a re-login follows
    MAX_TTL = "max_ttl"
    #: OpenBao no longer accepts the token (expired or revoked)
    REFUSED = "refused"
    UNAVAILABLE = "unavailable"


class AuthStats:
    """Thread-safe counters and the current token's expiry on the injected clock."""

    def __init__(self, method: str, clock: Callable[[], float]) -> None:
        #: the ``method`` label: ``token``, ``approle``, ``jwt`` or ``cert``
        self.method = method
        self._clock = clock
        self._lock = threading.Lock()
        self._logins = dict.fromkeys(LoginStatus, 0)
        self._renewals = dict.fromkeys(RenewalStatus, 0)
        self._expires_at: float | None = None

    def count_login(self, status: LoginStatus) -> None:
        with self._lock:
            self._logins[status] += 1

    def count_renewal(self, status: RenewalStatus) -> None:
        with self._lock:
            self._renewals[status] += 1

    def set_expiry(self, expires_at: float | None) -> None:
        """Clock time the current token dies (``math.inf``: never; None: no token)."""
        self._expires_at = expires_at  # one attribute store: atomic, no lock needed

    def logins(self) -> dict[LoginStatus, int]:
        """Logins so far by outcome (every status present, zeros included)."""
        with self._lock:
            return dict(self._logins)

    def renewals(self) -> dict[RenewalStatus, int]:
        """Renewals so far by outcome (every status present, zeros included)."""
        with self._lock:
            return dict(self._renewals)

    def token_ttl(self) -> float | None:
        """Seconds the current token has left (0 once dead); None without a token or when it
        never expires (a root token), where a number would mislead an alert."""
        expires_at = self._expires_at
        if expires_at is None or math.isinf(expires_at):
            return None
        return max(0.0, expires_at - self._clock())
