"""The provider's configuration: field types (``fields``), sections (``model``), YAML (``loader``).

Other modules import from here, never from the submodules, so the split can move again.
"""

from __future__ import annotations

from .fields import format_duration, parse_duration
from .loader import ENV_CONFIG, ENV_LOG_LEVEL, ENV_SOCKET, load_config, parse_config
from .model import (
    DEFAULT_SOCKET,
    AppRoleAuth,
    AppRoleAuthConfig,
    AuthConfig,
    AuthMethod,
    CertAuth,
    CertAuthConfig,
    ClientCertificate,
    Config,
    IdentityConfig,
    JwtAuth,
    JwtAuthConfig,
    LoggingConfig,
    OpenBaoConfig,
    RotationConfig,
    ServerConfig,
    StateConfig,
    StatusConfig,
    TokenAuth,
    TokenAuthConfig,
    TransitConfig,
)

__all__ = [
    "DEFAULT_SOCKET",
    "ENV_CONFIG",
    "ENV_LOG_LEVEL",
    "ENV_SOCKET",
    "AppRoleAuth",
    "AppRoleAuthConfig",
    "AuthConfig",
    "AuthMethod",
    "CertAuth",
    "CertAuthConfig",
    "ClientCertificate",
    "Config",
    "IdentityConfig",
    "JwtAuth",
    "JwtAuthConfig",
    "LoggingConfig",
    "OpenBaoConfig",
    "RotationConfig",
    "ServerConfig",
    "StateConfig",
    "StatusConfig",
    "TokenAuth",
    "TokenAuthConfig",
    "TransitConfig",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]
