"""The config file's sections: one pydantic model each, unknown keys refused.

Keys are camelCase in YAML (``socketPath``) and snake_case in Python. Secrets never live in
the file: it names files that hold them. ``auth`` is a discriminated union on ``method``: each
method is one :class:`AuthMethod` subclass holding a block named after it, and only the
chosen block is given::

    auth: {method: token, token: {file: /etc/openbao-kms/token}}
    auth: {method: approle, approle: {roleIdFile: /etc/openbao-kms/role-id, secretIdFile: ...}}

Methods: ``token``, ``approle``, ``jwt``, ``cert``. Adding a method is adding its class to
:data:`AuthConfig` (and its case to :func:`bao_kms.openbao.auth.factory.build_auth`).
"""

from __future__ import annotations

import ipaddress
import typing
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, NamedTuple

from pydantic import (
    AfterValidator,
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
    Delay,
    Duration,
    Label,
    LogLevel,
    Namespace,
    OpenBaoAddress,
    PathSegment,
    ProviderName,
    ServerName,
    SocketGroup,
    SocketMode,
    SocketPath,
    StrictCount,
    bounded,
)

DEFAULT_SOCKET = "/run/openbao-kms/kms.sock"
#: /live, /ready and /metrics: loopback, so only the node itself (kubelet's probes, a local
#: agent) can reach them unless the operator says otherwise
DEFAULT_HEALTH_ADDRESS = "127.0.0.1:8787"


def _listen_address(value: str) -> str:
    """``IP:port`` or ``[IPv6]:port`` (``localhost`` allowed); port 0 picks a free one."""
    parts = urllib.parse.urlsplit(f"//{value}")
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    if port is None or parts.username is not None or parts.path or not host:
        raise ValueError("must be IP:port or [IPv6]:port, e.g. 127.0.0.1:8787")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("the host must be an IP address (or localhost), not a name") from None
    return value


ListenAddress = Annotated[str, AfterValidator(_listen_address)]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ServerConfig(_Section):
    socket_path: SocketPath = DEFAULT_SOCKET
    socket_mode: SocketMode = 0o660
    socket_group: SocketGroup | None = None
    #: how long SIGTERM waits for in-flight calls before cancelling them
    grace_period: Annotated[Duration, bounded(0.001, 300)] = 10.0
    #: Encrypt and Decrypt calls served at once (others wait within their deadline). With
    #: decrypt batching a waiting Decrypt holds no OpenBao connection, and a cold-start storm
    #: batches only as wide as this: 64 measured faster than 16 at 64 concurrent callers
    workers: StrictCount = Field(default=64, ge=1, le=512)
    #: calls admitted at once (running + queued); beyond it the answer is RESOURCE_EXHAUSTED
    max_concurrent_requests: StrictCount = Field(default=1024, ge=1, le=65536)
    #: /live and /ready (HTTP); may equal metricsAddress, then one listener serves all three
    health_address: ListenAddress = DEFAULT_HEALTH_ADDRESS
    #: /metrics (Prometheus text)
    metrics_address: ListenAddress = DEFAULT_HEALTH_ADDRESS


class OpenBaoConfig(_Section):
    addresses: list[OpenBaoAddress] = Field(min_length=1)
    ca_file: Path | None = None
    namespace: Namespace = ""
    timeout: Annotated[Duration, bounded(0.01, 60)] = 2.0
    #: plain http:// sends the token in clear text and lets whatever listens on the address
    #: answer Decrypt: refused unless the operator says so here, loopback included (a process
    #: that binds OpenBao's port while OpenBao is down would get the token)
    allow_insecure_http: StrictBool = False
    #: a TLS client certificate for listeners that require one (auth.method cert brings its own)
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    #: the name OpenBao's certificate is checked against (and sent as SNI), when the
    #: addresses are IPs or names the certificate does not carry
    tls_server_name: ServerName | None = None
    #: concurrent Decrypts of one ciphertext share one OpenBao call, and concurrent distinct
    #: ones go to Transit together in batch requests (off: one request per Decrypt, to measure)
    decrypt_batching: StrictBool = True
    #: items per Transit batch request; OpenBao 2.7 takes at most 249 (1000 JSON strings)
    decrypt_batch_max: StrictCount = Field(default=128, ge=2, le=200)
    #: distinct Decrypts waiting for a batch; beyond it the answer is RESOURCE_EXHAUSTED
    decrypt_queue_max: StrictCount = Field(default=1024, ge=1, le=65536)
    #: under load, how long the next Transit batch gathers Decrypts before it is sent (a lone
    #: Decrypt is sent at once); 0s sends as soon as OpenBao answered the previous batch
    decrypt_batch_linger: Annotated[Delay, bounded(0, 0.05)] = 0.005

    @model_validator(mode="after")
    def _client_certificate_pair(self) -> OpenBaoConfig:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("clientCertFile and clientKeyFile are given together or not at all")
        return self

    @model_validator(mode="after")
    def _https_unless_allowed(self) -> OpenBaoConfig:
        if not self.allow_insecure_http:
            for address in self.addresses:
                scheme = urllib.parse.urlsplit(address).scheme  # lower-cased, as the pool reads it
                if scheme == "http":
                    raise ValueError(
                        "addresses: plain http:// needs allowInsecureHttp: true, even to a "
                        "loopback address (the token would travel in clear text and anything "
                        "listening there could answer); use https://"
                    )
        return self


