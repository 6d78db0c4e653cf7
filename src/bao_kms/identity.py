"""Who we are on the wire: the identity labels and the per-version context derived from them.

A :class:`KeyVersion` holds everything Encrypt and Decrypt need for one Transit key version
(key_id, expected annotations, Transit-ready AAD), computed once when the version is first seen.
The request path then only looks things up and compares bytes; the derivation itself lives in
the hot-path codec.
"""

from __future__ import annotations

import types
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from . import _codec
from ._version import __version__

PLUGIN_VERSION = "v" + __version__
MAX_LABEL_LENGTH = 256


def label_problem(value: str) -> str | None:
    """Why *value* cannot be an identity label, or None when it can.

    Labels feed key_id and AAD bytes that must be reproducible forever, so anything that an
    editor, a shell or a YAML round trip could silently change is refused.
    """
    if not value:
        return "must not be empty"
    if len(value) > MAX_LABEL_LENGTH:
        return f"must be at most {MAX_LABEL_LENGTH} characters"
    for char in value:
        if char.isspace():
            return "must not contain whitespace"
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return "must not contain control, format or unassigned characters"
    if unicodedata.normalize("NFC", value) != value:
        return "must be in Unicode NFC form"
    return None


@dataclass(frozen=True, slots=True)
class Identity:
    """The operator-chosen labels fixed in config; changing any one changes every key_id."""

    provider_name: str
    cluster_id: str
    openbao_instance_id: str
    namespace: str  # "" when no OpenBao namespace is configured
    transit_mount_id: str
    key_lineage_id: str

    def key_version(self, version: int, created_unix: int) -> KeyVersion:
        """The request-path context of one Transit key version."""
        key_id = _codec.derive_key_id(
            self.provider_name,
            self.cluster_id,
            self.openbao_instance_id,
            self.namespace,
            self.transit_mount_id,
            self.key_lineage_id,
            version,
            created_unix,
        )
        annotations = _codec.build_annotations(
            key_id,
            self.namespace,
            self.transit_mount_id,
            self.key_lineage_id,
            version,
            PLUGIN_VERSION,
        )
        aad = _codec.canonical_aad(
            self.provider_name,
            self.cluster_id,
            self.openbao_instance_id,
            self.namespace,
            self.transit_mount_id,
            self.key_lineage_id,
            key_id,
            version,
        )
        return KeyVersion(
            version=version,
            created_unix=created_unix,
            key_id=key_id,
            annotations=types.MappingProxyType(annotations),
            associated_data=_codec.transit_aad(aad),
        )


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One Transit key version as the request path sees it."""

    version: int
    created_unix: int
    key_id: str
    annotations: Mapping[str, bytes]
    associated_data: str  # canonical AAD, base64 for Transit
