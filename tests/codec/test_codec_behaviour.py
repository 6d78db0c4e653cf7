"""Every function of the hot-path codec, every error branch, on both twins.

Messages are asserted exactly: they reach kube-apiserver, and the twins must agree on them.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import json
import types
from collections.abc import Callable
from types import ModuleType
from typing import Any

import orjson
import pytest

from bao_kms import errors
from bao_kms._proto import api_pb2

PROVIDER_NAME = "openbao-kms-workload-a"
CLUSTER_ID = "workload-a"
INSTANCE_ID = "bao-prod-a"
MOUNT_ID = "transit-prod-primary"
LINEAGE_ID = "01HXEXAMPLEKEYLINEAGEID"
CREATED = 1715803200
PLUGIN_VERSION = "v0.1.0"


def raises(exc_class: type[BaseException], message: str, func: Callable[..., Any], *args: Any):
    """Call *func*; it must raise exactly *exc_class* with exactly *message*."""
    with pytest.raises(exc_class) as excinfo:
        func(*args)
    assert type(excinfo.value) is exc_class
    assert str(excinfo.value) == message
    return excinfo.value


def key_id_for(codec: ModuleType, namespace: str = "", version: int = 3) -> str:
    return codec.derive_key_id(
        PROVIDER_NAME, CLUSTER_ID, INSTANCE_ID, namespace, MOUNT_ID, LINEAGE_ID, version, CREATED
    )


def annotations_for(
    codec: ModuleType, namespace: str = "", version: int = 3, plugin: str = PLUGIN_VERSION
) -> dict[str, bytes]:
    key_id = key_id_for(codec, namespace, version)
    return codec.build_annotations(key_id, namespace, MOUNT_ID, LINEAGE_ID, version, plugin)


def aad_for(codec: ModuleType, provider_name: str = PROVIDER_NAME, namespace: str = "") -> bytes:
    return codec.canonical_aad(
        provider_name,
        CLUSTER_ID,
        INSTANCE_ID,
        namespace,
        MOUNT_ID,
        LINEAGE_ID,
        key_id_for(codec, namespace),
        3,
    )


# --- module surface ------------------------------------------------------------------------------


@pytest.mark.compiled
def test_same_public_names_constants_and_signatures(py_codec: ModuleType, cy_codec: ModuleType):
    assert cy_codec.__all__ == py_codec.__all__
    public = [name for name in dir(py_codec) if name.isupper() and not name.startswith("_")]
    for name in public:
        value = getattr(py_codec, name)
        assert type(getattr(cy_codec, name)) is type(value), name
        assert getattr(cy_codec, name) == value, name
    for name in py_codec.__all__:
        spec = getattr(py_codec, name)
        if callable(spec):
            spec_params = inspect.signature(spec).parameters
            twin_params = inspect.signature(getattr(cy_codec, name)).parameters
            assert [(p.name, p.kind, p.default) for p in twin_params.values()] == [
                (p.name, p.kind, p.default) for p in spec_params.values()
            ], name
            assert getattr(cy_codec, name).__doc__ == spec.__doc__, name


def test_exceptions_are_the_package_hierarchy(codec: ModuleType) -> None:
    """Neither twin defines an exception class: every one it holds is the package's own (the
    spec raises them; the compiled twin leaves every refusal to the spec)."""
    held = {
        name: value
        for name, value in vars(codec).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert {name: getattr(errors, name, None) for name in held} == held


# --- hash_label, derive_key_id, parse_key_id -----------------------------------------------------


def test_hash_label(codec: ModuleType) -> None:
    for value in ("", "transit-prod-primary", "é-ü-\U0001f600"):
        digest = hashlib.sha256(value.encode()).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        assert codec.hash_label(value) == expected
        assert len(codec.hash_label(value)) == 43


def test_hash_label_refuses_lone_surrogates(codec: ModuleType) -> None:
    with pytest.raises(UnicodeEncodeError):
        codec.hash_label("a\ud800")


def test_derive_key_id_shape_and_namespace(codec: ModuleType) -> None:
    plain = key_id_for(codec)
    scoped = key_id_for(codec, namespace="team-a")
    assert len(plain) == len(scoped) == codec.KEY_ID_LENGTH
    assert plain.startswith(codec.KEY_ID_PREFIX)
    assert plain != scoped
    assert key_id_for(codec, version=4) != plain


def test_derive_key_id_bounds(codec: ModuleType) -> None:
    args = [PROVIDER_NAME, CLUSTER_ID, INSTANCE_ID, "", MOUNT_ID, LINEAGE_ID]
    raises(ValueError, "Transit key version must be at least 1", codec.derive_key_id, *args, 0, 1)
    raises(
        ValueError,
        "Transit key version creation time must not be negative",
        codec.derive_key_id,
        *args,
        1,
        -1,
    )
    assert codec.derive_key_id(*args, 1, 0).startswith("obk2.")


@pytest.mark.parametrize("position", range(6))
def test_derive_key_id_refuses_nul(codec: ModuleType, position: int) -> None:
    args = [PROVIDER_NAME, CLUSTER_ID, INSTANCE_ID, "team-a", MOUNT_ID, LINEAGE_ID]
    args[position] = args[position] + "\0x"
    raises(ValueError, "identity labels must not contain NUL", codec.derive_key_id, *args, 3, 1)


def test_parse_key_id(codec: ModuleType) -> None:
    key_id = key_id_for(codec)
    digest = codec.parse_key_id(key_id)
    assert type(digest) is bytes and len(digest) == 32
    assert "obk2." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == key_id


@pytest.mark.parametrize(
    ("key_id", "message"),
    [
        ("", "key_id must be 48 characters, got 0"),
        ("obk2." + "A" * 42, "key_id must be 48 characters, got 47"),
        ("obk2." + "A" * 44, "key_id must be 48 characters, got 49"),
        ("obk1." + "A" * 43, "key_id must start with 'obk2.'"),
        ("OBK2." + "A" * 43, "key_id must start with 'obk2.'"),
        ("öbk2." + "A" * 43, "key_id must start with 'obk2.'"),
        ("obk2." + "A" * 42 + "+", "key_id suffix must be 43 base64url characters"),
        ("obk2." + "A" * 42 + "=", "key_id suffix must be 43 base64url characters"),
        ("obk2." + "/" + "A" * 42, "key_id suffix must be 43 base64url characters"),
        ("obk2." + "A" * 42 + "é", "key_id suffix must be 43 base64url characters"),
        ("obk2." + "A" * 42 + "\0", "key_id suffix must be 43 base64url characters"),
        # 43 characters hold 258 bits: the last two must be zero
        ("obk2." + "A" * 42 + "B", "key_id suffix is not a canonical 32-byte encoding"),
        ("obk2." + "A" * 42 + "_", "key_id suffix is not a canonical 32-byte encoding"),
    ],
)
def test_parse_key_id_refuses(codec: ModuleType, key_id: str, message: str) -> None:
    raises(errors.MalformedKeyId, message, codec.parse_key_id, key_id)


def test_parse_key_id_canonical_edges(codec: ModuleType) -> None:
    assert codec.parse_key_id("obk2." + "A" * 42 + "E") == bytes(31) + b"\x01"
    assert codec.parse_key_id("obk2." + "_" * 42 + "8") == b"\xff" * 32


# --- annotations ---------------------------------------------------------------------------------


def test_build_annotations(codec: ModuleType) -> None:
    plain = annotations_for(codec)
    assert list(plain) == [
        codec.ANN_PROVIDER,
        codec.ANN_KEY_ID_HASH,
        codec.ANN_KEY_VERSION,
        codec.ANN_MOUNT_HASH,
        codec.ANN_KEY_HASH,
        codec.ANN_PLUGIN_VERSION,
        codec.ANN_AAD_VERSION,
    ]
    assert all(type(value) is bytes for value in plain.values())
    scoped = annotations_for(codec, namespace="team-a")
    assert list(scoped)[5] == codec.ANN_NAMESPACE_HASH
    assert scoped[codec.ANN_NAMESPACE_HASH] == codec.hash_label("team-a").encode()


@pytest.mark.parametrize("namespace", ["", "team-a"])
def test_parse_annotations_accepts_every_mapping(codec: ModuleType, namespace: str) -> None:
    annotations = annotations_for(codec, namespace, version=4294967296)
    request = api_pb2.DecryptRequest(annotations=annotations)
    for mapping in (
        annotations,
        types.MappingProxyType(annotations),
        request.annotations,
        {key: bytearray(value) for key, value in annotations.items()},
        {key: memoryview(value) for key, value in annotations.items()},
    ):
        assert codec.parse_annotations(mapping) == 4294967296


def _with(annotations: dict[str, bytes], **changes: bytes | None) -> dict[str, Any]:
    """A copy with keys (given by their constant name) replaced or, with None, removed."""
    result: dict[str, Any] = dict(annotations)
    for key, value in changes.items():
        if value is None:
            del result[key]
        else:
            result[key] = value
    return result


ANNOTATION_NAMES = [
    "ANN_PROVIDER",
    "ANN_KEY_ID_HASH",
    "ANN_KEY_VERSION",
    "ANN_MOUNT_HASH",
    "ANN_KEY_HASH",
    "ANN_NAMESPACE_HASH",
    "ANN_PLUGIN_VERSION",
    "ANN_AAD_VERSION",
]
#: (namespace, annotation) pairs that exist: the namespace hash only when one is configured
SHAPES = [
    (namespace, name)
    for namespace in ("", "team-a")
    for name in ANNOTATION_NAMES
    if namespace or name != "ANN_NAMESPACE_HASH"
]


def test_parse_annotations_unknown_key(codec: ModuleType) -> None:
    annotations = annotations_for(codec)
    raises(
        errors.InvalidAnnotations,
        "annotations contain an unknown key",
        codec.parse_annotations,
        {**annotations, "extra.kms.openbao.org": b"x"},
    )
    # unknown wins over incomplete
    del annotations[codec.ANN_PROVIDER]
    raises(
        errors.InvalidAnnotations,
        "annotations contain an unknown key",
        codec.parse_annotations,
        {**annotations, "x": b"openbao-transit"},
    )


@pytest.mark.parametrize(("namespace", "name"), SHAPES)
def test_parse_annotations_incomplete(codec: ModuleType, namespace: str, name: str) -> None:
    annotations = annotations_for(codec, namespace)
    key = getattr(codec, name)
    del annotations[key]
    if key == codec.ANN_NAMESPACE_HASH:
        # what remains is the complete shape without a namespace; match_annotations refuses it
        assert codec.parse_annotations(annotations) == 3
        return
    raises(
        errors.InvalidAnnotations,
        "annotations are incomplete",
        codec.parse_annotations,
        annotations,
    )


def test_parse_annotations_missing_value(codec: ModuleType) -> None:
    annotations: dict[str, Any] = annotations_for(codec)
    annotations[codec.ANN_MOUNT_HASH] = None
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_MOUNT_HASH} is missing",
        codec.parse_annotations,
        annotations,
    )


@pytest.mark.parametrize(("namespace", "name"), SHAPES)
@pytest.mark.parametrize("value", [b"\xff", b"ok\xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_parse_annotations_not_utf8(
    codec: ModuleType, namespace: str, name: str, value: bytes
) -> None:
    annotations = annotations_for(codec, namespace)
    key = getattr(codec, name)
    annotations[key] = value
    raises(
        errors.InvalidAnnotations,
        f"annotation {key} is not valid UTF-8",
        codec.parse_annotations,
        annotations,
    )


@pytest.mark.parametrize("value", [b"", b"openbao", b"openbao-transit ", b"OPENBAO-TRANSIT"])
def test_parse_annotations_other_provider(codec: ModuleType, value: bytes) -> None:
    annotations = _with(annotations_for(codec), **{codec.ANN_PROVIDER: value})
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_PROVIDER} names another provider",
        codec.parse_annotations,
        annotations,
    )


@pytest.mark.parametrize("value", [b"", b"v2", b"V1", b"v1\n"])
def test_parse_annotations_aad_version(codec: ModuleType, value: bytes) -> None:
    annotations = _with(annotations_for(codec), **{codec.ANN_AAD_VERSION: value})
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_AAD_VERSION} is not a supported AAD version",
        codec.parse_annotations,
        annotations,
    )


@pytest.mark.parametrize(
    "name", ["ANN_KEY_ID_HASH", "ANN_MOUNT_HASH", "ANN_KEY_HASH", "ANN_NAMESPACE_HASH"]
)
@pytest.mark.parametrize(
    "value", [b"", b"A" * 42, b"A" * 44, b"A" * 42 + b"=", b"A" * 42 + b"+", "A" * 42 + "é"]
)
def test_parse_annotations_not_a_hash(codec: ModuleType, name: str, value: bytes | str) -> None:
    key = getattr(codec, name)
    raw = value.encode() if isinstance(value, str) else value
    annotations = _with(annotations_for(codec, "team-a"), **{key: raw})
    raises(
        errors.InvalidAnnotations,
        f"annotation {key} is not a 43-character hash",
        codec.parse_annotations,
        annotations,
    )


@pytest.mark.parametrize("value", ["", "v" * 65, "v1\n", "v1\x00", "v1\u00a0", "v1\u2028"])
def test_parse_annotations_plugin_version_refused(codec: ModuleType, value: str) -> None:
    annotations = annotations_for(codec, plugin=value)
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_PLUGIN_VERSION} is empty, too long or unprintable",
        codec.parse_annotations,
        annotations,
    )


@pytest.mark.parametrize("value", ["v", "v" * 64, "v0.1.0 (dev)", "v1-é", "é" * 64, "~"])
def test_parse_annotations_plugin_version_accepted(codec: ModuleType, value: str) -> None:
    assert codec.parse_annotations(annotations_for(codec, plugin=value)) == 3


@pytest.mark.parametrize(
    "value", [b"", b"0", b"03", b"-1", b"+3", b" 3", b"3 ", b"3\n", b"12345678901", "٣".encode()]
)
def test_parse_annotations_key_version_refused(codec: ModuleType, value: bytes) -> None:
    annotations = _with(annotations_for(codec), **{codec.ANN_KEY_VERSION: value})
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_KEY_VERSION} is not a canonical positive decimal",
        codec.parse_annotations,
        annotations,
    )


@pytest.mark.parametrize("value", [b"1", b"9", b"10", b"4294967295", b"9999999999"])
def test_parse_annotations_key_version_accepted(codec: ModuleType, value: bytes) -> None:
    annotations = _with(annotations_for(codec), **{codec.ANN_KEY_VERSION: value})
    assert codec.parse_annotations(annotations) == int(value)


@pytest.mark.parametrize("namespace", ["", "team-a"])
def test_match_annotations_accepts(codec: ModuleType, namespace: str) -> None:
    expected = types.MappingProxyType(annotations_for(codec, namespace))
    request = api_pb2.DecryptRequest(annotations=dict(expected))
    assert codec.match_annotations(request.annotations, expected) is None
    assert codec.match_annotations(dict(expected), dict(expected)) is None


def test_match_annotations_ignores_plugin_version_value(codec: ModuleType) -> None:
    expected = annotations_for(codec)
    written = annotations_for(codec, plugin="v9.9.9-other")
    assert codec.match_annotations(written, expected) is None


def test_match_annotations_requires_plugin_version(codec: ModuleType) -> None:
    expected = annotations_for(codec)
    missing = _with(expected, **{codec.ANN_PLUGIN_VERSION: None})
    raises(
        errors.InvalidAnnotations,
        "annotations are incomplete",
        codec.match_annotations,
        missing,
        expected,
    )
    bad = _with(expected, **{codec.ANN_PLUGIN_VERSION: b""})
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_PLUGIN_VERSION} is empty, too long or unprintable",
        codec.match_annotations,
        bad,
        expected,
    )


@pytest.mark.parametrize(
    ("name", "version"),
    [("ANN_KEY_ID_HASH", 3), ("ANN_MOUNT_HASH", 3), ("ANN_KEY_HASH", 3), ("ANN_KEY_VERSION", 4)],
)
def test_match_annotations_wrong_value(codec: ModuleType, name: str, version: int) -> None:
    expected = annotations_for(codec)
    key = getattr(codec, name)
    given = dict(expected)
    given[key] = (
        str(version).encode() if name == "ANN_KEY_VERSION" else codec.hash_label("other").encode()
    )
    raises(
        errors.InvalidAnnotations,
        f"annotation {key} does not match the key version",
        codec.match_annotations,
        given,
        expected,
    )


def test_match_annotations_namespace_present_or_absent(codec: ModuleType) -> None:
    plain = annotations_for(codec)
    scoped = annotations_for(codec, "team-a")
    for given, expected in ((plain, scoped), (scoped, plain)):
        raises(
            errors.InvalidAnnotations,
            "annotations do not match the key version",
            codec.match_annotations,
            given,
            expected,
        )
    other = annotations_for(codec, "team-b")
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_KEY_ID_HASH} does not match the key version",
        codec.match_annotations,
        other,
        scoped,
    )


def test_match_annotations_missing_and_extra(codec: ModuleType) -> None:
    expected = annotations_for(codec)
    # an expected key that the (well-formed) request does not carry
    odd = _with(expected, **{codec.ANN_KEY_ID_HASH: None})
    odd[codec.ANN_NAMESPACE_HASH] = codec.hash_label("team-a").encode()
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_NAMESPACE_HASH} is missing",
        codec.match_annotations,
        expected,
        odd,
    )
    extra = {**expected, "extra": b"1"}
    raises(
        errors.InvalidAnnotations,
        "annotations contain an unknown key",
        codec.match_annotations,
        extra,
        expected,
    )


def test_match_annotations_not_utf8(codec: ModuleType) -> None:
    expected = annotations_for(codec)
    given = _with(expected, **{codec.ANN_KEY_HASH: b"\xff" * 43})
    raises(
        errors.InvalidAnnotations,
        f"annotation {codec.ANN_KEY_HASH} is not valid UTF-8",
        codec.match_annotations,
        given,
        expected,
    )


# --- AAD -----------------------------------------------------------------------------------------

AAD_KEYS = [
    "aad_version",
    "purpose",
    "provider",
    "provider_name",
    "cluster_id_hash",
    "openbao_instance_hash",
    "transit_mount_hash",
    "transit_key_hash",
    "key_id_hash",
    "key_version",
]


@pytest.mark.parametrize("namespace", ["", "team-a"])
def test_canonical_aad_fields(codec: ModuleType, namespace: str) -> None:
    aad = aad_for(codec, namespace=namespace)
    document = json.loads(aad)
    keys = list(AAD_KEYS)
    if namespace:
        keys.insert(6, "openbao_namespace_hash")
        assert document["openbao_namespace_hash"] == codec.hash_label(namespace)
    assert list(document) == keys
    assert document["key_id_hash"] == codec.hash_label(key_id_for(codec, namespace))
    assert document["key_version"] == "3"
    assert b" " not in aad


def test_canonical_aad_go_escaping(codec: ModuleType) -> None:
    name = 'a<b>c&d"e\\f\u2028g\u2029h\ni\rj\tk\x01l\x1fm\x7fn/o é\U0001f600'
    aad = aad_for(codec, provider_name=name)
    assert json.loads(aad)["provider_name"] == name
    encoded = aad.split(b'"provider_name":', 1)[1].split(b',"cluster_id_hash"', 1)[0]
    assert encoded == (
        b'"a\\u003cb\\u003ec\\u0026d\\"e\\\\f\\u2028g\\u2029h\\ni\\rj\\tk\\u0001l\\u001fm'
        + "\x7fn/o é\U0001f600".encode()
        + b'"'
    )
    for raw in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()):
        assert raw not in aad


def test_canonical_aad_uses_go_short_escapes_for_backspace_and_form_feed(codec: ModuleType) -> None:
    """Go 1.22+ encoding/json writes \\b and \\f (not \\u0008/\\u000c)."""
    aad = aad_for(codec, provider_name="a\bb\fc")
    assert b'"provider_name":"a\\bb\\fc"' in aad


@pytest.mark.parametrize("version", [0, -1])
def test_builders_refuse_versions_below_one(codec: ModuleType, version: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        codec.build_annotations("obk2." + "A" * 43, "", "m", "l", version, "v1")
    with pytest.raises(ValueError, match="at least 1"):
        codec.canonical_aad("p", "c", "i", "", "m", "l", "obk2." + "A" * 43, version)


def test_annotation_values_must_be_byte_strings(codec: ModuleType) -> None:
    annotations = dict(codec.build_annotations("obk2." + "A" * 43, "", "m", "l", 3, "v1"))
    annotations[codec.ANN_KEY_VERSION] = 3
    with pytest.raises(errors.InvalidAnnotations, match="not a byte string"):
        codec.parse_annotations(annotations)


def test_canonical_aad_refuses_lone_surrogates(codec: ModuleType) -> None:
    with pytest.raises(UnicodeEncodeError):
        aad_for(codec, provider_name="a\udc80")


def test_transit_aad(codec: ModuleType) -> None:
    for canonical in (b"", b"x", b"xy", b"xyz", aad_for(codec)):
        encoded = codec.transit_aad(canonical)
        assert type(encoded) is str
        assert encoded == base64.b64encode(canonical).decode()


# --- ciphertext ----------------------------------------------------------------------------------

SHAPE = "ciphertext is not a Transit vault:vN:<base64> string"


@pytest.mark.parametrize(
    ("ciphertext", "version"),
    [
        (b"vault:v1:AAAA", 1),
        (b"vault:v3:AA==", 3),
        (b"vault:v42:AAA=", 42),
        (b"vault:v1234567890:AAAA", 1234567890),
        (b"vault:v9999999999:+/+/", 9999999999),
        (b"vault:v1234:" + b"A" * 1012, 1234),  # exactly MAX_CIPHERTEXT_LENGTH
    ],
)
def test_parse_ciphertext_version(codec: ModuleType, ciphertext: bytes, version: int) -> None:
    assert codec.parse_ciphertext_version(ciphertext) == version
    assert codec.parse_ciphertext_version(bytearray(ciphertext)) == version
    assert codec.parse_ciphertext_version(memoryview(ciphertext)) == version


@pytest.mark.parametrize(
    ("ciphertext", "message"),
    [
        (b"", "ciphertext is empty"),
        (b"vault:v12345:" + b"A" * 1012, "ciphertext is longer than 1024 bytes"),
        (b"A" * 1025, "ciphertext is longer than 1024 bytes"),
        (b"AAAA", SHAPE),
        (b"vault:1:AAAA", SHAPE),
        (b"Vault:v1:AAAA", SHAPE),
        (b"vault:v1AAAA", SHAPE),
        (b"vault:v:AAAA", SHAPE),
        (b"vault:v0:AAAA", SHAPE),
        (b"vault:v01:AAAA", SHAPE),
        (b"vault:v-1:AAAA", SHAPE),
        (b"vault:v12345678901:AAAA", SHAPE),
        (b"vault:v1:", SHAPE),
        (b"vault:v1:AA-_", SHAPE),
        (b"vault:v1:AA A", SHAPE),
        (b"vault:v1:AAAA\n", SHAPE),
        (b"vault:v1:AAAA\x00", SHAPE),
        (b"vault:v1:AA\xffA", SHAPE),
        (b"vault:v1:A", SHAPE),
        (b"vault:v1:AAA", SHAPE),
        (b"vault:v1:AAAAA", SHAPE),
        (b"vault:v1:AA=", SHAPE),
        (b"vault:v1:A===", SHAPE),
        (b"vault:v1:====", SHAPE),
        (b"vault:v1:AA=A", SHAPE),
        (b"vault:v1:AA==AAAA", SHAPE),
        (b"vault:v1:AAAA:AAAA", SHAPE),
        (b" vault:v1:AAAA", SHAPE),
    ],
)
def test_parse_ciphertext_version_refuses(codec: ModuleType, ciphertext: bytes, message: str):
    raises(errors.InvalidCiphertext, message, codec.parse_ciphertext_version, ciphertext)
    raises(errors.InvalidCiphertext, message, codec.parse_ciphertext_version, bytearray(ciphertext))


def test_check_ciphertext_version(codec: ModuleType) -> None:
    assert codec.check_ciphertext_version(b"vault:v7:AAAA", 7) is None
    for version in (6, 8, 70, 2**64):
        raises(
            errors.InvalidCiphertext,
            "ciphertext version does not match the key version",
            codec.check_ciphertext_version,
            b"vault:v7:AAAA",
            version,
        )
    raises(errors.InvalidCiphertext, SHAPE, codec.check_ciphertext_version, b"vault:v7:AAA", 7)
    # -1 is the compiled scan's "malformed": it must never match a version
    raises(errors.InvalidCiphertext, SHAPE, codec.check_ciphertext_version, b"vault:v7:AAA", -1)
    raises(errors.InvalidCiphertext, "ciphertext is empty", codec.check_ciphertext_version, b"", 7)


# --- Transit request bodies ----------------------------------------------------------------------


@pytest.mark.parametrize("plaintext", [b"", b"\x00", b"ab", b"abc", bytes(range(256)) * 4])
@pytest.mark.parametrize("associated_data", ["", "eyJhYWQiOiJ2MSJ9", 'q"<>&\\\n\u2028é'])
def test_encrypt_request_body(codec: ModuleType, plaintext: bytes, associated_data: str) -> None:
    body = codec.encrypt_request_body(plaintext, 12, associated_data)
    assert type(body) is bytes
    document = json.loads(body)
    assert list(document) == ["plaintext", "key_version", "associated_data"]
    assert base64.b64decode(document["plaintext"], validate=True) == plaintext
    assert document["key_version"] == 12
    assert document["associated_data"] == associated_data
    assert body == orjson.dumps(document)


@pytest.mark.parametrize("associated_data", ["", "eyJhYWQiOiJ2MSJ9", 'q"<>&\\\n\u2028é'])
def test_decrypt_request_body(codec: ModuleType, associated_data: str) -> None:
    ciphertext = b"vault:v12:" + base64.b64encode(bytes(range(60)))
    body = codec.decrypt_request_body(ciphertext, associated_data)
    assert type(body) is bytes
    document = json.loads(body)
    assert document == {"ciphertext": ciphertext.decode(), "associated_data": associated_data}
    assert list(document) == ["ciphertext", "associated_data"]
    assert body == orjson.dumps(document)


def test_decrypt_request_body_needs_ascii(codec: ModuleType) -> None:
    with pytest.raises(UnicodeDecodeError):
        codec.decrypt_request_body(b"vault:v1:\xff", "")


# --- Transit responses ---------------------------------------------------------------------------


def _encrypt_body(data: Any) -> bytes:
    return json.dumps({"request_id": "r", "data": data}).encode()


def test_parse_encrypt_response(codec: ModuleType) -> None:
    body = _encrypt_body({"ciphertext": "vault:v5:QUJDRA==", "key_version": 5})
    ciphertext, version = codec.parse_encrypt_response(body)
    assert (type(ciphertext), ciphertext, type(version), version) == (
        bytes,
        b"vault:v5:QUJDRA==",
        int,
        5,
    )


@pytest.mark.parametrize("body", [b"", b"{", b"\xff", b"{}x", b'{"data":{}', b"\xef\xbb\xbf{}"])
@pytest.mark.parametrize("operation", ["encrypt", "decrypt"])
def test_parse_response_not_json(codec: ModuleType, body: bytes, operation: str) -> None:
    parse = getattr(codec, f"parse_{operation}_response")
    error = raises(
        errors.OpenBaoBadResponse, f"Transit {operation} response is not JSON", parse, body
    )
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize(
    "body", [b"null", b"[]", b'"data"', b"{}", b'{"data":null}', b'{"data":[]}', b'{"data":"x"}']
)
@pytest.mark.parametrize("operation", ["encrypt", "decrypt"])
def test_parse_response_no_data(codec: ModuleType, body: bytes, operation: str) -> None:
    parse = getattr(codec, f"parse_{operation}_response")
    raises(
        errors.OpenBaoBadResponse, f"Transit {operation} response has no data object", parse, body
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key_version": 5}, "Transit encrypt response has no ciphertext string"),
        ({"ciphertext": 5, "key_version": 5}, "Transit encrypt response has no ciphertext string"),
        (
            {"ciphertext": None, "key_version": 5},
            "Transit encrypt response has no ciphertext string",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==é", "key_version": 5},
            "Transit encrypt response has no ciphertext string",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA=="},
            "Transit encrypt response has no positive key_version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==", "key_version": "5"},
            "Transit encrypt response has no positive key_version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==", "key_version": 5.0},
            "Transit encrypt response has no positive key_version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==", "key_version": True},
            "Transit encrypt response has no positive key_version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==", "key_version": 0},
            "Transit encrypt response has no positive key_version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==", "key_version": -5},
            "Transit encrypt response has no positive key_version",
        ),
        (  # -1 is the compiled scan's "malformed": it must never match a key_version
            {"ciphertext": "vault:v:QUJD", "key_version": -1},
            "Transit encrypt response has no positive key_version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==", "key_version": 6},
            "Transit encrypt response ciphertext is malformed or names another version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA==", "key_version": 2**63},
            "Transit encrypt response ciphertext is malformed or names another version",
        ),
        (
            {"ciphertext": "vault:v5:QUJDRA=", "key_version": 5},
            "Transit encrypt response ciphertext is malformed or names another version",
        ),
        (
            {"ciphertext": "", "key_version": 5},
            "Transit encrypt response ciphertext is malformed or names another version",
        ),
        (
            {"ciphertext": "vault:v5:" + "A" * 1100, "key_version": 5},
            "Transit encrypt response ciphertext is malformed or names another version",
        ),
    ],
)
def test_parse_encrypt_response_refuses(codec: ModuleType, data: Any, message: str) -> None:
    error = raises(
        errors.OpenBaoBadResponse, message, codec.parse_encrypt_response, _encrypt_body(data)
    )
    if "malformed" in message:
        assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize("plaintext", [b"\x00", b"ab", b"abc", bytes(range(256)) * 3])
def test_parse_decrypt_response(codec: ModuleType, plaintext: bytes) -> None:
    body = _encrypt_body({"plaintext": base64.b64encode(plaintext).decode()})
    result = codec.parse_decrypt_response(body)
    assert type(result) is bytes and result == plaintext


@pytest.mark.parametrize(
    ("plaintext", "message"),
    [
        (None, "Transit decrypt response has no plaintext string"),
        (5, "Transit decrypt response has no plaintext string"),
        ([], "Transit decrypt response has no plaintext string"),
        ("", "Transit decrypt response has no plaintext string"),
        ("QUJD\u00e9", "Transit decrypt response has no plaintext string"),
        ("!!!!", "Transit decrypt response plaintext is not base64"),
        ("QUJ", "Transit decrypt response plaintext is not base64"),
        ("QUJDR", "Transit decrypt response plaintext is not base64"),
        ("=QUJ", "Transit decrypt response plaintext is not base64"),
        ("QU==QUJD", "Transit decrypt response plaintext is not base64"),
        ("QUJD\n", "Transit decrypt response plaintext is not base64"),
        ("QU===", "Transit decrypt response plaintext is not base64"),
        ("QUJD=QUJD", "Transit decrypt response plaintext is not base64"),
        ("QUJ-", "Transit decrypt response plaintext is not base64"),
    ],
)
def test_parse_decrypt_response_refuses(codec: ModuleType, plaintext: Any, message: str) -> None:
    body = _encrypt_body({} if plaintext is None else {"plaintext": plaintext})
    error = raises(errors.OpenBaoBadResponse, message, codec.parse_decrypt_response, body)
    if "base64" in message:
        assert error.__cause__ is None and error.__suppress_context__
