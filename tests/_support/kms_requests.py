"""Generated KMS v2 requests with hostile contents, and a small world to serve them from.

For the semantic request fuzz (``tests/fuzz/test_fuzz_requests_semantic.py``): three key
versions of one identity (retired, active, and one just published in OpenBao that only a
metadata refresh finds) and one of another cluster; a status view and a Transit that seals for
real (a ciphertext opens only under the AAD it was sealed with) and count every OpenBao call.
Requests start genuine and get mutations at and past every limit of the KMS v2 contract.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from bao_kms._proto import api_pb2
from bao_kms.api.service import MAX_PLAINTEXT
from bao_kms.errors import CiphertextAuthenticationFailed, InvalidCiphertext, UnknownKeyId
from bao_kms.identity import KeyVersion
from bao_kms.status import Health

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
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
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


# --- generated requests ----------------------------------------------------------------------


def _text_of_bytes(size: int, wide: bool) -> str:
    """A str of exactly *size* UTF-8 bytes (two-byte characters when *wide*)."""
    return "é" * (size // 2) + "a" * (size % 2) if wide else "a" * size


def key_id_of(digest: bytes) -> str:
    """The key_id spelling of a 32-byte digest."""
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
        return key_id_of(draw(st.binary(min_size=32, max_size=32)))
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
