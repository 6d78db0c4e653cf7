"""The hot path in pure Python: this module is the specification of ``_fast/_codec.pyx``.

It covers the v1 wire formats (DESIGN §3) and the Transit bodies on the request path:

* ``hash_label`` — H(x): base64url, no padding, of SHA-256 of the UTF-8 bytes of x;
* ``derive_key_id`` / ``parse_key_id`` — the public ``obk2.`` key_id;
* ``build_annotations`` / ``parse_annotations`` / ``match_annotations`` — the KMS v2
  annotations that let Decrypt validate a request and rebuild its AAD before calling OpenBao;
* ``canonical_aad`` / ``transit_aad`` — the AAD bytes and their Transit (padded base64) form;
* ``parse_ciphertext_version`` / ``check_ciphertext_version`` — the ``vault:vN:`` prefix;
* ``encrypt_request_body`` / ``decrypt_request_body`` and the two response parsers;
* ``decrypt_batch_request_body`` / ``parse_decrypt_batch_response``: Transit ``batch_input``.

The compiled twin re-implements only what runs per request (``parse_key_id``, the annotation parse
and match, the ciphertext version checks, the bodies and response parsers, single and batch) and
imports the rest from here: constants, and what runs once per key version (``hash_label``,
``derive_key_id``, ``build_annotations``, ``canonical_aad``, ``transit_aad``). What its fast paths
do not accept they hand to the functions here, so every message and exception comes from this
module; ``tests/codec/test_codec_parity.py`` holds the twins to the same results on randomized
inputs. Messages never carry plaintext, ciphertext or identity labels (they reach kube-apiserver).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .errors import InvalidAnnotations, InvalidCiphertext, MalformedKeyId, OpenBaoBadResponse

KEY_ID_PREFIX = "obk2."
KEY_ID_LENGTH = 48
KEY_ID_DOMAIN = "openbao-kubernetes-kms/key-id/v1"

AAD_VERSION = "v1"
AAD_PURPOSE = "kubernetes-etcd-kms-v2"
PROVIDER = "openbao-transit"

ANN_PROVIDER = "provider.kms.openbao.org"
ANN_KEY_ID_HASH = "key-id-hash.kms.openbao.org"
ANN_KEY_VERSION = "transit-key-version.kms.openbao.org"
ANN_MOUNT_HASH = "transit-mount-hash.kms.openbao.org"
ANN_KEY_HASH = "transit-key-hash.kms.openbao.org"
ANN_NAMESPACE_HASH = "openbao-namespace-hash.kms.openbao.org"
ANN_PLUGIN_VERSION = "plugin-version.kms.openbao.org"
ANN_AAD_VERSION = "aad-version.kms.openbao.org"

#: the plugin-version annotation is required but not compared; bound what we accept
MAX_PLUGIN_VERSION_LENGTH = 64
#: DESIGN §2: ciphertext on the wire is at most 1024 bytes
MAX_CIPHERTEXT_LENGTH = 1024

_CIPHERTEXT_RE = re.compile(rb"vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})")
_HASH_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_VERSION_RE = re.compile(r"[1-9][0-9]{0,9}")

# Go's encoding/json escapes these so JSON can be embedded in HTML; byte compatibility with the
# Go provider means we must too.
_GO_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def hash_label(value: str) -> str:
    """H(x): unpadded base64url of SHA-256 over the UTF-8 bytes of *value* (43 chars)."""
    digest = hashlib.sha256(value.encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def derive_key_id(
    provider_name: str,
    cluster_id: str,
    instance_id: str,
    namespace: str,
    mount_id: str,
    lineage_id: str,
    version: int,
    created_unix: int,
) -> str:
    """The key_id of one Transit key version; *namespace* ``""`` means none is configured."""
    if version < 1:
        raise ValueError("Transit key version must be at least 1")
    if created_unix < 0:
        raise ValueError("Transit key version creation time must not be negative")
    parts = [KEY_ID_DOMAIN, provider_name, cluster_id, instance_id]
    if namespace:
        parts.append(namespace)
    parts += [mount_id, lineage_id, str(version), str(created_unix)]
    message = bytearray()
    for part in parts:
        encoded = part.encode("utf-8")
        if b"\0" in encoded:
            raise ValueError("identity labels must not contain NUL")
        message += encoded
        message += b"\0"
    digest = hashlib.sha256(message).digest()
    return KEY_ID_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def parse_key_id(key_id: str) -> bytes:
    """The 32 digest bytes of a well-formed key_id; MalformedKeyId for anything else."""
    if len(key_id) != KEY_ID_LENGTH:
        raise MalformedKeyId(f"key_id must be {KEY_ID_LENGTH} characters, got {len(key_id)}")
    if not key_id.startswith(KEY_ID_PREFIX):
        raise MalformedKeyId(f"key_id must start with {KEY_ID_PREFIX!r}")
    suffix = key_id[len(KEY_ID_PREFIX) :]
    if not _HASH_RE.fullmatch(suffix):
        raise MalformedKeyId("key_id suffix must be 43 base64url characters")
    digest = base64.urlsafe_b64decode(suffix + "=")
    # 43 base64url characters carry 258 bits; the last two must be zero for a 32-byte value,
    # otherwise two spellings would name the same digest.
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") != suffix:
        raise MalformedKeyId("key_id suffix is not a canonical 32-byte encoding")
    return digest


def build_annotations(
    key_id: str,
    namespace: str,
    mount_id: str,
    lineage_id: str,
    version: int,
    plugin_version: str,
) -> dict[str, bytes]:
    """The EncryptResponse annotations for one key version (values are UTF-8 bytes)."""
    if version < 1:
        raise ValueError("Transit key version must be at least 1")
    annotations = {
        ANN_PROVIDER: PROVIDER,
        ANN_KEY_ID_HASH: hash_label(key_id),
        ANN_KEY_VERSION: str(version),
        ANN_MOUNT_HASH: hash_label(mount_id),
        ANN_KEY_HASH: hash_label(lineage_id),
    }
    if namespace:
        annotations[ANN_NAMESPACE_HASH] = hash_label(namespace)
    annotations[ANN_PLUGIN_VERSION] = plugin_version
    annotations[ANN_AAD_VERSION] = AAD_VERSION
    return {key: value.encode("utf-8") for key, value in annotations.items()}


def _annotation_text(annotations: Mapping[str, bytes], key: str) -> str:
    value = annotations.get(key)
    if value is None:
        raise InvalidAnnotations(f"annotation {key} is missing")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidAnnotations(f"annotation {key} is not a byte string")
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidAnnotations(f"annotation {key} is not valid UTF-8") from None


def parse_annotations(annotations: Mapping[str, bytes]) -> int:
    """Check the shape of request annotations; return the Transit key version they name."""
    has_namespace = ANN_NAMESPACE_HASH in annotations
    expected_count = 8 if has_namespace else 7
    for key in annotations:
        if key not in _KNOWN_ANNOTATIONS:
            raise InvalidAnnotations("annotations contain an unknown key")
    if len(annotations) != expected_count:
        raise InvalidAnnotations("annotations are incomplete")
    if _annotation_text(annotations, ANN_PROVIDER) != PROVIDER:
        raise InvalidAnnotations(f"annotation {ANN_PROVIDER} names another provider")
    if _annotation_text(annotations, ANN_AAD_VERSION) != AAD_VERSION:
        raise InvalidAnnotations(f"annotation {ANN_AAD_VERSION} is not a supported AAD version")
    for key in _HASH_ANNOTATIONS:
        if key == ANN_NAMESPACE_HASH and not has_namespace:
            continue
        if not _HASH_RE.fullmatch(_annotation_text(annotations, key)):
            raise InvalidAnnotations(f"annotation {key} is not a 43-character hash")
    plugin_version = _annotation_text(annotations, ANN_PLUGIN_VERSION)
    if not 0 < len(plugin_version) <= MAX_PLUGIN_VERSION_LENGTH or not plugin_version.isprintable():
        raise InvalidAnnotations(
            f"annotation {ANN_PLUGIN_VERSION} is empty, too long or unprintable"
        )
    version = _annotation_text(annotations, ANN_KEY_VERSION)
    if not _VERSION_RE.fullmatch(version):
        raise InvalidAnnotations(
            f"annotation {ANN_KEY_VERSION} is not a canonical positive decimal"
        )
    return int(version)


def match_annotations(annotations: Mapping[str, bytes], expected: Mapping[str, bytes]) -> None:
    """Refuse request *annotations* unless they are exactly those of the *expected* version.

    Every expected annotation must be present and byte-equal, except ``plugin-version``, which
    must be present and well-formed but is not compared (any release may have written it).
    """
    parse_annotations(annotations)
    if len(annotations) != len(expected):
        raise InvalidAnnotations("annotations do not match the key version")
    for key, value in expected.items():
        if key == ANN_PLUGIN_VERSION:
            continue
        given = annotations.get(key)
        if given is None:
            raise InvalidAnnotations(f"annotation {key} is missing")
        if bytes(given) != value:
            raise InvalidAnnotations(f"annotation {key} does not match the key version")


def _go_json_string(value: str) -> str:
    out = ['"']
    for char in value:
        escaped = _GO_JSON_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def canonical_aad(
    provider_name: str,
    cluster_id: str,
    instance_id: str,
    namespace: str,
    mount_id: str,
    lineage_id: str,
    key_id: str,
    version: int,
) -> bytes:
    """The v1 AAD: compact JSON with a fixed key order, byte-equal to the Go provider's."""
    if version < 1:
        raise ValueError("Transit key version must be at least 1")
    fields = [
        ("aad_version", AAD_VERSION),
        ("purpose", AAD_PURPOSE),
        ("provider", PROVIDER),
        ("provider_name", provider_name),
        ("cluster_id_hash", hash_label(cluster_id)),
        ("openbao_instance_hash", hash_label(instance_id)),
    ]
    if namespace:
        fields.append(("openbao_namespace_hash", hash_label(namespace)))
    fields += [
        ("transit_mount_hash", hash_label(mount_id)),
        ("transit_key_hash", hash_label(lineage_id)),
        ("key_id_hash", hash_label(key_id)),
        ("key_version", str(version)),
    ]
    body = ",".join(f'"{name}":{_go_json_string(value)}' for name, value in fields)
    return ("{" + body + "}").encode("utf-8")


