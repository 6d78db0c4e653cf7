"""Transit ``batch_input``: the batch body builder and the batch response parser, both twins.

Behaviour on bodies OpenBao 2.7.2 really answered (a batch where every item decrypts, HTTP 200;
one where some fail, HTTP 400 with every item's result), then parity on randomized inputs: the
compiled twin must return or raise exactly what the spec does.
"""

from __future__ import annotations

import base64
import string
from types import ModuleType
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bao_kms import _codec_py as spec
from bao_kms.errors import OpenBaoBadResponse

BOUNDED = settings(max_examples=300, deadline=None)

AAD = base64.b64encode(b'{"aad_version":"v1","key_version":"1"}').decode()
CIPHERTEXT = b"vault:v1:SpZrMRIOc9FFzbVgSo4WUJOyLiKvukM3sswvhAhxHG9msLt5rug+7ejgTTWDQBoeWXQJD0yW"
SEEDS = [bytes(range(32)), bytes(range(32, 64)), bytes(range(64, 96))]


def _result(seed: bytes) -> dict[str, str]:
    return {"plaintext": base64.b64encode(seed).decode(), "reference": ""}


def _answer(results: list[Any]) -> bytes:
    # the envelope OpenBao 2.7.2 wraps batch_results in, for a 200 and for a 400 alike
    return orjson.dumps(
        {
            "request_id": "ad991d1b-26a0-b8f7-0286-d4659e38b568",
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": {"batch_results": results},
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
    )


ALL_OK = _answer([_result(seed) for seed in SEEDS])
SOME_FAILED = _answer(
    [
        _result(SEEDS[0]),
        {"plaintext": "", "error": "cipher: message authentication failed", "reference": ""},
        {"plaintext": "", "error": "invalid ciphertext: version is too new", "reference": ""},
    ]
)


# --- behaviour -----------------------------------------------------------------------------------


def test_batch_body_is_orjsons_compact_batch_input(codec: ModuleType) -> None:
    items = [(CIPHERTEXT, AAD), (CIPHERTEXT[:-4] + b"AAAA", "QUJD")]
    body = codec.decrypt_batch_request_body(items)
    assert body == orjson.dumps(
        {"batch_input": [{"ciphertext": c.decode(), "associated_data": a} for c, a in items]}
    )
    assert codec.decrypt_batch_request_body(items[:1]) == (
        b'{"batch_input":[' + codec.decrypt_request_body(CIPHERTEXT, AAD) + b"]}"
    )


def test_batch_body_needs_an_item(codec: ModuleType) -> None:
    with pytest.raises(ValueError, match="at least one item"):
        codec.decrypt_batch_request_body([])


def test_every_item_decrypted(codec: ModuleType) -> None:
    assert codec.parse_decrypt_batch_response(ALL_OK, 3) == SEEDS


def test_each_failed_item_keeps_its_own_error_text(codec: ModuleType) -> None:
    outcomes = codec.parse_decrypt_batch_response(SOME_FAILED, 3)
    assert outcomes == [
        SEEDS[0],
        "cipher: message authentication failed",
        "invalid ciphertext: version is too new",
    ]
    assert [type(outcome) for outcome in outcomes] == [bytes, str, str]


@pytest.mark.parametrize("count", [0, 2, 4])
def test_results_must_match_the_items_one_to_one(codec: ModuleType, count: int) -> None:
    with pytest.raises(OpenBaoBadResponse, match="not one result per item"):
        codec.parse_decrypt_batch_response(ALL_OK, count)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("x", "result is not an object"),
        ({"plaintext": ""}, "no plaintext string"),
        ({"plaintext": "QUJ"}, "plaintext is not base64"),
        ({"plaintext": "", "error": ""}, "unreadable error"),
        ({"plaintext": "", "error": 7}, "unreadable error"),
    ],
)
def test_an_unreadable_result_fails_the_whole_answer(
    codec: ModuleType, result: Any, message: str
) -> None:
    with pytest.raises(OpenBaoBadResponse, match=message):
        codec.parse_decrypt_batch_response(_answer([_result(SEEDS[0]), result]), 2)


def test_a_refusal_of_the_whole_request_is_no_batch_answer(codec: ModuleType) -> None:
    body = b'{"errors":["refused JSON input due to high complexity"]}\n'
    with pytest.raises(OpenBaoBadResponse, match="no data object"):
        codec.parse_decrypt_batch_response(body, 1)


