"""Strict parsing of Transit key metadata (``GET <mount>/keys/<key>``, ``<mount>/config/keys``).

The key profile checks (DESIGN §4) fail closed, so the parser does too: a field that is
missing or of the wrong type is an :class:`OpenBaoBadResponse` naming the field, never the
value. Only checks of *shape* live here; what the values must be is the status module's call.
"""

from __future__ import annotations

import re
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._codec_py import response_data
from ..errors import OpenBaoBadResponse

_VERSION_RE = re.compile(r"[1-9][0-9]{0,9}")

#: the most key versions a metadata answer may list. OpenBao lists the versions at or above
#: ``min_decryption_version``; a daily rotation reaches this in almost three years, and every
#: version listed costs memory and a key_id derivation at every probe, so a key with more is
#: refused (raise ``min_decryption_version`` once data encrypted under older versions has been
#: rewritten). The transport caps the answer's size as well.
MAX_KEY_VERSIONS = 1000


@dataclass(frozen=True, slots=True)
class KeyMetadata:
    """What OpenBao reports about one Transit key (only the fields the provider checks)."""

    type: str
    derived: bool
    convergent_encryption: bool
    exportable: bool
    allow_plaintext_backup: bool
    deletion_allowed: bool
    soft_deleted: bool
    latest_version: int
    min_decryption_version: int
    min_encryption_version: int
    min_available_version: int
    #: version -> creation time in Unix seconds. OpenBao lists only versions at or above
    #: ``min_decryption_version``: older ones are still stored but not reported.
    versions: Mapping[int, int]


def _bool(data: Mapping[str, Any], name: str, *, default: bool | None = None) -> bool:
    value = data.get(name, default)
    if type(value) is not bool:
        raise OpenBaoBadResponse(f"Transit key field {name} is missing or not a boolean")
    return value


def _count(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if type(value) is not int or value < 0:  # type() check: bool is an int subclass
        raise OpenBaoBadResponse(f"Transit key field {name} is missing or not a whole number")
    return value


def _versions(data: Mapping[str, Any]) -> Mapping[int, int]:
    keys = data.get("keys")
    if not isinstance(keys, dict):
        raise OpenBaoBadResponse("Transit key field keys is missing or not an object")
    if len(keys) > MAX_KEY_VERSIONS:
        raise OpenBaoBadResponse(
            f"Transit key lists more than {MAX_KEY_VERSIONS} versions; raise its "
            "min_decryption_version"
        )
    versions: dict[int, int] = {}
    for version, created in keys.items():
        if not _VERSION_RE.fullmatch(version):
            raise OpenBaoBadResponse("Transit key field keys has a key that is not a version")
        # Symmetric keys report a Unix time; asymmetric ones an object, which the provider
        # never uses (its profile requires aes256-gcm96).
        if type(created) is not int or created < 0:
            raise OpenBaoBadResponse("Transit key field keys has a non-integer creation time")
        versions[int(version)] = created
    return types.MappingProxyType(dict(sorted(versions.items())))


def parse_key_metadata(body: bytes) -> KeyMetadata:
    """KeyMetadata from a ``GET <mount>/keys/<key>`` response body."""
    data = response_data(body, "Transit key")
    key_type = data.get("type")
    if not isinstance(key_type, str):
        raise OpenBaoBadResponse("Transit key field type is missing or not a string")
    return KeyMetadata(
        type=key_type,
        derived=_bool(data, "derived"),
        # OpenBao reports convergent_encryption only for derived keys.
        convergent_encryption=_bool(data, "convergent_encryption", default=False),
        exportable=_bool(data, "exportable"),
        allow_plaintext_backup=_bool(data, "allow_plaintext_backup"),
        deletion_allowed=_bool(data, "deletion_allowed"),
        soft_deleted=_bool(data, "soft_deleted", default=False),
        latest_version=_count(data, "latest_version"),
        min_decryption_version=_count(data, "min_decryption_version"),
        min_encryption_version=_count(data, "min_encryption_version"),
        min_available_version=_count(data, "min_available_version"),
        versions=_versions(data),
    )


def parse_keys_config(body: bytes) -> bool:
    """``disable_upsert`` from a ``GET <mount>/config/keys`` response body."""
    value = response_data(body, "Transit keys config").get("disable_upsert")
    if type(value) is not bool:
        raise OpenBaoBadResponse(
            "Transit keys config field disable_upsert is missing or not a boolean"
        )
    return value
