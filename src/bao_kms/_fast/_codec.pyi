"""Type stubs for the compiled twin of ``bao_kms._codec_py``; signatures match it exactly."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

KEY_ID_PREFIX: Final[str]
KEY_ID_LENGTH: Final[int]
KEY_ID_DOMAIN: Final[str]

AAD_VERSION: Final[str]
AAD_PURPOSE: Final[str]
PROVIDER: Final[str]

ANN_PROVIDER: Final[str]
ANN_KEY_ID_HASH: Final[str]
ANN_KEY_VERSION: Final[str]
ANN_MOUNT_HASH: Final[str]
ANN_KEY_HASH: Final[str]
ANN_NAMESPACE_HASH: Final[str]
ANN_PLUGIN_VERSION: Final[str]
ANN_AAD_VERSION: Final[str]

MAX_PLUGIN_VERSION_LENGTH: Final[int]
MAX_VERSION_DIGITS: Final[int]
MAX_CIPHERTEXT_LENGTH: Final[int]

__all__: list[str]

def hash_label(value: str) -> str: ...
def derive_key_id(
    provider_name: str,
    cluster_id: str,
    instance_id: str,
    namespace: str,
    mount_id: str,
    lineage_id: str,
    version: int,
    created_unix: int,
) -> str: ...
def parse_key_id(key_id: str) -> bytes: ...
def build_annotations(
    key_id: str,
    namespace: str,
    mount_id: str,
    lineage_id: str,
    version: int,
    plugin_version: str,
) -> dict[str, bytes]: ...
def parse_annotations(annotations: Mapping[str, bytes]) -> int: ...
def match_annotations(annotations: Mapping[str, bytes], expected: Mapping[str, bytes]) -> None: ...
def canonical_aad(
    provider_name: str,
    cluster_id: str,
    instance_id: str,
    namespace: str,
    mount_id: str,
    lineage_id: str,
    key_id: str,
    version: int,
) -> bytes: ...
def transit_aad(canonical: bytes) -> str: ...
def parse_ciphertext_version(ciphertext: bytes) -> int: ...
def check_ciphertext_version(ciphertext: bytes, version: int) -> None: ...
def encrypt_request_body(plaintext: bytes, key_version: int, associated_data: str) -> bytes: ...
def decrypt_request_body(ciphertext: bytes, associated_data: str) -> bytes: ...
def parse_encrypt_response(body: bytes) -> tuple[bytes, int]: ...
def parse_decrypt_response(body: bytes) -> bytes: ...
