"""Parity: on randomized inputs the compiled twin behaves exactly like the spec (``_codec_py``).

For every function, both twins get the same inputs and must return equal values of the same
types, or raise the same exception class with the same arguments and the same chaining. Inputs
cluster around the valid forms (key_ids, annotation sets, ``vault:vN:`` strings, Transit JSON)
so that every branch is reached, with plain random bytes and text mixed in.

The compiled twin hands every input its fast path does not prove valid to the spec, so what
these tests find is a fast path that accepts too much or answers differently. The cold builders
it re-exports from the spec pass trivially; ``test_codec_split.py`` holds that they stay so.
"""

from __future__ import annotations

import base64
import json
import string
import types
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bao_kms import _codec_py as spec
from bao_kms._proto import api_pb2

pytestmark = pytest.mark.compiled

BOUNDED = settings(max_examples=300, deadline=None)

URL_ALPHABET = string.ascii_letters + string.digits + "-_"
STD_ALPHABET = string.ascii_letters + string.digits + "+/"
KNOWN_KEYS = [
    spec.ANN_PROVIDER,
    spec.ANN_KEY_ID_HASH,
    spec.ANN_KEY_VERSION,
    spec.ANN_MOUNT_HASH,
    spec.ANN_KEY_HASH,
    spec.ANN_NAMESPACE_HASH,
    spec.ANN_PLUGIN_VERSION,
    spec.ANN_AAD_VERSION,
]


def outcome(func: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """What a call did, in a form that compares across twins (types and order included)."""
    try:
        result = func(*args)
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("raised", type(exc), exc.args, exc.__cause__ is None, exc.__suppress_context__)
    if isinstance(result, dict):
        return ("dict", [(type(k), k, type(v), v) for k, v in result.items()])
    if isinstance(result, tuple):
        return ("tuple", [(type(item), item) for item in result])
    return ("returned", type(result), result)


def assert_same(cy_codec: ModuleType, name: str, *args: Any) -> None:
    expected = outcome(getattr(spec, name), *args)
    assert outcome(getattr(cy_codec, name), *args) == expected


def byte_strings(alphabet: bytes, **sizes: int) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(list(alphabet)), **sizes).map(bytes)


# --- strategies ----------------------------------------------------------------------------------

# Labels come from UTF-8 config: no lone surrogates (those are tested as `wild_text`) and no NUL.
labels = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=24),
    st.text(alphabet=URL_ALPHABET + ".:/", min_size=1, max_size=24),
    st.text(alphabet='<>&"\\\u2028\u2029\n\t\x01\x7fé/a', max_size=8),
)
namespaces = st.one_of(st.just(""), labels)
#: any str at all, lone surrogates included: both twins must fail on them the same way
wild_text = st.text(st.characters(), max_size=12)
versions = st.one_of(st.integers(1, 20), st.integers(-3, 2**70))


def _key_id(digest: bytes) -> str:
    return "obk2." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


valid_key_ids = st.binary(min_size=32, max_size=32).map(_key_id)


@st.composite
def mutated_key_ids(draw: st.DrawFn) -> str:
    chars = list(draw(valid_key_ids))
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.integers(0, len(chars)))
        char = draw(st.one_of(st.sampled_from(list(URL_ALPHABET + "+/=.é\0 ")), st.characters()))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "insert":
            chars.insert(where, char)
        elif chars and where < len(chars):
            if action == "replace":
                chars[where] = char
            else:
                del chars[where]
    return "".join(chars)


key_ids = st.one_of(
    valid_key_ids,
    mutated_key_ids(),
    # right length, base64url suffix: most of these are not canonical
    st.text(alphabet=URL_ALPHABET, min_size=43, max_size=43).map(lambda s: "obk2." + s),
    st.text(alphabet=URL_ALPHABET + "+/=é", min_size=41, max_size=45).map(lambda s: "obk2." + s),
    st.text(alphabet="obk2.AQ_-é", min_size=46, max_size=50),
    st.text(max_size=60),
)

