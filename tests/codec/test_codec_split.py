"""Which half of the codec is compiled: the per-request functions, and nothing else.

The ``.pyx`` re-implements only what every Encrypt or Decrypt runs and imports the rest from the
spec (STYLE habit 11: cold code is written once). These tests make the split explicit, so a
builder copied back into the ``.pyx``, a hot function left to the spec, a fast path that hands
valid traffic to the spec, or a ``.pyi`` out of step with the ``.pyx`` fails here.
"""

from __future__ import annotations

import ast
import base64
import inspect
import sys
import types
from collections.abc import Callable
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bao_kms._fast
from bao_kms import _codec
from bao_kms._proto import api_pb2

#: what runs per request; everything else in ``__all__`` runs at most once per key version
COMPILED = frozenset(
    {
        "parse_key_id",
        "parse_annotations",
        "match_annotations",
        "parse_ciphertext_version",
        "check_ciphertext_version",
        "encrypt_request_body",
        "decrypt_request_body",
        "parse_encrypt_response",
        "parse_decrypt_response",
        "decrypt_batch_request_body",
        "parse_decrypt_batch_response",
    }
)

STUB = Path(bao_kms._fast.__file__).with_name("_codec.pyi")


def cold_names(py_codec: ModuleType) -> list[str]:
    return [name for name in py_codec.__all__ if name not in COMPILED]


@pytest.fixture(scope="module", params=["", "team-a"], ids=["no-namespace", "namespace"])
def traffic(request: pytest.FixtureRequest, py_codec: ModuleType) -> list[tuple[str, tuple]]:
    """Each compiled function with the valid arguments production traffic gives it."""
    namespace = request.param
    key_id = py_codec.derive_key_id(
        "openbao-kms-workload-a", "workload-a", "bao-prod-a", namespace, "transit-prod-primary",
        "01HXEXAMPLEKEYLINEAGEID", 3, 1715803200,
    )  # fmt: skip
    expected = py_codec.build_annotations(
        key_id, namespace, "transit-prod-primary", "01HXEXAMPLEKEYLINEAGEID", 3, "v0.1.0"
    )
    aad = py_codec.canonical_aad(
        "openbao-kms-workload-a", "workload-a", "bao-prod-a", namespace, "transit-prod-primary",
        "01HXEXAMPLEKEYLINEAGEID", key_id, 3,
    )  # fmt: skip
    associated_data = py_codec.transit_aad(aad)
    container = api_pb2.DecryptRequest(annotations=expected).annotations
    held = types.MappingProxyType(expected)  # as KeyVersion holds them
    ciphertext = b"vault:v3:" + base64.b64encode(bytes(range(60)))
    seed = bytes(range(32))
    encrypted = {"data": {"ciphertext": ciphertext.decode(), "key_version": 3}}
    decrypted = {"data": {"plaintext": base64.b64encode(seed).decode()}}
    batch = [(ciphertext, associated_data), (ciphertext[:-4] + b"AAAA", associated_data)]
    plaintext = {"plaintext": base64.b64encode(seed).decode(), "reference": ""}
    batch_decrypted = {"data": {"batch_results": [plaintext, plaintext]}}
    return [
        ("parse_key_id", (key_id,)),
        ("parse_annotations", (container,)),
        ("parse_annotations", (dict(expected),)),
        ("match_annotations", (container, held)),
        ("match_annotations", (dict(expected), held)),
        ("parse_ciphertext_version", (ciphertext,)),
        ("check_ciphertext_version", (ciphertext, 3)),
        ("encrypt_request_body", (seed, 3, associated_data)),
        ("decrypt_request_body", (ciphertext, associated_data)),
        ("parse_encrypt_response", (orjson.dumps(encrypted),)),
        ("parse_decrypt_response", (orjson.dumps(decrypted),)),
        ("decrypt_batch_request_body", (batch,)),
        ("parse_decrypt_batch_response", (orjson.dumps(batch_decrypted), 2)),
    ]


