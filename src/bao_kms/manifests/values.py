"""What ``init`` renders from: a small values file (camelCase, unknown keys refused) + defaults.

Identity labels left out of the values are generated here, once: the rendered config is then
the one copy every control-plane node must share, and they can never change afterwards
(README, "Choosing identity labels"). Field types are the config's own, so a value the config
would refuse is refused here, before anything is written.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
)
from pydantic.alias_generators import to_camel

from .._version import __version__
from ..config import DEFAULT_SOCKET, ServerConfig
from ..config.fields import (
    AbsolutePath,
    Label,
    Namespace,
    OpenBaoAddress,
    PathSegment,
    ProviderName,
    SocketGroup,
)
from ..errors import ConfigError

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

#: each auth method's settings block as issue "Auth for real control planes" fixes it; a
#: values file may override any key (the config's own validation has the last word)
AUTH_DEFAULTS: dict[str, dict[str, str]] = {
    "token": {"file": "/etc/openbao-kms/token"},
    "approle": {
        "mountPath": "approle",
        "roleIdFile": "/etc/openbao-kms/role-id",
        "secretIdFile": "/etc/openbao-kms/secret-id",
    },
    "jwt": {"mountPath": "jwt", "role": "kms", "tokenFile": "/etc/openbao-kms/jwt"},
    "cert": {
        "mountPath": "cert",
        "role": "kms",
        "certFile": "/etc/openbao-kms/client.pem",
        "keyFile": "/etc/openbao-kms/client-key.pem",
    },
}

#: a uid/gid for the provider that is neither root nor a typical login user
#: (65532 is the "nonroot" user of distroless images)
DEFAULT_ID = 65532

#: the config's default ``server.healthAddress``: what the static pod's probes dial
DEFAULT_HEALTH_ADDRESS = str(ServerConfig.model_fields["health_address"].default)

_UnixId = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)]


def lineage_id(now: float | None = None) -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, in Crockford base32 (26 chars).

    Sortable by creation time, so an operator can tell an older key lineage from a newer one.
    """
    millis = int((time.time() if now is None else now) * 1000)
    number = (millis << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(125, -1, -5))


class InitValues(BaseModel):
    """The values file of ``init --values FILE``; every key is optional."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )

    provider_name: ProviderName = "openbao-kms"
    cluster_id: Label | None = None
    openbao_instance_id: Label | None = None
    transit_mount_id: Label | None = None
    key_lineage_id: Label | None = None
    socket_path: AbsolutePath = DEFAULT_SOCKET
    socket_group: SocketGroup | None = None
    #: host:port of /live and /ready (and /metrics); loopback: only the node's kubelet probes it
    health_address: str = Field(
        default=DEFAULT_HEALTH_ADDRESS, pattern=r"^(\[[0-9a-fA-F:.]+\]|[0-9.]+):[0-9]{1,5}$"
    )
    addresses: list[OpenBaoAddress] = Field(default=["https://openbao.example:8200"], min_length=1)
    ca_file: AbsolutePath | None = "/etc/openbao-kms/ca.pem"
    namespace: Namespace = ""
    #: plain http:// to OpenBao (a local agent); the token then travels unencrypted
    allow_insecure_http: StrictBool = False
    #: the config's ``auth`` section; the chosen method's block defaults to AUTH_DEFAULTS
    auth: dict[str, Any] = Field(default_factory=lambda: {"method": "token"})
    mount_path: PathSegment = "transit"
    key_name: PathSegment = "kms"
    policy_name: PathSegment = "bao-kms-provider"
    resources: list[str] = Field(default=["secrets"], min_length=1)
    kms_timeout: str = Field(default="3s", pattern=r"^[0-9]+(ms|s|m)$")
    image: str = Field(default=f"bao-kms-provider:{__version__}", pattern=r"^[^\s]+$")
    binary_path: AbsolutePath = "/usr/local/bin/bao-kms-provider"
    config_path: AbsolutePath = "/etc/openbao-kms/config.yaml"
    #: for the key version registry (see docs): mounted and created now, used from then on
    state_dir: AbsolutePath = "/var/lib/openbao-kms"
    user: str = Field(default="openbao-kms", pattern=r"^[a-z_][a-z0-9_-]{0,30}$")
    uid: _UnixId = DEFAULT_ID
    gid: _UnixId = DEFAULT_ID

    @field_validator("auth")
    @classmethod
    def _auth_method_known(cls, value: dict[str, Any]) -> dict[str, Any]:
        method = value.get("method", "token")
        if method not in AUTH_DEFAULTS:
            raise ValueError(f"method must be one of: {', '.join(AUTH_DEFAULTS)}")
        return value

    @property
    def auth_method(self) -> str:
        return str(self.auth.get("method", "token"))

    def auth_section(self) -> dict[str, Any]:
        """The config's ``auth`` section: the method and its block, defaults filled in."""
        method = self.auth_method
        given = self.auth.get(method)
        block = {**AUTH_DEFAULTS[method], **(given if isinstance(given, dict) else {})}
        return {"method": method, method: block}

    def with_identity(self) -> InitValues:
        """A copy with every identity label set, generating those not given (once)."""
        suffix = secrets.token_hex(4)
        generated = {
            "cluster_id": self.cluster_id or f"cluster-{suffix}",
            "openbao_instance_id": self.openbao_instance_id or f"openbao-{suffix}",
            "transit_mount_id": self.transit_mount_id or f"{self.mount_path}-{suffix}",
            "key_lineage_id": self.key_lineage_id or lineage_id(),
        }
        return self.model_copy(update=generated)

    def identity(self) -> dict[str, str]:
        """The config's ``identity`` section (call on :meth:`with_identity`'s result)."""
        labels = {
            "providerName": self.provider_name,
            "clusterId": self.cluster_id,
            "openbaoInstanceId": self.openbao_instance_id,
            "transitMountId": self.transit_mount_id,
            "keyLineageId": self.key_lineage_id,
        }
        missing = [name for name, value in labels.items() if not value]
        if missing:
            raise ValueError(f"identity labels not generated yet: {', '.join(missing)}")
        return {name: str(value) for name, value in labels.items()}


def load_values(path: str | os.PathLike[str] | None) -> InitValues:
    """The values file at *path* (defaults when None); ConfigError naming the field."""
    if path is None:
        return InitValues()
    try:
        document = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read values file {path}: {reason}") from None
    except yaml.YAMLError:
        raise ConfigError(f"values file {path} is not valid YAML") from None
    if not isinstance(document, dict):
        raise ConfigError(f"values file {path}: the top level must be a mapping")
    try:
        return InitValues.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as error:
        problems = "\n".join(
            f"  {'.'.join(str(part) for part in item['loc']) or '(top level)'}: "
            + (
                "unknown key"
                if item["type"] == "extra_forbidden"
                else item["msg"].removeprefix("Value error, ")
            )
            for item in error.errors(include_input=False, include_url=False)
        )
        raise ConfigError(f"values file {path} is invalid:\n{problems}") from None
