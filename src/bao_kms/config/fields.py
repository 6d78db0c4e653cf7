"""The value types a config field can have, each with its check, JSON Schema and dump form.

Durations are written ``500ms``, ``2s``, ``5m``, ``1h`` and socket modes as octal strings, so
both dump back to the text the file holds. Every check raises ``ValueError`` with a message
that says what is expected and never quotes the value: identity labels are not for logs, and a
mistyped secret pasted into the wrong field must not land in one either.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.parse
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from ..identity import label_problem

_DURATION_PATTERN = r"(\d+(?:\.\d+)?)(ms|s|m|h)"
_DURATION_RE = re.compile(_DURATION_PATTERN)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MODE_PATTERN = r"0?[0-7]{3}"
_MODE_RE = re.compile(_MODE_PATTERN)
_PATH_SEGMENTS_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
_DNS_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_GROUP_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?|[0-9]{1,10}")

#: the longest Unix socket path: sun_path holds 108 bytes on Linux (104 on the BSDs and macOS),
#: the final NUL included
UNIX_SOCKET_PATH_MAX = 107 if sys.platform.startswith("linux") else 103
#: the provider binds a private name of this many bytes beside the socket first
#: (:func:`bao_kms.api.unix_socket.publish_socket`), so its directory must leave room for it
SOCKET_STAGING_NAME_BYTES = 9


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
    """The inverse of :func:`parse_duration`, so a dumped config loads again (``0.5ms`` stays
    ``0.5ms``: rounding to whole milliseconds would change, or zero, a short duration)."""
    exact = seconds * 1000
    milliseconds = round(exact)
    if abs(exact - milliseconds) > 1e-9:
        return f"{exact:.6g}ms"
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if milliseconds % size == 0:
            return f"{milliseconds // size}{unit}"
    return f"{milliseconds}ms"


def parse_delay(value: Any) -> float:
    """Seconds as :func:`parse_duration` reads them, zero (``0s``) included."""
    if isinstance(value, str):
        match = _DURATION_RE.fullmatch(value)
        if match and float(match.group(1)) == 0:
            return 0.0
    return parse_duration(value)


def format_delay(seconds: float) -> str:
    return "0s" if seconds == 0 else format_duration(seconds)


def bounded(minimum: float, maximum: float) -> AfterValidator:
    """A Duration range check; intervals too short hammer OpenBao, too long never fire."""

    def check(seconds: float) -> float:
        if not minimum <= seconds <= maximum:
            raise ValueError(
                f"must be between {format_delay(minimum)} and {format_duration(maximum)}"
            )
        return seconds

    return AfterValidator(check)


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
    try:
        parts.hostname.encode("idna")  # what connecting does with it: empty or long labels fail
    except UnicodeError:
        raise ValueError(
            "the host is not a valid DNS name (an empty label, or one over 63 characters)"
        ) from None
    return value.rstrip("/")


def _check_absolute(value: str) -> str:
    if not os.path.isabs(value):
        raise ValueError("must be an absolute path")
    return value


def _check_socket_path(value: str) -> str:
    _check_absolute(value)
    directory = os.path.dirname(value.rstrip("/"))
    room = UNIX_SOCKET_PATH_MAX - 1 - SOCKET_STAGING_NAME_BYTES
    if len(os.fsencode(value)) > UNIX_SOCKET_PATH_MAX or len(os.fsencode(directory)) > room:
        raise ValueError(
            f"must be at most {UNIX_SOCKET_PATH_MAX} bytes long (the Unix socket path limit), "
            f"in a directory of at most {room} bytes"
        )
    return value


def _check_path_segment(value: str) -> str:
    if not _PATH_SEGMENTS_RE.fullmatch(value) or ".." in value.split("/"):
        raise ValueError("must be a plain OpenBao path (letters, digits, . _ - and /)")
    return value


def _check_namespace(value: str) -> str:
    # it is both an identity label and an HTTP header value (X-Vault-Namespace)
    return _check_path_segment(_check_label(value)) if value else value


def _check_provider_name(value: str) -> str:
    if ":" in value:
        raise ValueError("must not contain ':' (kube-apiserver refuses it in KMS provider names)")
    return value


def _check_group(value: str) -> str:
    # 2**32 - 1 is (gid_t)-1, which chown() reads as "leave the group alone"
    if not _GROUP_RE.fullmatch(value) or (value.isdigit() and int(value) >= 2**32 - 1):
        raise ValueError("must be a group name or a numeric group id")
    return value


def _check_server_name(value: str) -> str:
    # a DNS name only: it is matched against the certificate and sent as SNI
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not all(_DNS_LABEL_RE.fullmatch(label) for label in labels):
        raise ValueError("must be a DNS host name")
    return value


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": f"^{_DURATION_PATTERN}$"}),
]
#: a Duration that may also be zero (``0s``): a wait that tests switch off
Delay = Annotated[
    float,
    BeforeValidator(parse_delay),
    PlainSerializer(format_delay, return_type=str),
    WithJsonSchema({"type": "string", "pattern": f"^{_DURATION_PATTERN}$"}),
]
SocketMode = Annotated[
    int,
    BeforeValidator(_parse_mode),
    PlainSerializer(lambda mode: f"{mode:04o}", return_type=str),
    WithJsonSchema({"type": "string", "pattern": f"^{_MODE_PATTERN}$"}),
]
#: an integer that YAML wrote as one (``true`` and ``"16"`` are refused)
StrictCount = Annotated[int, Field(strict=True)]
AbsolutePath = Annotated[str, AfterValidator(_check_absolute)]
#: an absolute path that fits a Unix socket address (checked here, not at bind time)
SocketPath = Annotated[str, AfterValidator(_check_socket_path)]
SocketGroup = Annotated[str, AfterValidator(_check_group)]
OpenBaoAddress = Annotated[str, AfterValidator(_check_address)]
#: a value that becomes part of every key_id (see :mod:`bao_kms.identity`)
Label = Annotated[str, AfterValidator(_check_label)]
ProviderName = Annotated[Label, AfterValidator(_check_provider_name)]
Namespace = Annotated[str, AfterValidator(_check_namespace)]
#: openbao.tlsServerName: checked against OpenBao's certificate and sent as SNI
ServerName = Annotated[str, AfterValidator(_check_server_name)]
#: a Transit mount path or key name: it is spliced into request URLs
PathSegment = Annotated[str, AfterValidator(_check_path_segment)]
LogLevel = Annotated[Literal["debug", "info", "warning", "error"], BeforeValidator(_lower)]
