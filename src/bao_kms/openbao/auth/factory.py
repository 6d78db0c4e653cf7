"""From the ``auth`` section of the config to the :class:`~.base.Auth` the transport uses.

The one place that knows which class implements which ``auth.method``: a new method adds a
case here next to its class in :data:`bao_kms.config.AuthConfig`, and mypy's exhaustiveness
check (``assert_never``) fails until both are there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import assert_never

from ...config import AppRoleAuth, AuthConfig, CertAuth, JwtAuth, TokenAuth
from .approle import AppRoleLogin
from .base import Auth
from .cert import CertLogin
from .jwt import JwtLogin
from .login import LoginAuth
from .token_file import TokenFileAuth


def build_auth(settings: AuthConfig, *, clock: Callable[[], float]) -> Auth:
    """The configured method's :class:`Auth`, sharing the provider's *clock*.

    Nothing is read here: :meth:`Auth.start` checks the credential files (exit code 3 when
    one is bad), so a config can be built and inspected without them.
    """
    match settings:
        case TokenAuth():
            return TokenFileAuth(settings.token.file, clock=clock)
        case AppRoleAuth():
            approle = settings.approle
            return LoginAuth(
                AppRoleLogin(approle.mount_path, approle.role_id_file, approle.secret_id_file),
                clock=clock,
            )
        case JwtAuth():
            return LoginAuth(
                JwtLogin(settings.jwt.mount_path, settings.jwt.role, settings.jwt.token_file),
                clock=clock,
            )
        case CertAuth():
            cert = settings.cert
            return LoginAuth(
                CertLogin(cert.mount_path, cert.role, cert.cert_file, cert.key_file), clock=clock
            )
        case _:
            assert_never(settings)
