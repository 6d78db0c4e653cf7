"""Well-formed messages with hostile *contents*, through the servicer: the right code every time.

``test_fuzz_raw_requests.py`` fuzzes the bytes on the wire; this module fuzzes what a message
that parses may say. Decrypt requests start from a genuine one (for the active, a retired, a
just-published or a foreign key version) and get one to four mutations: key_ids random, one
character off, non-canonical, unicode, 1024 and 1025 bytes; annotation maps with keys dropped,
added or renamed, values damaged, plugin-version at 64 and 65 characters, totals at 32768 and
32769 bytes; ciphertexts of other versions, damaged, at and past 1024 bytes; uids at 256 and
257 bytes. Encrypt requests have plaintexts and uids at and past their limits.

An oracle written from DESIGN §4 and §5 (not from the codec) says what must happen: which
field's limit is hit first, when the key_id is malformed, when OpenBao may be asked (Transit
only for a known version with matching annotations and a ciphertext of that version; a key
metadata refresh only for a well-formed unknown key_id whose annotations agree with it), and
that OK carries exactly the plaintext Transit gave. The answer is never INTERNAL. Each twin of
the hot path serves a run (the compiled leg is marked ``compiled``).

``BAO_KMS_FUZZ_EXAMPLES`` sets the examples per test (default 100); for the long run::

    BAO_KMS_FUZZ_EXAMPLES=10000 python -m pytest -q -s tests/fuzz/test_fuzz_requests_semantic.py
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import os
import re
from collections import Counter
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support.kms_requests import (
    KEY_ID_HASH,
    PLUGIN_VERSION,
    Monitor,
    Transit,
    World,
    decrypt_requests,
    encrypt_requests,
    key_id_of,
)
from bao_kms._proto import api_pb2
from bao_kms.api import service
from bao_kms.api.service import MAX_PLAINTEXT, KeyManagementServicer, StatusView
from bao_kms.identity import Identity, KeyVersion
from bao_kms.openbao.protocols import TransitCipher

EXAMPLES = int(os.environ.get("BAO_KMS_FUZZ_EXAMPLES", "100"))
NO_EXTENSIONS = os.environ.get("BAO_KMS_NO_EXTENSIONS", "") not in ("", "0")
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
OUTCOMES: Counter[str] = Counter()
Code = grpc.StatusCode

pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 20))


def _import_compiled() -> ModuleType:
    if NO_EXTENSIONS:
        pytest.skip("BAO_KMS_NO_EXTENSIONS is set: pure-Python leg")
    return importlib.import_module("bao_kms._fast._codec")  # an ImportError fails, never skips


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("python", id="python"),
        pytest.param("cython", id="cython", marks=pytest.mark.compiled),
    ],
)
def codec(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The twin the servicer's hot path runs on for this module's tests."""
    twin = (
        importlib.import_module("bao_kms._codec_py")
        if request.param == "python"
        else _import_compiled()
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service, "_codec", twin)
        yield twin


@pytest.fixture(scope="module")
def outcomes() -> Iterator[Counter[str]]:
    yield OUTCOMES
    if OUTCOMES:
        print("\nsemantic request fuzz outcomes:", dict(sorted(OUTCOMES.items())))


@pytest.fixture(scope="module", params=["", "team-a"], ids=["no-namespace", "namespace"])
def world(request: pytest.FixtureRequest, codec: ModuleType, outcomes: Counter[str]) -> World:
    identity = Identity("provider", "cluster", "instance", request.param, "mount", "lineage")
    v1, v2, v3 = (identity.key_version(n, 1_700_000_000 + n) for n in (1, 2, 3))
    other = Identity("provider", "other-cluster", "instance", request.param, "mount", "lineage")
    stranger = other.key_version(2, 1_700_000_002)
    return World(versions={v1.key_id: v1, v2.key_id: v2}, active=v2, fresh=v3, stranger=stranger)


@pytest.fixture(scope="module")
def servicer(world: World) -> KeyManagementServicer:
    monitor: StatusView = Monitor(world)  # mypy: the fakes have the protocols' signatures
    transit: TransitCipher = Transit(world)
    return KeyManagementServicer(monitor, transit, clock=lambda: 100.0)


class Aborted(Exception):
    pass


