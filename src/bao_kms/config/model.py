"""The provider's configuration: one YAML file, validated by pydantic, unknown keys refused.

Keys are camelCase in YAML (``socketPath``) and snake_case in Python. Durations are written
``500ms``, ``2s``, ``5m``, ``1h``. Secrets never live in this file: it names files that hold
them. Only a few environment variables override it (:data:`ENV_CONFIG`, :data:`ENV_LOG_LEVEL`,
:data:`ENV_SOCKET`). :func:`load_config` turns every problem into a :class:`ConfigError` whose
message names the field but never echoes its value (identity labels are not for logs).
"""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

from ..errors import ConfigError
from ..identity import Identity, label_problem

ENV_CONFIG = "BAO_KMS_CONFIG"
ENV_LOG_LEVEL = "BAO_KMS_LOG_LEVEL"
ENV_SOCKET = "BAO_KMS_SOCKET"

DEFAULT_SOCKET = "/run/openbao-kms/kms.sock"

_DURATION_PATTERN = r"(\d+(?:\.\d+)?)(ms|s|m|h)"
_DURATION_RE = re.compile(_DURATION_PATTERN)
_MODE_PATTERN = r"0?[0-7]{3}"
_MODE_RE = re.compile(_MODE_PATTERN)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``500ms``/``2s``/``5m``/``1h``; bare numbers are refused as ambiguous."""
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match:
            seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            if seconds > 0:
                return seconds
            raise ValueError("must be a positive duration")
    raise ValueError("must be a duration such as 500ms, 2s, 5m or 1h")


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`, so a dumped config loads again."""
    milliseconds = round(seconds * 1000)
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def _parse_mode(value: Any) -> int:
    if isinstance(value, str) and _MODE_RE.fullmatch(value):
        mode = int(value, 8)
        if mode & 0o002:
            raise ValueError("must not make the socket world-writable")
        return mode
    raise ValueError('must be an octal mode string such as "0660"')


def _check_label(value: str) -> str:
    problem = label_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _check_address(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("must have a numeric port from 1 to 65535") from None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port == 0
        or any(char.isspace() for char in value)
    ):
        raise ValueError(
            "must be an http:// or https:// URL with a host and optional port only "
            "(no credentials, path or query)"
        )
    return value.rstrip("/")


def _check_absolute(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    return value


def _check_namespace(value: str) -> str:
    # it is both an identity label and an HTTP header value (X-Vault-Namespace)
    return _check_path_segment(_check_label(value)) if value else value


def _check_provider_name(value: str) -> str:
    if ":" in value:
        raise ValueError("must not contain ':' (kube-apiserver refuses it in KMS provider names)")
    return value


def _check_path_segment(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", value) or ".." in value.split("/"):
        raise ValueError("must be a plain OpenBao path (letters, digits, . _ - and /)")
    return value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": f"^{_DURATION_PATTERN}$"}),
]
SocketMode = Annotated[
    int,
    BeforeValidator(_parse_mode),
    PlainSerializer(lambda mode: f"{mode:04o}", return_type=str),
    WithJsonSchema({"type": "string", "pattern": f"^{_MODE_PATTERN}$"}),
]
StrictCount = Annotated[int, Field(strict=True)]


def bounded(minimum: float, maximum: float) -> AfterValidator:
    """A Duration range check; intervals too short hammer OpenBao, too long never fire."""

    def check(seconds: float) -> float:
        if not minimum <= seconds <= maximum:
            raise ValueError(
                f"must be between {format_duration(minimum)} and {format_duration(maximum)}"
            )
        return seconds

    return AfterValidator(check)


_GROUP_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}")


def _check_group(value: str) -> str:
    if not _GROUP_RE.fullmatch(value) or (value.isdigit() and int(value) >= 2**32 - 1):
        raise ValueError("must be a group name or a numeric group id")
    return value


def _is_loopback(address: str) -> bool:
    """Loopback by address, not by spelling: ``127.evil.example`` is a DNS name."""
    host = urllib.parse.urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


Label = Annotated[str, AfterValidator(_check_label)]
PathSegment = Annotated[str, AfterValidator(_check_path_segment)]


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True
    )


class ServerConfig(_Section):
    socket_path: Annotated[str, AfterValidator(_check_absolute)] = DEFAULT_SOCKET
    socket_mode: SocketMode = 0o660
    socket_group: Annotated[str, AfterValidator(_check_group)] | None = None
    #: how long SIGTERM waits for in-flight calls before cancelling them
    grace_period: Annotated[Duration, bounded(0.001, 300)] = 10.0
    #: worker threads; each holds at most one OpenBao connection at a time
    workers: StrictCount = Field(default=16, ge=1, le=512)
    #: calls admitted at once (running + queued); beyond it the answer is RESOURCE_EXHAUSTED
    max_concurrent_requests: StrictCount = Field(default=1024, ge=1, le=65536)


class OpenBaoConfig(_Section):
    addresses: list[Annotated[str, AfterValidator(_check_address)]] = Field(min_length=1)
    ca_file: Path | None = None
    namespace: Annotated[str, AfterValidator(_check_namespace)] = ""
    timeout: Annotated[Duration, bounded(0.01, 60)] = 2.0
    #: plain http:// sends the token in clear text: allowed to loopback addresses only,
    #: unless the operator says so here (a local agent or sidecar on another address)
    allow_insecure_http: StrictBool = False

    @model_validator(mode="after")
    def _https_off_loopback(self) -> OpenBaoConfig:
        if not self.allow_insecure_http:
            for address in self.addresses:
                scheme = urllib.parse.urlsplit(address).scheme  # lower-cased, as urllib3 does
                if scheme == "http" and not _is_loopback(address):
                    raise ValueError(
                        "addresses: http:// is only allowed to loopback addresses (the token "
                        "would cross the network in clear text); use https:// or set "
                        "allowInsecureHttp: true"
                    )
        return self


class TokenAuthConfig(_Section):
    file: Path


class AuthConfig(_Section):
    method: Literal["token"] = "token"
    token: TokenAuthConfig | None = None

    @model_validator(mode="after")
    def _method_has_settings(self) -> AuthConfig:
        if self.method == "token" and self.token is None:
            raise ValueError("method token needs token.file")
        return self


class IdentityConfig(_Section):
    provider_name: Annotated[Label, AfterValidator(_check_provider_name)]
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
    level: Annotated[
        Literal["debug", "info", "warning", "error"],
        BeforeValidator(lambda value: value.lower() if isinstance(value, str) else value),
    ] = "info"


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one silently
    (a repeated identity label would change every key_id without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def parse_config(document: Any, source: str = "config") -> Config:
    """Validate an already-parsed YAML document."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        # by_name=False: the file speaks camelCase only; snake_case is for Python callers
        return Config.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as error:
        raise ConfigError(f"{source} is invalid:\n{_describe(error)}") from None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and apply the environment overrides; ConfigError on any problem."""
    environ = os.environ if environ is None else environ
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", "") or ""
        known = ("duplicate key", "a mapping key")
        detail = f": {problem}" if problem.startswith(known) else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}{detail}") from None
    if isinstance(document, dict):
        overrides = {ENV_SOCKET: ("server", "socketPath"), ENV_LOG_LEVEL: ("logging", "level")}
        for variable, (section, key) in overrides.items():
            if environ.get(variable):
                document.setdefault(section, {})
                if isinstance(document[section], dict):
                    document[section][key] = environ[variable]
    return parse_config(document, source=f"config file {path}")
