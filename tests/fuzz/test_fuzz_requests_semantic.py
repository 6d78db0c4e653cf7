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
import binascii
import hashlib
import importlib
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bao_kms._proto import api_pb2
from bao_kms.api import service
from bao_kms.api.service import MAX_PLAINTEXT, KeyManagementServicer, StatusView
from bao_kms.errors import CiphertextAuthenticationFailed, InvalidCiphertext, UnknownKeyId
from bao_kms.identity import Identity, KeyVersion
from bao_kms.openbao.protocols import TransitCipher
from bao_kms.status import Health

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

URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
ANNOTATION_KEYS = [
    "provider.kms.openbao.org",
    "key-id-hash.kms.openbao.org",
    "transit-key-version.kms.openbao.org",
    "transit-mount-hash.kms.openbao.org",
    "transit-key-hash.kms.openbao.org",
    "openbao-namespace-hash.kms.openbao.org",
    "plugin-version.kms.openbao.org",
    "aad-version.kms.openbao.org",
]
PLUGIN_VERSION = "plugin-version.kms.openbao.org"
KEY_ID_HASH = "key-id-hash.kms.openbao.org"


# --- the provider's world: three versions it knows of, a Transit that seals for real ---------


@dataclass
class World:
    """The versions: retired (v1) and active (v2) are known; v3 is published in OpenBao but
    not yet seen, so only a metadata refresh (``lookup``) finds it."""

    versions: dict[str, KeyVersion]
    active: KeyVersion
    fresh: KeyVersion
    #: a version of another cluster's key: well-formed, self-consistent, unknown here
    stranger: KeyVersion
    lookups: int = 0
    #: (ciphertext, AAD) -> plaintext Transit sealed; anything else fails authentication
    sealed: dict[tuple[bytes, str], bytes] = field(default_factory=dict)
    encrypts: int = 0
    decrypts: int = 0

    @property
    def openbao_calls(self) -> int:
        return self.lookups + self.encrypts + self.decrypts


class Monitor:
    def __init__(self, world: World) -> None:
        self.world = world

    def health(self) -> Health:
        return Health(True, (), self.world.active.key_id, 1.0)

    def encrypt_version(self) -> KeyVersion:
        return self.world.active

    def known(self, key_id: str) -> KeyVersion | None:
        return self.world.versions.get(key_id)

    def lookup(self, key_id: str, *, deadline: float | None = None) -> KeyVersion:
        self.world.lookups += 1  # one key metadata read in OpenBao
        if key_id == self.world.fresh.key_id:
            return self.world.fresh
        raise UnknownKeyId("key_id does not name a key version this provider knows")


class Transit:
    """Transit as the provider sees it: a ciphertext opens only under the AAD it was sealed
    with, and a malformed one is refused as OpenBao refuses it."""

    def __init__(self, world: World) -> None:
        self.world = world

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        self.world.encrypts += 1
        body = hashlib.sha256(plaintext + associated_data.encode()).digest()[:12] + plaintext
        ciphertext = f"vault:v{key_version}:".encode() + base64.b64encode(body + bytes(16))
        self.world.sealed[(ciphertext, associated_data)] = plaintext
        return ciphertext

    def decrypt(
        self, ciphertext: bytes, associated_data: str, *, deadline: float | None = None
    ) -> bytes:
        self.world.decrypts += 1
        try:
            sealed = base64.b64decode(ciphertext.rpartition(b":")[2], validate=True)
        except binascii.Error:
            raise InvalidCiphertext("OpenBao refused the ciphertext as malformed") from None
        if len(sealed) < 12 + 16:
            raise InvalidCiphertext("OpenBao refused the ciphertext as malformed")
        plaintext = self.world.sealed.get((ciphertext, associated_data))
        if plaintext is None:
            raise CiphertextAuthenticationFailed("ciphertext failed authentication")
        return plaintext


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


# --- generated requests ----------------------------------------------------------------------