class Context:
    """The slice of grpc.ServicerContext the servicer uses."""

    def __init__(self) -> None:
        self.code: Code = Code.OK
        self.details = ""

    def time_remaining(self) -> float:
        return 3.0  # kube-apiserver's timeout

    def abort(self, code: Code, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted


def call(method: Any, request: Any) -> tuple[Code, str, Any]:
    """*method* as the server calls it, with the request's bytes: (code, details, answer)."""
    context = Context()
    try:
        answer = method(request.SerializeToString(), context)
    except Aborted:
        return context.code, context.details, None
    return Code.OK, "", answer


# --- the oracle ----------------------------------------------------------------------------------

_CIPHERTEXT_RE = re.compile(rb"vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})")
_KEY_ID_RE = re.compile(r"obk2\.[A-Za-z0-9_-]{43}")


def _size(value: str | bytes) -> int:
    return len(value.encode() if isinstance(value, str) else value)


def limit_problem(request: api_pb2.DecryptRequest) -> str | None:
    """The first size rule the request breaks, in the order DESIGN §4 checks them."""
    annotations = sum(_size(k) + len(v) for k, v in request.annotations.items())
    for broken, message in (
        (not request.ciphertext, "ciphertext is empty"),
        (len(request.ciphertext) > 1024, "ciphertext is longer than 1024 bytes"),
        (not request.key_id, "key_id is empty"),
        (_size(request.key_id) > 1024, "key_id is longer than 1024 bytes"),
        (_size(request.uid) > 256, "uid is longer than 256 bytes"),
        (annotations > 32768, "annotations are larger than 32768 bytes"),
    ):
        if broken:
            return message
    return None


def well_formed_key_id(key_id: str) -> bool:
    if not _KEY_ID_RE.fullmatch(key_id):
        return False
    digest = base64.urlsafe_b64decode(key_id[5:] + "=")
    return len(digest) == 32 and key_id_of(digest) == key_id  # one spelling per digest


def ciphertext_version(ciphertext: bytes) -> int | None:
    match = _CIPHERTEXT_RE.fullmatch(ciphertext)
    if match is None or len(match.group(2)) % 4:
        return None
    return int(match.group(1))


def annotations_match(given: dict[str, bytes], expected: Any) -> bool:
    """Exactly the version's annotations; plugin-version present and sane but not compared."""
    if set(given) != set(expected):
        return False
    try:
        plugin = given[PLUGIN_VERSION].decode("utf-8")
    except UnicodeDecodeError:
        return False
    if not (0 < len(plugin) <= 64 and plugin.isprintable()):
        return False
    return all(given[k] == v for k, v in expected.items() if k != PLUGIN_VERSION)


def target_version(world: World, key_id: str) -> KeyVersion | None:
    """The version a request may be served from: a known one, or the one a refresh finds."""
    known = world.versions.get(key_id)
    return known or (world.fresh if key_id == world.fresh.key_id else None)


def _hash(value: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(value.encode()).digest()).rstrip(b"=")


def assert_nothing_quoted(details: str, request: Any) -> None:
    """Messages say what kind of thing is wrong, never what the request carried."""
    for value in (getattr(request, "key_id", ""), getattr(request, "uid", "")):
        assert len(value) < 8 or value not in details
    for value in [
        getattr(request, "ciphertext", b""),
        *getattr(request, "annotations", {}).values(),
    ]:
        text = bytes(value).decode("utf-8", "replace")
        assert len(text) < 8 or text not in details


# --- the properties ------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_decrypt_answers_the_right_code_and_asks_openbao_only_when_it_must(
    servicer: KeyManagementServicer, world: World, data: st.DataObject
) -> None:
    request = data.draw(decrypt_requests(world))
    annotations = dict(request.annotations)
    before = (world.lookups, world.decrypts)
    code, details, answer = call(servicer.Decrypt, request)
    looked_up, decrypted = world.lookups - before[0], world.decrypts - before[1]
    OUTCOMES[f"Decrypt {code.name}"] += 1
    assert code in (Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND), (code, details)
    assert_nothing_quoted(details, request)

    problem = limit_problem(request)
    if problem is not None:
        assert (code, details, looked_up, decrypted) == (Code.INVALID_ARGUMENT, problem, 0, 0)
        return
    if not well_formed_key_id(request.key_id):
        assert (code, looked_up, decrypted) == (Code.INVALID_ARGUMENT, 0, 0), details
        assert "key_id" in details
        return
    version = target_version(world, request.key_id)
    servable = (
        version is not None
        and annotations_match(annotations, version.annotations)
        and ciphertext_version(request.ciphertext) == version.version
    )
    # a metadata refresh only for a well-formed unknown key_id whose annotations agree with it
    if looked_up:
        assert looked_up == 1 and request.key_id not in world.versions
        assert annotations.get(KEY_ID_HASH) == _hash(request.key_id)
        key_version = annotations.get("transit-key-version.kms.openbao.org", b"").decode(
            "utf-8", "replace"
        )
        assert str(ciphertext_version(request.ciphertext)) == key_version
    if version is world.fresh and servable:
        assert looked_up == 1, "a version just published must be found by one refresh"
    # Transit exactly when the request names a version it matches; never before that
    assert decrypted == (1 if servable else 0), (servable, code, details)
    if code is Code.NOT_FOUND:
        assert version is None and looked_up == 1 and decrypted == 0
    if code is Code.OK:
        assert version is not None
        sealed = world.sealed.get((request.ciphertext, version.associated_data))
        assert sealed is not None and answer.plaintext == sealed, "a plaintext Transit did not give"
    elif servable:  # it reached Transit, which refused a ciphertext it did not seal
        assert code is Code.INVALID_ARGUMENT
        assert (request.ciphertext, version.associated_data) not in world.sealed


@FUZZ
@given(request=encrypt_requests())
def test_encrypt_answers_the_right_code_and_asks_transit_only_for_valid_input(
    servicer: KeyManagementServicer, world: World, request: api_pb2.EncryptRequest
) -> None:
    before = world.encrypts
    code, details, answer = call(servicer.Encrypt, request)
    OUTCOMES[f"Encrypt {code.name}"] += 1
    problem = (
        "plaintext is empty"
        if not request.plaintext
        else f"plaintext is longer than {MAX_PLAINTEXT} bytes"
        if len(request.plaintext) > MAX_PLAINTEXT
        else "uid is longer than 256 bytes"
        if _size(request.uid) > 256
        else None
    )
    if problem is not None:
        assert (code, details, world.encrypts) == (Code.INVALID_ARGUMENT, problem, before)
        return
    assert code is Code.OK and world.encrypts == before + 1, (code, details)
    active = world.active
    assert answer.key_id == active.key_id and dict(answer.annotations) == dict(active.annotations)
    assert 0 < len(answer.ciphertext) <= 1024
    assert world.sealed[(answer.ciphertext, active.associated_data)] == request.plaintext


def test_status_answers_from_memory(servicer: KeyManagementServicer, world: World) -> None:
    before = world.openbao_calls
    code, _, answer = call(servicer.Status, api_pb2.StatusRequest())
    assert code is Code.OK and (answer.version, answer.healthz) == ("v2", "ok")
    assert answer.key_id == world.active.key_id and world.openbao_calls == before
