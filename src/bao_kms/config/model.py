"""The config file's sections: one pydantic model each, unknown keys refused.

Keys are camelCase in YAML (``socketPath``) and snake_case in Python. Secrets never live in
the file: it names files that hold them. ``auth`` is a discriminated union on ``method``: each
method is one :class:`AuthMethod` subclass holding a block named after it, and only the
chosen block is given::

    auth: {method: token, token: {file: /etc/openbao-kms/token}}

Adding a method is adding its class to :data:`AuthConfig` (and its case to
:func:`bao_kms.openbao.auth.factory.build_auth`).
"""

from __future__ import annotations

import typing
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ..identity import Identity
from .fields import (
    AbsolutePath,
    Duration,
    Label,
    LogLevel,
    Namespace,
    OpenBaoAddress,
    PathSegment,
    ProviderName,
    SocketGroup,
    SocketMode,
    StrictCount,
    bounded,
    is_loopback,
)

DEFAULT_SOCKET = "/run/openbao-kms/kms.sock"


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ServerConfig(_Section):
    socket_path: AbsolutePath = DEFAULT_SOCKET
    socket_mode: SocketMode = 0o660
    socket_group: SocketGroup | None = None
    #: how long SIGTERM waits for in-flight calls before cancelling them
    grace_period: Annotated[Duration, bounded(0.001, 300)] = 10.0
    #: worker threads; each holds at most one OpenBao connection at a time
    workers: StrictCount = Field(default=16, ge=1, le=512)
    #: calls admitted at once (running + queued); beyond it the answer is RESOURCE_EXHAUSTED
    max_concurrent_requests: StrictCount = Field(default=1024, ge=1, le=65536)


class OpenBaoConfig(_Section):
    addresses: list[OpenBaoAddress] = Field(min_length=1)
    ca_file: Path | None = None
    namespace: Namespace = ""
    timeout: Annotated[Duration, bounded(0.01, 60)] = 2.0
    #: plain http:// sends the token in clear text: allowed to loopback addresses only,
    #: unless the operator says so here (a local agent or sidecar on another address)
    allow_insecure_http: StrictBool = False

    @model_validator(mode="after")
    def _https_off_loopback(self) -> OpenBaoConfig:
        if not self.allow_insecure_http:
            for address in self.addresses:
                scheme = urllib.parse.urlsplit(address).scheme  # lower-cased, as urllib3 does
                if scheme == "http" and not is_loopback(address):
                    raise ValueError(
                        "addresses: http:// is only allowed to loopback addresses (the token "
                        "would cross the network in clear text); use https:// or set "
                        "allowInsecureHttp: true"
                    )
        return self


# --- auth: one class per method -------------------------------------------------------------


class AuthMethod(_Section):
    """One way to log in to OpenBao: a ``method`` tag and a settings block of the same name.

    Subclasses declare ``method: Literal["<name>"]`` and a ``<name>`` field; the check below
    turns a missing block into one message naming the keys it needs.
    """

    method_name: ClassVar[str]

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        (cls.method_name,) = typing.get_args(cls.model_fields["method"].annotation)
        # the shape is the YAML contract, so a method class that breaks it fails at import
        if cls.method_name not in cls.model_fields:
            raise TypeError(f"{cls.__name__} needs a {cls.method_name!r} settings block")

    @model_validator(mode="before")
    @classmethod
    def _block_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.method_name not in data:
            block = cls.model_fields[cls.method_name].annotation
            assert isinstance(block, type) and issubclass(block, BaseModel)
            needed = ", ".join(
                f"{cls.method_name}.{field.alias or name}"
                for name, field in block.model_fields.items()
                if field.is_required()
            )
            raise ValueError(f"method {cls.method_name} needs {needed}")
        return data


class TokenAuthConfig(_Section):
    """``auth.token``: a file holding an OpenBao token, re-read when it is replaced."""

    file: Path


class TokenAuth(AuthMethod):
    # the one method with a default: configs written before there was a choice omit it
    method: Literal["token"] = "token"
    token: TokenAuthConfig


def _default_method(value: Any) -> Any:
    # the discriminator must be present before pydantic picks a union member
    if isinstance(value, dict) and "method" not in value:
        return {"method": TokenAuth.method_name, **value}
    return value


#: the ``auth`` section: add a method's class to this union (a ``X | Y`` of AuthMethods)
AuthConfig = Annotated[
    TokenAuth,
    Field(discriminator="method"),
    BeforeValidator(_default_method),
]


# --- the rest -------------------------------------------------------------------------------


class IdentityConfig(_Section):
    provider_name: ProviderName
    cluster_id: Label
    openbao_instance_id: Label
    transit_mount_id: Label
    key_lineage_id: Label


class TransitConfig(_Section):
    mount_path: PathSegment = "transit"
    key_name: PathSegment = "kms"


class StatusConfig(_Section):
    probe_interval: Annotated[Duration, bounded(0.1, 3600)] = 30.0
    deep_probe_interval: Annotated[Duration, bounded(0.1, 86400)] = 300.0
    max_staleness: Annotated[Duration, bounded(0.1, 86400)] = 120.0

    @model_validator(mode="after")
    def _ordered(self) -> StatusConfig:
        if self.max_staleness <= self.probe_interval:
            raise ValueError("maxStaleness must be longer than probeInterval")
        return self


class LoggingConfig(_Section):
    level: LogLevel = "info"


class Config(_Section):
    server: ServerConfig = ServerConfig()
    openbao: OpenBaoConfig
    auth: AuthConfig
    identity: IdentityConfig
    transit: TransitConfig = TransitConfig()
    status: StatusConfig = StatusConfig()
    logging: LoggingConfig = LoggingConfig()

    def provider_identity(self) -> Identity:
        return Identity(
            provider_name=self.identity.provider_name,
            cluster_id=self.identity.cluster_id,
            openbao_instance_id=self.identity.openbao_instance_id,
            namespace=self.openbao.namespace,
            transit_mount_id=self.identity.transit_mount_id,
            key_lineage_id=self.identity.key_lineage_id,
        )