def _text_of_bytes(size: int, wide: bool) -> str:
    """A str of exactly *size* UTF-8 bytes (two-byte characters when *wide*)."""
    return "é" * (size // 2) + "a" * (size % 2) if wide else "a" * size


def _key_id(digest: bytes) -> str:
    return "obk2." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _off_by_one_char(draw: st.DrawFn, value: str) -> str:
    at = draw(st.integers(0, len(value) - 1))
    return value[:at] + draw(st.sampled_from(list(URL_ALPHABET + "=+/. é\0"))) + value[at + 1 :]


@st.composite
def key_ids(draw: st.DrawFn, genuine: str) -> str:
    kind = draw(st.sampled_from(["char", "random-form", "text", "limit", "edit", "empty", "case"]))
    if kind == "char":
        return _off_by_one_char(draw, genuine)
    if kind == "random-form":  # well-formed (mostly), naming no version
        return _key_id(draw(st.binary(min_size=32, max_size=32)))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "limit":
        return _text_of_bytes(draw(st.sampled_from([1023, 1024, 1025, 1026])), draw(st.booleans()))
    if kind == "edit":
        return draw(st.sampled_from([genuine[:-1], genuine + "A", " " + genuine, genuine[::-1]]))
    if kind == "case":
        return genuine.swapcase()
    return ""


annotation_values = st.one_of(
    st.binary(max_size=50),
    st.text(max_size=50).map(str.encode),
    st.sampled_from([b"", b"v1", b"v2", b"0", b"01", b"3", b"4294967296", b"openbao-transit"]),
    st.text(alphabet=URL_ALPHABET, min_size=42, max_size=44).map(str.encode),
)


@st.composite
def annotation_maps(draw: st.DrawFn, genuine: dict[str, bytes]) -> dict[str, bytes]:
    annotations = dict(genuine)
    kind = draw(st.sampled_from(["drop", "set", "add", "rename", "plugin", "total", "swap"]))
    if kind == "drop" and annotations:
        del annotations[draw(st.sampled_from(sorted(annotations)))]
    elif kind == "set":
        annotations[draw(st.sampled_from(ANNOTATION_KEYS))] = draw(annotation_values)
    elif kind == "add":
        annotations[draw(st.text(min_size=1, max_size=30))] = draw(annotation_values)
    elif kind == "rename" and annotations:
        key = draw(st.sampled_from(sorted(annotations)))
        annotations[key.upper() if draw(st.booleans()) else key + "."] = annotations.pop(key)
    elif kind == "plugin":  # required and well-formed, but not compared
        annotations[PLUGIN_VERSION] = draw(
            st.one_of(
                st.text(alphabet="abcv0123456789.-+", min_size=1, max_size=64),
                st.sampled_from(["x" * 64, "x" * 65, "", "v1\n", "v1\x00", "é" * 64]),
            )
        ).encode()
    elif kind == "total":  # an extra entry that brings the total to just under, at or over
        used = sum(len(k.encode()) + len(v) for k, v in annotations.items())
        key = "padding.example.com"
        target = 32768 + draw(st.sampled_from([-1, 0, 1, 2]))
        annotations[key] = b"p" * max(0, target - used - len(key))
    elif kind == "swap":  # a genuine value moved under another key
        first, second = draw(st.permutations(sorted(annotations)))[:2]
        annotations[first], annotations[second] = annotations[second], annotations[first]
    return annotations


@st.composite
def ciphertexts(draw: st.DrawFn, genuine: bytes) -> bytes:
    kind = draw(st.sampled_from(["version", "flip", "size", "random", "empty", "pad", "b64"]))
    if kind == "version":
        return re.sub(
            rb"^vault:v\d+:",
            f"vault:v{draw(st.sampled_from([0, 1, 2, 3, 4, 10**10]))}:".encode(),
            genuine,
        )
    if kind == "flip":
        at = draw(st.integers(0, len(genuine) - 1))
        return genuine[:at] + bytes([genuine[at] ^ draw(st.integers(1, 255))]) + genuine[at + 1 :]
    if kind == "size":  # a shape-valid prefix padded with base64 to just under, at or past 1024
        size = draw(st.sampled_from([1020, 1021, 1023, 1024, 1025, 1028]))
        return (genuine + b"A" * size)[:size]
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=80))
    if kind == "pad":
        return genuine + draw(st.sampled_from([b"=", b"==", b"===", b"\n", b" "]))
    if kind == "b64":
        return genuine.split(b":")[0] + b":v2:" + base64.b64encode(draw(st.binary(max_size=60)))
    return b""


@st.composite
def decrypt_requests(draw: st.DrawFn, world: World) -> api_pb2.DecryptRequest:
    """A genuine Decrypt for one of the versions (or a stranger's), mutated one to four times."""
    version = draw(st.sampled_from([*world.versions.values(), world.fresh, world.stranger]))
    transit = Transit(world)
    plaintext = draw(st.binary(min_size=1, max_size=64))
    ciphertext = transit.encrypt(plaintext, version.version, version.associated_data)
    world.encrypts -= 1  # made by the test, not the servicer
    fields: dict[str, Any] = {
        "ciphertext": ciphertext,
        "key_id": version.key_id,
        "annotations": dict(version.annotations),
        "uid": "",
    }
    for _ in range(draw(st.integers(0, 4))):
        target = draw(st.sampled_from(["ciphertext", "key_id", "annotations", "uid", "hash"]))
        if target == "ciphertext":
            fields["ciphertext"] = draw(ciphertexts(fields["ciphertext"] or ciphertext))
        elif target == "key_id":
            fields["key_id"] = draw(key_ids(version.key_id))
        elif target == "annotations":
            fields["annotations"] = draw(annotation_maps(fields["annotations"]))
        elif target == "uid":
            size = draw(st.sampled_from([0, 36, 255, 256, 257, 300]))
            fields["uid"] = _text_of_bytes(size, draw(st.booleans()))
        elif fields["key_id"]:  # annotations that agree with whatever key_id is there now
            digest = hashlib.sha256(fields["key_id"].encode()).digest()
            fields["annotations"][KEY_ID_HASH] = base64.urlsafe_b64encode(digest).rstrip(b"=")
    return api_pb2.DecryptRequest(**fields)


@st.composite
def encrypt_requests(draw: st.DrawFn) -> api_pb2.EncryptRequest:
    size = draw(
        st.sampled_from([0, 1, 32, 32, MAX_PLAINTEXT - 1, MAX_PLAINTEXT, MAX_PLAINTEXT + 1, 4096])
    )
    uid = _text_of_bytes(draw(st.sampled_from([0, 36, 256, 257])), draw(st.booleans()))
    return api_pb2.EncryptRequest(plaintext=draw(st.binary(min_size=size, max_size=size)), uid=uid)


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
    return len(digest) == 32 and _key_id(digest) == key_id  # one spelling per digest


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
