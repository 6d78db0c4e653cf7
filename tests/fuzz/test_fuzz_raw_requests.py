"""Raw request bytes for Status, Encrypt and Decrypt, fuzzed through the real gRPC server.

Whatever bytes arrive, the answer is INVALID_ARGUMENT, NOT_FOUND or OK: never INTERNAL or
UNKNOWN (grpcio's own deserializer once answered INTERNAL and leaked memory on each), and
nothing that is refused ever reaches OpenBao (a counting fake stands in for Transit).

The bytes come from three strategies: arbitrary binary; protobuf wire records with random
field numbers, wire types and payloads (invalid UTF-8 included); and valid requests that are
truncated, bit-flipped or spliced. A smoke run of ``BAO_KMS_FUZZ_EXAMPLES`` examples (default
300) runs with the suite; for the long run set it, e.g.::

    BAO_KMS_FUZZ_EXAMPLES=6000 python -m pytest -q -s tests/fuzz

which prints the count of answers by code at the end.
"""

from __future__ import annotations

import collections
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support.kms_server import V1, Served, sealed, serving
from bao_kms._proto import api_pb2

EXAMPLES = int(os.environ.get("BAO_KMS_FUZZ_EXAMPLES", "300"))
ALLOWED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.OK}
METHODS = ("Status", "Encrypt", "Decrypt")
CODES: collections.Counter[str] = collections.Counter()

pytestmark = pytest.mark.timeout(max(180, EXAMPLES // 10))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@st.composite
def wire_records(draw: st.DrawFn) -> bytes:
    """Protobuf-shaped bytes: records with random tags, wire types and payloads."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 6))):
        field = draw(st.integers(0, 20))
        wire_type = draw(st.integers(0, 7))
        out += _varint(field << 3 | wire_type)
        if wire_type == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire_type == 2:
            payload = draw(
                st.one_of(
                    st.binary(max_size=64),
                    st.text(max_size=32).map(str.encode),
                    st.just(b"\xc3\x28"),  # invalid UTF-8
                    st.builds(
                        lambda k, v: b"\x0a" + _varint(len(k)) + k + b"\x12" + v,
                        st.binary(max_size=8),
                        st.binary(max_size=8),
                    ),
                )
            )
            declared = len(payload) + draw(st.sampled_from([0, 0, 0, 1, -1, 1000]))
            out += _varint(max(declared, 0)) + payload
        elif wire_type in (1, 5):
            out += draw(st.binary(min_size=0, max_size=8))
        else:
            out += draw(st.binary(max_size=4))
    return bytes(out)


def _valid_requests() -> list[bytes]:
    return [
        b"",
        api_pb2.EncryptRequest(plaintext=b"k" * 32, uid="uid").SerializeToString(),
        api_pb2.DecryptRequest(
            ciphertext=sealed(32), key_id=V1.key_id, annotations=dict(V1.annotations), uid="u"
        ).SerializeToString(),
    ]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid request, truncated, with bytes flipped, or with bytes inserted."""
    data = bytearray(draw(st.sampled_from(_valid_requests())))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if kind == "truncate" and data:
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif kind == "flip" and data:
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= draw(st.integers(1, 255))
        else:
            position = draw(st.integers(0, len(data)))
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


RAW = st.one_of(st.binary(max_size=200), wire_records(), mutated())


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    directory = Path(tempfile.mkdtemp(prefix="bk-fuzz-", dir="/tmp"))
    directory.chmod(0o700)
    try:
        with serving(directory) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        if CODES:
            print("\nfuzz answers by code:", dict(sorted(CODES.items())))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(method=st.sampled_from(METHODS), raw=RAW)
def test_raw_request_bytes_never_cause_internal_errors(
    served: Served, method: str, raw: bytes
) -> None:
    before = served.openbao_calls
    try:
        served.raw(method)(raw, timeout=10)
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
    CODES[f"{method} {code.name}"] += 1
    assert code in ALLOWED, (method, raw, code)
    if code is not grpc.StatusCode.OK:
        assert served.openbao_calls == before, "a refused request reached OpenBao"