hash_values = st.one_of(
    st.text(alphabet=URL_ALPHABET, min_size=43, max_size=43).map(str.encode),
    st.text(alphabet=URL_ALPHABET + "+/=é", min_size=42, max_size=44).map(str.encode),
)
annotation_values = st.one_of(
    st.binary(max_size=70),
    st.text(max_size=70).map(str.encode),
    hash_values,
    st.from_regex(rb"[0-9]{0,12}", fullmatch=True),
    st.text(alphabet="0123456789٣-+ ", max_size=11).map(str.encode),
    st.text(min_size=60, max_size=68).map(str.encode),
    st.sampled_from(
        [b"openbao-transit", b"v1", b"v0.1.0", b"", b"\xff", b"\xed\xa0\x80", b"v1\n", b"1"]
    ),
)
odd_values = st.one_of(annotation_values.map(bytearray), annotation_values.map(memoryview))
plugin_versions = st.one_of(
    st.sampled_from(["v0.1.0", "v0.2.0-rc.1"]),
    st.text(alphabet=string.ascii_letters + string.digits + ".-+ ", min_size=1, max_size=64),
    st.text(max_size=70),
)


@st.composite
def annotation_cases(draw: st.DrawFn) -> tuple[dict[Any, Any], dict[str, bytes]]:
    """(request annotations, expected annotations): usually a near-copy of a valid set."""
    namespace = draw(namespaces)
    expected = spec.build_annotations(
        draw(valid_key_ids),
        namespace,
        draw(labels),
        draw(labels),
        draw(st.integers(1, 2**34)),
        draw(plugin_versions),
    )
    request: dict[Any, Any] = dict(expected)
    if draw(st.integers(0, 4)) == 0:  # written by another key version or identity
        request = spec.build_annotations(
            draw(st.one_of(valid_key_ids, labels)),
            draw(st.sampled_from(["", namespace])),
            draw(labels),
            draw(labels),
            draw(st.integers(1, 2**34)),
            draw(plugin_versions),
        )
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "set", "set", "add", "odd", "none", "plugin"]))
        if action == "drop" and request:
            del request[draw(st.sampled_from(sorted(request, key=repr)))]
        elif action == "set":
            request[draw(st.sampled_from(KNOWN_KEYS))] = draw(annotation_values)
        elif action == "add":
            request[draw(st.one_of(st.text(max_size=12), st.sampled_from(KNOWN_KEYS)))] = draw(
                annotation_values
            )
        elif action == "odd":
            request[draw(st.sampled_from(KNOWN_KEYS))] = draw(odd_values)
        elif action == "none":
            request[draw(st.sampled_from(KNOWN_KEYS))] = None
        else:
            request[spec.ANN_PLUGIN_VERSION] = draw(plugin_versions).encode()
    if draw(st.integers(0, 9)) == 0:  # an expected set that is itself odd: reaches "missing"
        key = draw(st.sampled_from(sorted(expected)))
        expected[draw(st.sampled_from(KNOWN_KEYS))] = expected.pop(key)
    return request, expected


def _as_protobuf(annotations: dict[Any, Any]) -> Any | None:
    """The same annotations as the gRPC request carries them, when protobuf can hold them."""
    if all(type(key) is str and type(value) is bytes for key, value in annotations.items()):
        return api_pb2.DecryptRequest(annotations=annotations).annotations
    return None


B64_BYTES = STD_ALPHABET.encode()