class ClientCertificate(NamedTuple):
    """A TLS client certificate and key file, and the config keys that named them (start-up
    errors say which key to fix)."""

    cert_file: str
    key_file: str
    cert_key: str = "openbao.clientCertFile"
    key_key: str = "openbao.clientKeyFile"


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


class AppRoleAuthConfig(_Section):
    """``auth.approle``: both IDs from files, read again for every login."""

    mount_path: PathSegment = "approle"
    role_id_file: Path
    secret_id_file: Path


class AppRoleAuth(AuthMethod):
    method: Literal["approle"]
    approle: AppRoleAuthConfig


class JwtAuthConfig(_Section):
    """``auth.jwt``: a JWT from a file (re-read before each login) for an OpenBao JWT role."""

    mount_path: PathSegment = "jwt"
    role: PathSegment
    token_file: Path


class JwtAuth(AuthMethod):
    method: Literal["jwt"]
    jwt: JwtAuthConfig


class CertAuthConfig(_Section):
    """``auth.cert``: the TLS client certificate presented on every connection is the login."""

    mount_path: PathSegment = "cert"
    #: the OpenBao cert role (``auth/cert/certs/<role>``); without it OpenBao tries them all
    role: PathSegment | None = None
    cert_file: Path
    key_file: Path


class CertAuth(AuthMethod):
    method: Literal["cert"]
    cert: CertAuthConfig


def _default_method(value: Any) -> Any:
    # the discriminator must be present before pydantic picks a union member
    if isinstance(value, dict) and "method" not in value:
        return {"method": TokenAuth.method_name, **value}
    return value


#: the ``auth`` section: add a method's class to this union (a ``X | Y`` of AuthMethods)
AuthConfig = Annotated[
    TokenAuth | AppRoleAuth | JwtAuth | CertAuth,
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


class RotationConfig(_Section):
    """When a Transit version seen as new becomes the one Encrypt uses (DESIGN §4)."""

    #: consecutive metadata probes that must see the same newest version
    stable_observations: StrictCount = Field(default=3, ge=1, le=1000)
    #: and how long after the first of them, so every node has seen it before any encrypts
    activation_delay: Annotated[Delay, bounded(0, 7 * 86400)] = 120.0


class StateConfig(_Section):
    """The version registry (:mod:`bao_kms.keys.registry`): without a path it lives in memory
    and a restart forgets which versions this node saw."""

    path: AbsolutePath | None = None


class LoggingConfig(_Section):
    level: LogLevel = "info"


class Config(_Section):
    server: ServerConfig = ServerConfig()
    openbao: OpenBaoConfig
    auth: AuthConfig
    identity: IdentityConfig
    transit: TransitConfig = TransitConfig()
    status: StatusConfig = StatusConfig()
    rotation: RotationConfig = RotationConfig()
    state: StateConfig = StateConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _one_client_certificate(self) -> Config:
        if isinstance(self.auth, CertAuth):
            if self.openbao.client_cert_file is not None:
                raise ValueError(
                    "auth.method cert presents auth.cert.certFile on every connection; "
                    "leave openbao.clientCertFile unset"
                )
            if any(urllib.parse.urlsplit(a).scheme != "https" for a in self.openbao.addresses):
                raise ValueError("auth.method cert needs https:// addresses (a TLS connection)")
        return self

    def tls_client_certificate(self) -> ClientCertificate | None:
        """The certificate presented on every connection to OpenBao, if any."""
        if isinstance(self.auth, CertAuth):
            cert = self.auth.cert
            return ClientCertificate(
                str(cert.cert_file), str(cert.key_file), "auth.cert.certFile", "auth.cert.keyFile"
            )
        openbao = self.openbao
        if openbao.client_cert_file is not None and openbao.client_key_file is not None:
            return ClientCertificate(str(openbao.client_cert_file), str(openbao.client_key_file))
        return None

    def provider_identity(self) -> Identity:
        return Identity(
            provider_name=self.identity.provider_name,
            cluster_id=self.identity.cluster_id,
            openbao_instance_id=self.identity.openbao_instance_id,
            namespace=self.openbao.namespace,
            transit_mount_id=self.identity.transit_mount_id,
            key_lineage_id=self.identity.key_lineage_id,
        )