# --- parity --------------------------------------------------------------------------------------


def outcome(func: Any, *args: Any) -> tuple[Any, ...]:
    """What a call did, comparable across twins (types of list members included)."""
    try:
        result = func(*args)
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return ("raised", type(exc), exc.args, exc.__cause__ is None, exc.__suppress_context__)
    if isinstance(result, list):
        return ("list", [(type(item), item) for item in result])
    return ("returned", type(result), result)


def assert_same(cy_codec: ModuleType, name: str, *args: Any) -> None:
    assert outcome(getattr(cy_codec, name), *args) == outcome(getattr(spec, name), *args)


ciphertexts = st.one_of(
    st.binary(min_size=1, max_size=48).map(lambda raw: b"vault:v1:" + base64.b64encode(raw)),
    st.text(string.printable, max_size=30).map(str.encode),
    st.binary(max_size=20),
    st.binary(max_size=8).map(bytearray),
)
associated = st.one_of(
    st.binary(max_size=60).map(lambda raw: base64.b64encode(raw).decode()),
    st.text(max_size=12),
    st.text('"\\<>&\u2028\x01\x7fé', max_size=6),
    st.none(),
)
items = st.one_of(
    st.lists(st.tuples(ciphertexts, associated), max_size=6),
    st.lists(st.tuples(ciphertexts, associated), min_size=1, max_size=3).map(tuple),
    st.lists(st.one_of(st.tuples(ciphertexts), st.lists(ciphertexts, max_size=2)), max_size=2),
)

plaintexts = st.one_of(
    st.binary(min_size=1, max_size=40).map(lambda raw: base64.b64encode(raw).decode()),
    st.text("ABCDabcd0123+/=", max_size=12),
    st.text(max_size=6),
    st.none(),
    st.integers(-(2**63), 2**63 - 1),
)
results = st.one_of(
    st.fixed_dictionaries({"plaintext": plaintexts, "reference": st.just("")}),
    st.fixed_dictionaries(
        {"plaintext": st.just("")},
        optional={"error": st.one_of(st.text(max_size=20), st.none(), st.integers(0, 9))},
    ),
    st.one_of(st.text(max_size=4), st.none(), st.lists(st.integers(0, 9), max_size=2)),
)


@st.composite
def batch_answers(draw: st.DrawFn) -> tuple[Any, Any]:
    found = draw(st.lists(results, max_size=5))
    count = draw(st.one_of(st.just(len(found)), st.integers(-1, 6), st.booleans(), st.floats()))
    shape = draw(st.sampled_from(["answer", "bare data", "no data", "not json", "raw"]))
    if shape == "answer":
        body: Any = _answer(found)
    elif shape == "bare data":
        body = orjson.dumps({"data": {"batch_results": found}})
    elif shape == "no data":
        body = orjson.dumps({"batch_results": found})
    elif shape == "not json":
        body = b"{" + orjson.dumps(found)
    else:
        body = draw(st.one_of(st.binary(max_size=20), st.text(max_size=10), st.none()))
    return body, count


@pytest.mark.compiled
@BOUNDED
@given(batch=items)
def test_batch_body_parity(cy_codec: ModuleType, batch: Any) -> None:
    assert_same(cy_codec, "decrypt_batch_request_body", batch)


@pytest.mark.compiled
@BOUNDED
@given(answer=batch_answers())
def test_batch_answer_parity(cy_codec: ModuleType, answer: tuple[Any, Any]) -> None:
    assert_same(cy_codec, "parse_decrypt_batch_response", *answer)


@pytest.mark.compiled
@pytest.mark.parametrize("argument", [None, 0, b"", "", [], (), {}, [None], [(b"x",)], object()])
def test_odd_batch_arguments(cy_codec: ModuleType, argument: Any) -> None:
    assert_same(cy_codec, "decrypt_batch_request_body", argument)
    assert_same(cy_codec, "parse_decrypt_batch_response", argument, 1)


@pytest.mark.compiled
def test_a_shared_aad_is_checked_once_and_others_each_time(cy_codec: ModuleType) -> None:
    """The compiled builder skips scanning an AAD object it has just found plain: a different
    object after it, plain or not, is still scanned."""
    shared = AAD * 20
    for odd in ['quote"d', "\u2028", None, 7, AAD * 20, shared]:
        assert_same(
            cy_codec, "decrypt_batch_request_body", [(CIPHERTEXT, shared)] * 3 + [(CIPHERTEXT, odd)]
        )
