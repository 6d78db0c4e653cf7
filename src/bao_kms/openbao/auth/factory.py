"""From the ``auth`` section of the config to the :class:`~.base.Auth` the transport uses.

The one place that knows which class implements which ``auth.method``: a new method adds a
case here next to its class in :data:`bao_kms.config.AuthConfig`, and mypy's exhaustiveness
check (``assert_never``) fails until both are there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from ...config import AuthConfig, TokenAuth
from .base import Auth
from .token_file import TokenFileAuth


def build_auth(settings: AuthConfig, *, clock: Callable[[], float]) -> Auth:
    """The configured method's :class:`Auth`, sharing the provider's *clock*."""
    match settings:
        case TokenAuth():
            return TokenFileAuth(settings.token.file, clock=clock)
        case _:
            assert_never(settings)