def transit_aad(canonical: bytes) -> str:
    """The AAD as Transit's ``associated_data`` wants it: standard padded base64."""
    return base64.b64encode(canonical).decode("ascii")


def parse_ciphertext_version(ciphertext: bytes) -> int:
    """The N of a well-formed ``vault:vN:<base64>`` ciphertext; InvalidCiphertext otherwise."""
    if not ciphertext:
        raise InvalidCiphertext("ciphertext is empty")
    if len(ciphertext) > MAX_CIPHERTEXT_LENGTH:
        raise InvalidCiphertext(f"ciphertext is longer than {MAX_CIPHERTEXT_LENGTH} bytes")
    match = _CIPHERTEXT_RE.fullmatch(ciphertext)
    if match is None or len(match.group(2)) % 4:
        raise InvalidCiphertext("ciphertext is not a Transit vault:vN:<base64> string")
    return int(match.group(1))


def check_ciphertext_version(ciphertext: bytes, version: int) -> None:
    """Refuse a ciphertext that is malformed or was not written by key *version*."""
    if parse_ciphertext_version(ciphertext) != version:
        raise InvalidCiphertext("ciphertext version does not match the key version")


def encrypt_request_body(plaintext: bytes, key_version: int, associated_data: str) -> bytes:
    """JSON body for ``POST transit/encrypt/<key>`` pinned to *key_version*."""
    return orjson.dumps(
        {
            "plaintext": base64.b64encode(plaintext).decode("ascii"),
            "key_version": key_version,
            "associated_data": associated_data,
        }
    )


