"""How the provider authenticates to OpenBao: the :class:`Auth` protocol and its methods.

``token_file`` reads a token someone else writes; ``login`` logs in with an AppRole, a JWT or a
TLS certificate (``approle``, ``jwt``, ``cert``). Both keep their token alive with the thread in
``renewal`` and count what they do in ``stats`` for /metrics.
"""

from __future__ import annotations

from .base import Auth, OpenBaoRequests
from .login import LoginAuth
from .stats import AuthStats, LoginStatus, RenewalStatus
from .token_file import TokenFileAuth

__all__ = [
    "Auth",
    "AuthStats",
    "LoginAuth",
    "LoginStatus",
    "OpenBaoRequests",
    "RenewalStatus",
    "TokenFileAuth",
]
