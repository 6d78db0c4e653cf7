"""The OpenBao client: one connection pool, endpoint failover, token auth and the Transit calls.

Everything here raises the provider's own :mod:`bao_kms.errors` classes with messages that are
safe to show kube-apiserver: a category and at most an HTTP status or a key version number.
"""

from __future__ import annotations

from .auth import Auth, TokenFileAuth
from .breaker import CircuitBreaker
from .key_metadata import KeyMetadata
from .transit import TransitClient
from .transport import Transport, make_pool

__all__ = [
    "Auth",
    "CircuitBreaker",
    "KeyMetadata",
    "TokenFileAuth",
    "TransitClient",
    "Transport",
    "make_pool",
]