def decrypt_request_body(ciphertext: bytes, associated_data: str) -> bytes:
    """JSON body for ``POST transit/decrypt/<key>``; *ciphertext* must already be checked."""
    return orjson.dumps(
        {"ciphertext": ciphertext.decode("ascii"), "associated_data": associated_data}
    )


def response_data(body: bytes, what: str) -> dict[str, Any]:
    """The ``data`` object of an OpenBao JSON response; *what* names it in the error.

    Cold callers (key metadata, doctor) use it too, so every OpenBao answer is judged alike.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise OpenBaoBadResponse(f"{what} response is not JSON") from None
    data = document.get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise OpenBaoBadResponse(f"{what} response has no data object")
    return data


def parse_encrypt_response(body: bytes) -> tuple[bytes, int]:
    """The ciphertext bytes and key version from a Transit encrypt response."""
    data = response_data(body, "Transit encrypt")
    ciphertext = data.get("ciphertext")
    version = data.get("key_version")
    if not isinstance(ciphertext, str) or not ciphertext.isascii():
        raise OpenBaoBadResponse("Transit encrypt response has no ciphertext string")
    if type(version) is not int or version < 1:
        raise OpenBaoBadResponse("Transit encrypt response has no positive key_version")
    encoded = ciphertext.encode("ascii")
    try:
        check_ciphertext_version(encoded, version)
    except InvalidCiphertext:
        raise OpenBaoBadResponse(
            "Transit encrypt response ciphertext is malformed or names another version"
        ) from None
    return encoded, version


def _plaintext(plaintext: object, what: str) -> bytes:
    if not isinstance(plaintext, str) or not plaintext or not plaintext.isascii():
        raise OpenBaoBadResponse(f"{what} response has no plaintext string")
    try:
        return binascii.a2b_base64(plaintext.encode("ascii"), strict_mode=True)
    except binascii.Error:
        raise OpenBaoBadResponse(f"{what} response plaintext is not base64") from None


def parse_decrypt_response(body: bytes) -> bytes:
    """The plaintext bytes from a Transit decrypt response."""
    return _plaintext(response_data(body, "Transit decrypt").get("plaintext"), "Transit decrypt")


def decrypt_batch_request_body(items: Sequence[tuple[bytes, str]]) -> bytes:
    """JSON body for ``POST transit/decrypt/<key>`` with one ``batch_input`` entry per
    (ciphertext, associated_data) pair, in order; ciphertexts must already be checked."""
    # No "reference" fields: results come back in input order, and each would cost two more
    # of the JSON strings OpenBao allows a body (1000 in 2.7: 249 items of four strings).
    if not items:
        raise ValueError("a Transit batch needs at least one item")
    batch = [{"ciphertext": c.decode("ascii"), "associated_data": ad} for c, ad in items]
    return orjson.dumps({"batch_input": batch})


def parse_decrypt_batch_response(body: bytes, count: int) -> list[bytes | str]:
    """Each item's outcome from a Transit batch decrypt response, in input order: its plaintext
    bytes, or (a ``str``) OpenBao's error text for that item alone, to classify, never to show.

    OpenBao answers HTTP 400 with every item's result when any item fails: read it like a 200.
    """
    what = "Transit batch decrypt"
    results = response_data(body, what).get("batch_results")
    if not isinstance(results, list) or len(results) != count:
        raise OpenBaoBadResponse(f"{what} response has not one result per item")
    outcomes: list[bytes | str] = []
    for result in results:
        if not isinstance(result, dict):
            raise OpenBaoBadResponse(f"{what} result is not an object")
        error = result.get("error")  # omitted on success
        if error is None:
            outcomes.append(_plaintext(result.get("plaintext"), what))
        elif isinstance(error, str) and error:
            outcomes.append(error)
        else:
            raise OpenBaoBadResponse(f"{what} result has an unreadable error")
    return outcomes


# Read by the compiled twin too. The namespace hash is last: both skip it when it is absent.
_HASH_ANNOTATIONS = (ANN_KEY_ID_HASH, ANN_MOUNT_HASH, ANN_KEY_HASH, ANN_NAMESPACE_HASH)
_KNOWN_ANNOTATIONS = frozenset(
    (ANN_PROVIDER, ANN_KEY_VERSION, ANN_PLUGIN_VERSION, ANN_AAD_VERSION, *_HASH_ANNOTATIONS)
)

__all__ = [
    "AAD_PURPOSE",
    "AAD_VERSION",
    "ANN_AAD_VERSION",
    "ANN_KEY_HASH",
    "ANN_KEY_ID_HASH",
    "ANN_KEY_VERSION",
    "ANN_MOUNT_HASH",
    "ANN_NAMESPACE_HASH",
    "ANN_PLUGIN_VERSION",
    "ANN_PROVIDER",
    "KEY_ID_DOMAIN",
    "KEY_ID_LENGTH",
    "KEY_ID_PREFIX",
    "MAX_CIPHERTEXT_LENGTH",
    "MAX_PLUGIN_VERSION_LENGTH",
    "PROVIDER",
    "build_annotations",
    "canonical_aad",
    "check_ciphertext_version",
    "decrypt_batch_request_body",
    "decrypt_request_body",
    "derive_key_id",
    "encrypt_request_body",
    "hash_label",
    "match_annotations",
    "parse_annotations",
    "parse_ciphertext_version",
    "parse_decrypt_batch_response",
    "parse_decrypt_response",
    "parse_encrypt_response",
    "parse_key_id",
    "transit_aad",
]
