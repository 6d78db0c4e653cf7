"""The provider's configuration: field types, the section models and the YAML loader."""

from __future__ import annotations

from .model import (
    DEFAULT_SOCKET,
    ENV_CONFIG,
    ENV_LOG_LEVEL,
    ENV_SOCKET,
    AuthConfig,
    Config,
    IdentityConfig,
    LoggingConfig,
    OpenBaoConfig,
    ServerConfig,
    StatusConfig,
    TokenAuthConfig,
    TransitConfig,
    format_duration,
    load_config,
    parse_config,
    parse_duration,
)

__all__ = [
    "DEFAULT_SOCKET",
    "ENV_CONFIG",
    "ENV_LOG_LEVEL",
    "ENV_SOCKET",
    "AuthConfig",
    "Config",
    "IdentityConfig",
    "LoggingConfig",
    "OpenBaoConfig",
    "ServerConfig",
    "StatusConfig",
    "TokenAuthConfig",
    "TransitConfig",
    "format_duration",
    "load_config",
    "parse_config",
    "parse_duration",
]
