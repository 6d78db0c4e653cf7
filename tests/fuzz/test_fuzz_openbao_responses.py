"""OpenBao answers, random and mutated, through the real TransitClient over HTTP.

The fake OpenBao (:mod:`_support.fake_openbao`) answers each call with a generated status and
body: well-formed Transit answers with one to three JSON mutations (fields deleted, retyped,
renamed, base64 damaged, huge, unicode), random JSON, truncated JSON and random bytes, under
2xx, 3xx, 4xx and 5xx statuses. Every Transit call the provider makes is driven: encrypt,
decrypt, batch decrypt, key metadata, mount config and health.

Whatever comes back, the client either returns exactly what the body says (the ciphertext of
the version asked for, the plaintext the body's strict base64 decodes to, the key fields) or
raises one of the provider's own errors (:class:`~bao_kms.errors.KmsError`) whose message
quotes nothing of the answer: every generated string carries a marker that must not appear.
Never another exception, never bytes the body did not carry. 1xx statuses are left out: they
carry no body, and what follows them on a keep-alive connection tests http.client, not us.

``BAO_KMS_FUZZ_EXAMPLES`` sets the examples per operation (default 60); for the long run::

    BAO_KMS_FUZZ_EXAMPLES=10000 python -m pytest -q -s tests/fuzz/test_fuzz_openbao_responses.py
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support.document_paths import key_paths
from _support.fake_openbao import FakeBao, Reply
from _support.leaks import SECRETS, TOKEN, assert_clean
from bao_kms.errors import KmsError
from bao_kms.openbao import KeyMetadata, TokenFileAuth, TransitClient, Transport, make_pool
from bao_kms.openbao.breaker import CircuitBreaker

EXAMPLES = int(os.environ.get("BAO_KMS_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
OUTCOMES: Counter[str] = Counter()
MARKER = "Qwyxolotl"
VERSION = 3
AAD = base64.b64encode(b'{"aad_version":"v1"}').decode()
CIPHERTEXT = b"vault:v3:" + base64.b64encode(bytes(range(60)))

pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 10))


def _b64(rng: random.Random, size: int) -> str:
    # bytes from hypothesis's seeded Random: a failing case replays and shrinks
    return base64.b64encode(rng.randbytes(size)).decode()


#: well-formed answers, as OpenBao 2.7 gives them, per operation
TEMPLATES: dict[str, Callable[[random.Random], Any]] = {
    "encrypt": lambda rng: {
        "request_id": "r",
        "data": {"ciphertext": f"vault:v{VERSION}:{_b64(rng, 60)}", "key_version": VERSION},
    },
    "decrypt": lambda rng: {"request_id": "r", "data": {"plaintext": _b64(rng, 32)}},
    "decrypt_batch": lambda rng: {
        "data": {
            "batch_results": [
                {"plaintext": _b64(rng, 32)},
                {"error": "cipher: message authentication failed"},
                {"plaintext": _b64(rng, 32)},
            ]
        }
    },
    "read_key": lambda rng: {
        "data": {
            "type": "aes256-gcm96",
            "derived": False,
            "exportable": False,
            "allow_plaintext_backup": False,
            "deletion_allowed": False,
            "soft_deleted": False,
            "latest_version": 2,
            "min_decryption_version": 1,
            "min_encryption_version": 0,
            "min_available_version": 0,
            "keys": {"1": 1795753413, "2": 1795753499},
        }
    },
    "read_keys_config": lambda rng: {"data": {"disable_upsert": True}},
    "health": lambda rng: {
        "initialized": True,
        "sealed": False,
        "standby": False,
        "version": "2.7.2",
    },
}
BATCH_ITEMS = 3


# --- strategies ----------------------------------------------------------------------------------

marked_text = st.one_of(
    st.text(max_size=16).map(lambda t: t + MARKER),
    st.sampled_from(
        [
            "vault:v3:%s",
            "vault:v%s:AAAA",
            "%s==",
            "Vault is sealed %s",
            "message authentication failed %s",
            "invalid ciphertext %s",
        ]
    ).map(lambda f: f % MARKER),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=False),
    marked_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _damaged_base64(value: str, draw: st.DrawFn) -> str:
    """A base64 string with a character changed, padding added or removed, or junk added."""
    action = draw(st.sampled_from(["flip", "pad", "unpad", "space", "unicode", "cut", "empty"]))
    if action == "flip" and value:
        at = draw(st.integers(0, len(value) - 1))
        return value[:at] + draw(st.sampled_from(list("!-_=.*é\n"))) + value[at + 1 :]
    if action == "pad":
        return value + draw(st.sampled_from(["=", "==", "===", "=A"]))
    if action == "unpad":
        return value.rstrip("=")
    if action == "space":
        return value[:4] + " " + value[4:]
    if action == "unicode":
        return value + "\u0661"
    if action == "cut":
        return value[: draw(st.integers(0, max(0, len(value) - 1)))]
    return ""


@st.composite
def mutated(draw: st.DrawFn, operation: str) -> Any:
    """A well-formed answer for *operation* with one to three mutations."""
    document = TEMPLATES[operation](draw(st.randoms(use_true_random=False)))
    for _ in range(draw(st.integers(1, 3))):
        paths = key_paths(document)
        if not paths:
            return draw(json_values)
        *parents, last = draw(st.sampled_from(paths))
        node = document
        for part in parents:
            node = node[part]
        value = node[last]
        action = draw(st.sampled_from(["set", "delete", "rename", "damage", "wrap", "huge"]))
        if action == "set":
            node[last] = draw(json_values)
        elif action == "delete":
            del node[last]
        elif action == "rename" and isinstance(node, dict):
            node[f"{last}{MARKER}"] = node.pop(last)
        elif action == "damage" and isinstance(value, str):
            node[last] = _damaged_base64(value, draw)
        elif action == "damage" and isinstance(value, int) and not isinstance(value, bool):
            node[last] = draw(st.sampled_from([0, -1, 2**63, value + 1, str(value), float(value)]))
        elif action == "wrap":
            node[last] = [value]
        elif action == "huge":
            node[last] = MARKER * draw(st.integers(1000, 20_000))
    return document


def _dumps(value: Any) -> bytes:
    # the standard library's encoder: it writes integers past 64 bits, which orjson refuses
    # to write but OpenBao (Go's encoder) can send
    return json.dumps(value).encode()


def bodies(operation: str) -> st.SearchStrategy[bytes]:
    well_formed = st.randoms(use_true_random=False).map(
        lambda rng: orjson.dumps(TEMPLATES[operation](rng))
    )
    return st.one_of(
        well_formed,
        mutated(operation).map(_dumps),
        json_values.map(_dumps),
        st.tuples(well_formed, st.integers(0, 200)).map(lambda t: t[0][: t[1]]),  # truncated
        st.binary(max_size=64),
        st.just(b""),
    )


statuses = st.one_of(
    st.just(200),  # a third of the answers say success: the parsers get the most work
    st.sampled_from(
        [
            200,
            200,
            200,
            200,
            204,
            400,
            400,
            401,
            403,
            404,
            412,
            429,
            500,
            501,
            502,
            503,
            473,
            301,
            307,
        ]
    ),
    st.integers(200, 599),
)


# --- the client under test -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBao]:
    with FakeBao() as server:
        yield server
    if OUTCOMES:
        print("\nOpenBao answer fuzz outcomes:", dict(sorted(OUTCOMES.items())))


@pytest.fixture(scope="module")
def transit(fake: FakeBao, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TransitClient]:
    token_file = Path(tmp_path_factory.mktemp("token")) / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    pool = make_pool(ca_file=None, maxsize=2)
    # a breaker that never opens: every example must reach the parser, not fail fast
    breaker = CircuitBreaker(threshold=10**9)
    transport = Transport([fake.address], TokenFileAuth(token_file), pool=pool, breaker=breaker)
    yield TransitClient(transport, "transit", "kms")
    pool.clear()


def _strict_base64(text: Any) -> bytes | None:
    if not isinstance(text, str) or not text.isascii():
        return None
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except binascii.Error:
        return None


def _data(body: bytes) -> Any:
    return orjson.loads(body)["data"]


def _check_encrypt(answer: Any, body: bytes) -> None:
    data = _data(body)
    assert answer == (data["ciphertext"].encode("ascii"))
    assert data["key_version"] == VERSION and answer.startswith(f"vault:v{VERSION}:".encode())


def _check_decrypt(answer: Any, body: bytes) -> None:
    expected = _strict_base64(_data(body)["plaintext"])
    assert expected is not None and answer == expected, "a plaintext the body does not carry"


def _check_batch(answer: Any, body: bytes) -> None:
    results = _data(body)["batch_results"]
    assert isinstance(answer, list) and len(answer) == len(results) == BATCH_ITEMS
    for outcome, result in zip(answer, results, strict=True):
        if isinstance(outcome, bytes):
            assert result.get("error") is None
            assert outcome == _strict_base64(result["plaintext"])
        else:
            assert isinstance(outcome, KmsError) and result.get("error")
            assert_clean(outcome, (*SECRETS, MARKER))


def _check_key(answer: Any, body: bytes) -> None:
    data = _data(body)
    assert isinstance(answer, KeyMetadata)
    assert answer.latest_version == data["latest_version"] and answer.type == data["type"]
    assert dict(answer.versions) == {int(k): v for k, v in data["keys"].items()}


def _check_config(answer: Any, body: bytes) -> None:
    assert answer is _data(body)["disable_upsert"]


def _check_health(answer: Any, body: bytes) -> None:
    flags = orjson.loads(body)
    expected = (
        "uninitialized"
        if not flags["initialized"]
        else "sealed"
        if flags["sealed"]
        else "standby"
        if flags["standby"]
        else "ok"
    )
    assert answer == expected


OPERATIONS: dict[str, tuple[Callable[[TransitClient], Any], Callable[[Any, bytes], None]]] = {
    "encrypt": (lambda t: t.encrypt(b"k" * 32, VERSION, AAD), _check_encrypt),
    "decrypt": (lambda t: t.decrypt(CIPHERTEXT, AAD), _check_decrypt),
    "decrypt_batch": (lambda t: t.decrypt_batch([(CIPHERTEXT, AAD)] * BATCH_ITEMS), _check_batch),
    "read_key": (lambda t: t.read_key(), _check_key),
    "read_keys_config": (lambda t: t.read_keys_config(), _check_config),
    "health": (lambda t: t.health(), _check_health),
}
#: statuses each operation reads like a 200 (batch: per-item results; health: states)
ANSWERED = {"decrypt_batch": {400}, "health": {429, 472, 473, 501, 503}}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
@FUZZ
@given(data=st.data())
def test_any_answer_is_parsed_exactly_or_refused_with_a_provider_error(
    fake: FakeBao, transit: TransitClient, operation: str, data: st.DataObject
) -> None:
    status, body = data.draw(statuses, "status"), data.draw(bodies(operation), "body")
    call, check = OPERATIONS[operation]
    fake.requests.clear()
    fake.reply(Reply(status=status, body=body))
    try:
        answer = call(transit)
    except KmsError as error:
        assert_clean(error, (*SECRETS, MARKER))
        OUTCOMES[f"{operation} {type(error).__name__}"] += 1
        return
    assert 200 <= status < 300 or status in ANSWERED.get(operation, ()), status
    check(answer, body)
    OUTCOMES[f"{operation} returned"] += 1


def test_an_answer_past_the_size_cap_is_refused_unread(
    fake: FakeBao, transit: TransitClient
) -> None:
    huge = orjson.dumps({"data": {"plaintext": "A" * (2 * 1024 * 1024)}})
    fake.reply(Reply(status=200, body=huge))
    with pytest.raises(KmsError) as info:
        transit.decrypt(CIPHERTEXT, AAD)
    assert_clean(info.value, (*SECRETS, MARKER))


def test_the_pool_is_still_usable_after_the_fuzzing(fake: FakeBao, transit: TransitClient) -> None:
    """No connection is left half-read: a well-formed answer still parses."""
    body = orjson.dumps(TEMPLATES["decrypt"](random.Random(0)))
    fake.reply(Reply(status=200, body=body))
    assert transit.decrypt(CIPHERTEXT, AAD) == base64.b64decode(_data(body)["plaintext"])