def test_traffic_covers_every_compiled_function(traffic: list[tuple[str, tuple]]) -> None:
    assert {name for name, _ in traffic} == COMPILED


@pytest.mark.compiled
def test_cold_names_are_the_spec_itself(py_codec: ModuleType, cy_codec: ModuleType) -> None:
    """Constants and once-per-key-version builders are imported from the spec, never copied."""
    assert cold_names(py_codec)
    copied = [
        name
        for name in cold_names(py_codec)
        if getattr(cy_codec, name) is not getattr(py_codec, name)
    ]
    assert copied == []


def test_selector_exports_the_spec_for_cold_names(py_codec: ModuleType) -> None:
    """Whichever twin it picked, the selector hands callers the spec's own cold objects."""
    assert [
        name
        for name in cold_names(py_codec)
        if getattr(_codec, name) is not getattr(py_codec, name)
    ] == []


@pytest.mark.compiled
def test_hot_functions_are_compiled(py_codec: ModuleType, cy_codec: ModuleType) -> None:
    for name in sorted(COMPILED):
        function = getattr(cy_codec, name)
        assert function is not getattr(py_codec, name), name
        assert not inspect.isfunction(function), name  # no Python bytecode behind it
        assert function.__module__ == cy_codec.__name__, name


def spec_calls(py_codec: ModuleType, function: Callable[..., Any], *args: Any) -> tuple:
    """(what *function* returned, the spec functions it called on the way)."""
    reached: list[str] = []

    def watch(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename == py_codec.__file__:
            reached.append(frame.f_code.co_name)

    sys.setprofile(watch)
    try:
        result = function(*args)
    finally:
        sys.setprofile(None)
    return result, reached


@pytest.mark.compiled
def test_valid_traffic_never_reaches_the_spec(
    py_codec: ModuleType, cy_codec: ModuleType, traffic: list[tuple[str, tuple]]
) -> None:
    """The compiled fast paths accept production traffic themselves. Parity alone cannot see a
    fast path that declines everything: the spec it then defers to gives the right answer."""
    for name, args in traffic:
        expected = getattr(py_codec, name)(*args)
        assert spec_calls(py_codec, getattr(cy_codec, name), *args) == (expected, []), name


@pytest.mark.compiled
@settings(max_examples=200, deadline=None)
@given(
    digest=st.binary(min_size=32, max_size=32),
    plaintext=st.binary(min_size=1, max_size=67),  # every base64 tail: 0, 1 and 2 "="
    version=st.integers(1, 10**10 - 1),
)
def test_valid_random_values_never_reach_the_spec(
    py_codec: ModuleType, cy_codec: ModuleType, digest: bytes, plaintext: bytes, version: int
) -> None:
    key_id = py_codec.KEY_ID_PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    ciphertext = f"vault:v{version}:".encode() + base64.b64encode(plaintext)
    encrypted = {"data": {"ciphertext": ciphertext.decode(), "key_version": version}}
    decrypted = {"data": {"plaintext": base64.b64encode(plaintext).decode()}}
    calls = [
        ("parse_key_id", (key_id,)),
        ("check_ciphertext_version", (ciphertext, version)),
        ("encrypt_request_body", (plaintext, version, "QUJD")),
        ("decrypt_request_body", (ciphertext, "QUJD")),
        ("parse_encrypt_response", (orjson.dumps(encrypted),)),
        ("parse_decrypt_response", (orjson.dumps(decrypted),)),
    ]
    for name, args in calls:
        expected = getattr(py_codec, name)(*args)
        assert spec_calls(py_codec, getattr(cy_codec, name), *args) == (expected, []), name


def test_stub_is_in_step_with_the_split(py_codec: ModuleType) -> None:
    """The ``.pyi`` declares the compiled functions and re-exports the rest from the spec."""
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    re_exported = {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "bao_kms._codec_py"
        for alias in node.names
        if alias.asname == alias.name
    }
    assert defined == COMPILED
    assert re_exported == {"__all__", *cold_names(py_codec)}
