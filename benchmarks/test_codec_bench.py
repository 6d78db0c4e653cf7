"""Micro benchmarks of the per-request hot path: pure-Python twin against the compiled one.

Run: ``pytest benchmarks/test_codec_bench.py --benchmark-only``. Each per-request function is one
benchmark group with a ``python`` and a ``cython`` entry, on inputs shaped like production traffic
(a 32-byte DEK seed, the golden identity, real Transit response bodies, batches of 16 and 128).
``docs/benchmarks.md`` describes the committed baseline and the ``--benchmark-compare`` workflow.
"""

from __future__ import annotations

import base64
import importlib
import json
import types
from types import ModuleType
from typing import Any

import pytest

from bao_kms._codec import NO_EXTENSIONS  # the selector's own reading of the variable
from bao_kms._proto import api_pb2

#: the group whose python/cython ratio the regression check holds (check_ratios.py reads it)
VALIDATION_GROUP = "decrypt validation path"


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("python", id="python"),
        pytest.param("cython", id="cython", marks=pytest.mark.compiled),
    ],
)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    if request.param == "python":
        return importlib.import_module("bao_kms._codec_py")
    if NO_EXTENSIONS:
        pytest.skip("BAO_KMS_NO_EXTENSIONS is set")
    return importlib.import_module("bao_kms._fast._codec")


@pytest.fixture(scope="module")
def inputs(codec: ModuleType) -> dict[str, Any]:
    key_id = codec.derive_key_id(
        "openbao-kms-workload-a",
        "workload-a",
        "bao-prod-a",
        "",
        "transit-prod-primary",
        "01HXEXAMPLEKEYLINEAGEID",
        3,
        1715803200,
    )
    expected = codec.build_annotations(
        key_id, "", "transit-prod-primary", "01HXEXAMPLEKEYLINEAGEID", 3, "v0.1.0"
    )
    aad = codec.canonical_aad(
        "openbao-kms-workload-a",
        "workload-a",
        "bao-prod-a",
        "",
        "transit-prod-primary",
        "01HXEXAMPLEKEYLINEAGEID",
        key_id,
        3,
    )
    seed = bytes(range(32))
    ciphertext = b"vault:v3:" + base64.b64encode(bytes(60))
    response = {
        "request_id": "6f1c1f0a-3a5e-4c3e-9d55-0b8a3f0f5b8e",
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": {"plaintext": base64.b64encode(seed).decode()},
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }
    return {
        "key_id": key_id,
        # as the request carries them (a fresh dict) and as KeyVersion holds them (a proxy)
        "annotations": dict(expected),
        "expected": types.MappingProxyType(expected),
        "associated_data": codec.transit_aad(aad),
        "ciphertext": ciphertext,
        "decrypt_response": json.dumps(response).encode(),
        "encrypt_response": json.dumps(
            {**response, "data": {"ciphertext": ciphertext.decode(), "key_version": 3}}
        ).encode(),
        "seed": seed,
    }


def test_match_annotations(benchmark: Any, codec: ModuleType, inputs: dict[str, Any]) -> None:
    benchmark.group = "match_annotations (7-key dict)"
    assert benchmark(codec.match_annotations, inputs["annotations"], inputs["expected"]) is None


def test_match_annotations_protobuf(
    benchmark: Any, codec: ModuleType, inputs: dict[str, Any]
) -> None:
    """The production input: the request's protobuf map container (every read is a lookup)."""
    benchmark.group = "match_annotations (protobuf map, 7 keys)"
    request = api_pb2.DecryptRequest(annotations=inputs["annotations"])
    assert benchmark(codec.match_annotations, request.annotations, inputs["expected"]) is None


def test_check_ciphertext_version(
    benchmark: Any, codec: ModuleType, inputs: dict[str, Any]
) -> None:
    benchmark.group = "check_ciphertext_version"
    assert benchmark(codec.check_ciphertext_version, inputs["ciphertext"], 3) is None


