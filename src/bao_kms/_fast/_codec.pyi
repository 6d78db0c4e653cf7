"""Type stubs for the compiled half of ``bao_kms._codec_py``: what ``_codec.pyx`` defines, and
what it re-exports from the spec unchanged (constants and the once-per-key-version builders)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bao_kms._codec_py import AAD_PURPOSE as AAD_PURPOSE
from bao_kms._codec_py import AAD_VERSION as AAD_VERSION
from bao_kms._codec_py import ANN_AAD_VERSION as ANN_AAD_VERSION
from bao_kms._codec_py import ANN_KEY_HASH as ANN_KEY_HASH
from bao_kms._codec_py import ANN_KEY_ID_HASH as ANN_KEY_ID_HASH
from bao_kms._codec_py import ANN_KEY_VERSION as ANN_KEY_VERSION
from bao_kms._codec_py import ANN_MOUNT_HASH as ANN_MOUNT_HASH
from bao_kms._codec_py import ANN_NAMESPACE_HASH as ANN_NAMESPACE_HASH
from bao_kms._codec_py import ANN_PLUGIN_VERSION as ANN_PLUGIN_VERSION
from bao_kms._codec_py import ANN_PROVIDER as ANN_PROVIDER
from bao_kms._codec_py import KEY_ID_DOMAIN as KEY_ID_DOMAIN
from bao_kms._codec_py import KEY_ID_LENGTH as KEY_ID_LENGTH
from bao_kms._codec_py import KEY_ID_PREFIX as KEY_ID_PREFIX
from bao_kms._codec_py import MAX_CIPHERTEXT_LENGTH as MAX_CIPHERTEXT_LENGTH
from bao_kms._codec_py import MAX_PLUGIN_VERSION_LENGTH as MAX_PLUGIN_VERSION_LENGTH
from bao_kms._codec_py import PROVIDER as PROVIDER
from bao_kms._codec_py import __all__ as __all__
from bao_kms._codec_py import build_annotations as build_annotations
from bao_kms._codec_py import canonical_aad as canonical_aad
from bao_kms._codec_py import derive_key_id as derive_key_id
from bao_kms._codec_py import hash_label as hash_label
from bao_kms._codec_py import transit_aad as transit_aad

def parse_key_id(key_id: str) -> bytes: ...
def parse_annotations(annotations: Mapping[str, bytes]) -> int: ...
def match_annotations(annotations: Mapping[str, bytes], expected: Mapping[str, bytes]) -> None: ...
def parse_ciphertext_version(ciphertext: bytes) -> int: ...
def check_ciphertext_version(ciphertext: bytes, version: int) -> None: ...
def encrypt_request_body(plaintext: bytes, key_version: int, associated_data: str) -> bytes: ...
def decrypt_request_body(ciphertext: bytes, associated_data: str) -> bytes: ...
def parse_encrypt_response(body: bytes) -> tuple[bytes, int]: ...
def parse_decrypt_response(body: bytes) -> bytes: ...
def decrypt_batch_request_body(items: Sequence[tuple[bytes, str]]) -> bytes: ...
def parse_decrypt_batch_response(body: bytes, count: int) -> list[bytes | str]: ...