ciphertexts = st.one_of(
    st.binary(max_size=40),
    st.builds(
        lambda digits, body, pad, tail: b"vault:v" + digits + b":" + body + pad + tail,
        st.one_of(st.from_regex(rb"[0-9]{0,12}", fullmatch=True), st.just(b"1")),
        st.one_of(
            st.binary(max_size=40).map(base64.b64encode),
            byte_strings(B64_BYTES + b"-_ =\n\xff\x00", max_size=16),
        ),
        st.sampled_from([b"", b"", b"=", b"==", b"==="]),
        st.sampled_from([b"", b"", b"", b"\n", b"A", b"=A", b":AAAA"]),
    ),
    st.builds(
        lambda version, size: b"vault:v" + str(version).encode() + b":" + b"A" * size,
        st.integers(1, 10**10),
        st.integers(1000, 1020),
    ),
    st.builds(
        lambda prefix, body: prefix + body,
        st.sampled_from(
            [
                b"vault:v1:",
                b"vault:v:",
                b"Vault:v1:",
                b"vault:1:",
                b"vault:v01:",
                b"vault:v0:",
                b"vault:v-1:",
                b"vault:v1",
                b"",
                b"vault:v1::",
            ]
        ),
        byte_strings(B64_BYTES + b"=", max_size=12),
    ),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.integers(-2, 12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
plaintext_fields = st.one_of(
    json_scalars,
    st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode()),
    st.text(alphabet=STD_ALPHABET + "=-_ \n", max_size=20),
    st.sampled_from(["", "QUJD====", "QU==", "=QUJ", "QUJD=QUJD", "QUJ", "QUJDR", "QU=="]),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def response_bodies(draw: st.DrawFn) -> Any:
    """Transit-like response bodies: well-formed ones, damaged ones, and random bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=120))
    if kind <= 4:
        good = draw(st.integers(1, 2**40))
        shown = draw(st.sampled_from([good, good, good, good + 1]))
        sealed = base64.b64encode(draw(st.binary(min_size=1))).decode()
        plaintext = base64.b64encode(draw(st.binary(min_size=1, max_size=64))).decode()
        flaw = st.sampled_from(["", "", "", "", "=", "A", "====", "\n"])
        fields = {
            "ciphertext": f"vault:v{shown}:{sealed}{draw(flaw)}",
            "key_version": good,
            "plaintext": plaintext + draw(flaw),
        }
        return json.dumps({"request_id": "r", "data": fields}).encode()
    version = draw(st.one_of(st.integers(1, 12), json_scalars))
    data: dict[str, Any] = {}
    if draw(st.integers(0, 5)):
        data["plaintext"] = draw(plaintext_fields)
    if draw(st.integers(0, 5)):
        shown = (
            version if type(version) is int and draw(st.booleans()) else draw(st.integers(1, 12))
        )
        data["ciphertext"] = draw(
            st.one_of(
                st.binary(max_size=40).map(
                    lambda b: f"vault:v{shown}:" + base64.b64encode(b).decode()
                ),
                ciphertexts.map(lambda b: b.decode("latin-1")),
                json_scalars,
            )
        )
    if draw(st.integers(0, 5)):
        data["key_version"] = version
    shape = draw(st.sampled_from(["ok", "ok", "ok", "no-data", "data-list", "list", "null-data"]))
    document: Any = {"request_id": "r", "data": data}
    if shape == "no-data":
        document = {"request_id": "r"}
    elif shape == "data-list":
        document = {"data": [data]}
    elif shape == "list":
        document = [document]
    elif shape == "null-data":
        document = {"data": None}
    body = json.dumps(document, ensure_ascii=draw(st.booleans())).encode()
    damage = draw(st.sampled_from(["none", "none", "none", "truncate", "junk", "str", "bytearray"]))
    if damage == "truncate":
        return body[: draw(st.integers(0, len(body)))]
    if damage == "junk":
        return body + draw(st.binary(min_size=1, max_size=4))
    if damage == "str":
        return body.decode()
    if damage == "bytearray":
        return bytearray(body)
    return body


associated_data = st.one_of(
    st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
    st.text(max_size=40),
    st.text(alphabet=string.printable, max_size=40),
    st.binary(max_size=8),
)


# --- the tests -----------------------------------------------------------------------------------


@BOUNDED
@given(value=st.one_of(st.text(), wild_text, st.text(st.characters(categories=["Cs"]), max_size=2)))
def test_hash_label(cy_codec: ModuleType, value: str) -> None:
    assert_same(cy_codec, "hash_label", value)


@BOUNDED
@given(
    names=st.lists(st.one_of(labels, labels, wild_text), min_size=6, max_size=6),
    namespace=namespaces,
    version=versions,
    created=st.one_of(st.integers(-2, 2**40), st.integers(0, 2**70)),
)
def test_derive_key_id(
    cy_codec: ModuleType, names: list[str], namespace: str, version: int, created: int
) -> None:
    provider, cluster, instance, mount, lineage, _ = names
    args = (provider, cluster, instance, namespace, mount, lineage, version, created)
    assert_same(cy_codec, "derive_key_id", *args)


@BOUNDED
@given(names=st.lists(st.text(alphabet="ab\0é", max_size=4), min_size=6, max_size=6))
def test_derive_key_id_with_nul(cy_codec: ModuleType, names: list[str]) -> None:
    assert_same(cy_codec, "derive_key_id", *names, 1, 1)


@BOUNDED
@given(key_id=key_ids)
def test_parse_key_id(cy_codec: ModuleType, key_id: str) -> None:
    assert_same(cy_codec, "parse_key_id", key_id)


@BOUNDED
@given(
    key_id=st.one_of(valid_key_ids, labels, wild_text),
    namespace=namespaces,
    mount=labels,
    lineage=labels,
    version=versions,
    plugin=st.one_of(plugin_versions, wild_text),
)
def test_build_annotations(
    cy_codec: ModuleType,
    key_id: str,
    namespace: str,
    mount: str,
    lineage: str,
    version: int,
    plugin: str,
) -> None:
    assert_same(cy_codec, "build_annotations", key_id, namespace, mount, lineage, version, plugin)


@BOUNDED
@given(case=annotation_cases())
def test_parse_and_match_annotations(
    cy_codec: ModuleType, case: tuple[dict[Any, Any], dict[str, bytes]]
) -> None:
    request, expected = case
    assert_same(cy_codec, "parse_annotations", request)
    assert_same(cy_codec, "match_annotations", request, expected)
    assert_same(cy_codec, "match_annotations", request, types.MappingProxyType(expected))
    container = _as_protobuf(request)
    if container is not None:
        assert_same(cy_codec, "parse_annotations", container)
        assert_same(cy_codec, "match_annotations", container, types.MappingProxyType(expected))


@BOUNDED
@given(
    request=st.dictionaries(
        st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8)), annotation_values, max_size=9
    ),
    expected=st.dictionaries(
        st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8)), annotation_values, max_size=9
    ),
)
def test_random_annotation_dicts(
    cy_codec: ModuleType, request: dict[str, bytes], expected: dict[str, bytes]
) -> None:
    assert_same(cy_codec, "parse_annotations", request)
    assert_same(cy_codec, "match_annotations", request, expected)


@BOUNDED
@given(
    names=st.lists(st.one_of(labels, st.text(), wild_text), min_size=6, max_size=6),
    namespace=namespaces,
    key_id=key_ids,
    version=versions,
)
def test_canonical_and_transit_aad(
    cy_codec: ModuleType, names: list[str], namespace: str, key_id: str, version: int
) -> None:
    provider, cluster, instance, mount, lineage, _ = names
    args = (provider, cluster, instance, namespace, mount, lineage, key_id, version)
    assert_same(cy_codec, "canonical_aad", *args)
    kind, *rest = outcome(spec.canonical_aad, *args)
    if kind == "returned":
        assert_same(cy_codec, "transit_aad", rest[1])


@BOUNDED
@given(canonical=st.one_of(st.binary(max_size=300), st.binary(max_size=20).map(bytearray)))
def test_transit_aad(cy_codec: ModuleType, canonical: bytes) -> None:
    assert_same(cy_codec, "transit_aad", canonical)


@BOUNDED
@given(data=st.data(), ciphertext=ciphertexts)
def test_ciphertext_version(cy_codec: ModuleType, data: st.DataObject, ciphertext: bytes) -> None:
    for value in (ciphertext, bytearray(ciphertext)):
        assert_same(cy_codec, "parse_ciphertext_version", value)
    candidates = [st.integers(-2, 2**70), st.integers(0, 12), st.booleans(), st.floats()]
    kind, *rest = outcome(spec.parse_ciphertext_version, ciphertext)
    if kind == "returned":
        parsed = rest[1]
        candidates += [st.just(parsed), st.just(parsed + 1), st.just(float(parsed))]
    version = data.draw(st.one_of(*candidates), label="version")
    assert_same(cy_codec, "check_ciphertext_version", ciphertext, version)
    assert_same(cy_codec, "check_ciphertext_version", memoryview(ciphertext), version)


@BOUNDED
@given(
    plaintext=st.one_of(st.binary(max_size=80), st.binary(max_size=8).map(bytearray)),
    key_version=st.one_of(
        st.integers(1, 100), st.integers(-(2**70), 2**70), st.booleans(), st.none()
    ),
    associated=associated_data,
)
def test_encrypt_request_body(
    cy_codec: ModuleType, plaintext: bytes, key_version: int, associated: str
) -> None:
    assert_same(cy_codec, "encrypt_request_body", plaintext, key_version, associated)


@BOUNDED
@given(
    ciphertext=st.one_of(
        ciphertexts, st.binary(max_size=60), st.text(string.printable, max_size=40).map(str.encode)
    ),
    associated=associated_data,
)
def test_decrypt_request_body(cy_codec: ModuleType, ciphertext: bytes, associated: str) -> None:
    assert_same(cy_codec, "decrypt_request_body", ciphertext, associated)


@BOUNDED
@given(body=response_bodies())
def test_parse_responses(cy_codec: ModuleType, body: Any) -> None:
    assert_same(cy_codec, "parse_encrypt_response", body)
    assert_same(cy_codec, "parse_decrypt_response", body)


ODD_ARGUMENTS = [
    None,
    0,
    7,
    -1,
    3.5,
    True,
    b"",
    b"obk2.",
    "",
    "x",
    bytearray(b"x"),
    [],
    {},
    object(),
]


@pytest.mark.parametrize(
    "name",
    [
        "hash_label",
        "parse_key_id",
        "parse_annotations",
        "transit_aad",
        "parse_ciphertext_version",
        "parse_encrypt_response",
        "parse_decrypt_response",
    ],
)
@pytest.mark.parametrize("argument", ODD_ARGUMENTS, ids=repr)
def test_odd_argument_types(cy_codec: ModuleType, name: str, argument: Any) -> None:
    """Out of the documented types, the twins still fail the same way (class and message)."""
    assert_same(cy_codec, name, argument)


def test_request_body_charset_every_byte_everywhere(cy_codec: ModuleType) -> None:
    """Each byte value at each position of a word-sized scan: the plain/escape split is exact."""
    for position in range(17):
        for value in range(256):
            raw = bytearray(b"A" * 17)
            raw[position] = value
            assert_same(cy_codec, "decrypt_request_body", bytes(raw), "QUJD")
            text = raw.decode("latin-1")
            assert_same(cy_codec, "decrypt_request_body", b"vault:v1:AAAA", text)
            assert_same(cy_codec, "encrypt_request_body", b"k", 1, text)


@pytest.mark.parametrize(
    "plaintext",
    # non-canonical trailing bits, excess or odd padding: binascii's strict mode decides these,
    # and its answers differ between CPython releases; the twins must still agree
    ["QR==", "QUI=", "QUJDRB==", "QUJD====", "QUJD=", "QU=", "QU===", "QUJD=QUJD", "Q===", "===="],
)
def test_decrypt_response_base64_edges(cy_codec: ModuleType, plaintext: str) -> None:
    assert_same(cy_codec, "parse_decrypt_response", json.dumps({"data": {"plaintext": plaintext}}))