def test_encrypt_request_body(benchmark: Any, codec: ModuleType, inputs: dict[str, Any]) -> None:
    benchmark.group = "encrypt_request_body"
    body = benchmark(codec.encrypt_request_body, inputs["seed"], 3, inputs["associated_data"])
    assert json.loads(body)["key_version"] == 3


def test_decrypt_request_body(benchmark: Any, codec: ModuleType, inputs: dict[str, Any]) -> None:
    benchmark.group = "decrypt_request_body"
    body = benchmark(codec.decrypt_request_body, inputs["ciphertext"], inputs["associated_data"])
    assert json.loads(body)["associated_data"] == inputs["associated_data"]


def test_parse_encrypt_response(benchmark: Any, codec: ModuleType, inputs: dict[str, Any]) -> None:
    benchmark.group = "parse_encrypt_response"
    assert benchmark(codec.parse_encrypt_response, inputs["encrypt_response"])[1] == 3


def test_parse_decrypt_response(benchmark: Any, codec: ModuleType, inputs: dict[str, Any]) -> None:
    benchmark.group = "parse_decrypt_response"
    assert benchmark(codec.parse_decrypt_response, inputs["decrypt_response"]) == bytes(range(32))


def test_parse_key_id(benchmark: Any, codec: ModuleType, inputs: dict[str, Any]) -> None:
    benchmark.group = "parse_key_id"
    assert len(benchmark(codec.parse_key_id, inputs["key_id"])) == 32


def _batch(inputs: dict[str, Any], size: int) -> list[tuple[bytes, str]]:
    base = inputs["ciphertext"][:-8]
    return [(base + b"%08d" % n, inputs["associated_data"]) for n in range(size)]


@pytest.mark.parametrize("size", [16, 128])
def test_decrypt_batch_request_body(
    benchmark: Any, codec: ModuleType, inputs: dict[str, Any], size: int
) -> None:
    benchmark.group = f"decrypt_batch_request_body ({size} items)"
    body = benchmark(codec.decrypt_batch_request_body, _batch(inputs, size))
    assert len(json.loads(body)["batch_input"]) == size


@pytest.mark.parametrize("size", [16, 128])
def test_parse_decrypt_batch_response(
    benchmark: Any, codec: ModuleType, inputs: dict[str, Any], size: int
) -> None:
    """A real OpenBao 2.7 batch answer: each result carries an empty ``reference``."""
    benchmark.group = f"parse_decrypt_batch_response ({size} items)"
    plaintext = json.loads(inputs["decrypt_response"])["data"]["plaintext"]
    results = [{"plaintext": plaintext, "reference": ""}] * size
    body = json.dumps({"request_id": "x", "data": {"batch_results": results}}).encode()
    assert benchmark(codec.parse_decrypt_batch_response, body, size) == [bytes(range(32))] * size


def test_decrypt_validation_path(benchmark: Any, codec: ModuleType, inputs: dict[str, Any]) -> None:
    """Everything the codec does for one Decrypt before OpenBao answers, on the request's own
    protobuf map: key_id parse, annotation match, ciphertext version check, the request body.
    The compiled/pure ratio of this group is the machine-independent number
    ``benchmarks/check_ratios.py`` holds against the baseline."""
    benchmark.group = VALIDATION_GROUP
    request = api_pb2.DecryptRequest(
        ciphertext=inputs["ciphertext"], key_id=inputs["key_id"], annotations=inputs["annotations"]
    )
    expected, aad = inputs["expected"], inputs["associated_data"]

    def validate() -> bytes:
        codec.parse_key_id(request.key_id)
        codec.match_annotations(request.annotations, expected)
        codec.check_ciphertext_version(request.ciphertext, 3)
        return codec.decrypt_request_body(request.ciphertext, aad)

    assert benchmark(validate).startswith(b'{"ciphertext":')
