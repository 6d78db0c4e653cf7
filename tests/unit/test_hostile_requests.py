"""Hostile clients against the real gRPC server (OpenBao faked): malformed bytes, missing and
oversized messages, stalled streams, byte-counted limits, a full worker pool.

Each request goes over the Unix socket as raw bytes, so grpcio's own paths (deserialization,
message size limits, stream handling) are exercised exactly as a client would hit them.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from _support import wait_for
from _support.kms_server import V1, CountingTransit, Served, sealed, serving
from bao_kms._proto import api_pb2
from bao_kms.api import service
from bao_kms.api.interceptors import RpcMetricsInterceptor
from bao_kms.api.service import MAX_ANNOTATIONS_SIZE, MAX_REQUEST_BYTES
from bao_kms.logs import LogThrottle

pytestmark = pytest.mark.timeout(60)
Code = grpc.StatusCode

#: bytes that are no message of any type: a truncated length varint, an invalid wire type, a
#: length running past the end, a truncated tag varint
NOT_A_MESSAGE = [b"\x0a\xff\xff\xff", b"\x0f", b"\x0a\x05ab", b"\x80"]
#: invalid UTF-8 in the string fields each method has (a StatusRequest has none: its unknown
#: fields are kept as bytes, and it parses)
BAD_UTF8 = {
    "Encrypt": [b"\x12\x02\xff\xfe"],  # uid
    "Decrypt": [
        b"\x12\x02\xff\xfe",  # uid
        b"\x1a\x03\xc3\x28a",  # key_id
        b"\x22\x07\x0a\x03\xc3\x28a\x12\x00",  # an annotation key
    ],
}
MALFORMED = [
    (method, raw)
    for method in ("Status", "Encrypt", "Decrypt")
    for raw in NOT_A_MESSAGE + BAD_UTF8.get(method, [])
]


@pytest.fixture
def served(socket_dir: Path) -> Iterator[Served]:
    with serving(socket_dir) as running:
        yield running


def code_of(call: grpc.UnaryUnaryMultiCallable, raw: bytes, timeout: float = 5.0) -> Code:
    try:
        call(raw, timeout=timeout)
    except grpc.RpcError as error:
        return error.code()
    return Code.OK


def good_decrypt(**changes: object) -> api_pb2.DecryptRequest:
    fields: dict[str, object] = {
        "ciphertext": sealed(32),
        "key_id": V1.key_id,
        "annotations": dict(V1.annotations),
        "uid": "u",
    }
    fields.update(changes)
    return api_pb2.DecryptRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("method", "raw"), MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bytes_are_invalid_argument_counted_and_never_reach_openbao(
    served: Served, method: str, raw: bytes
) -> None:
    assert code_of(served.raw(method), raw) is Code.INVALID_ARGUMENT
    assert served.servicer.rejections.counts() == {method: 1}
    assert served.openbao_calls == 0


def test_parse_failures_log_one_throttled_line(
    served: Served, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "_THROTTLE", LogThrottle())  # no line from earlier tests
    caplog.set_level(logging.WARNING, logger="bao_kms.service")
    for _ in range(50):
        code_of(served.raw("Decrypt"), BAD_UTF8["Decrypt"][0])
    lines = [r for r in caplog.records if getattr(r, "reason", "") == "malformed_request"]
    assert len(lines) == 1  # the throttle keeps one line per kind per interval
    assert served.servicer.rejections.counts() == {"Decrypt": 50}
    assert "\xff" not in caplog.text


def test_a_call_without_a_request_message_is_invalid_argument(served: Served) -> None:
    """A client that half-closes without sending its message (grpcio said UNIMPLEMENTED)."""
    call = served.channel.stream_unary("/v2.KeyManagementService/Decrypt")
    with pytest.raises(grpc.RpcError) as info:
        call(iter(()), timeout=5)
    assert info.value.code() is Code.INVALID_ARGUMENT
    assert served.servicer.rejections.counts() == {"Decrypt": 1}


def test_the_largest_legal_request_is_received_and_judged_by_the_provider(served: Served) -> None:
    request = good_decrypt(
        ciphertext=b"v" * 1024,
        key_id="k" * 1024,
        uid="u" * 256,
        annotations={"a.example": b"x" * (MAX_ANNOTATIONS_SIZE - 9)},
    )
    raw = request.SerializeToString()
    assert len(raw) <= MAX_REQUEST_BYTES
    # refused by our own checks, with our code: the transport limit let it through
    assert code_of(served.raw("Decrypt"), raw) is Code.INVALID_ARGUMENT


def test_oversized_fields_under_the_receive_limit_are_invalid_argument(served: Served) -> None:
    too_big = good_decrypt(annotations={"a.example": b"x" * MAX_ANNOTATIONS_SIZE})
    assert code_of(served.raw("Decrypt"), too_big.SerializeToString()) is Code.INVALID_ARGUMENT


def test_a_message_over_the_receive_limit_is_refused_by_grpcio(served: Served) -> None:
    """Documented in the README's error table: grpcio refuses it before our code runs, with
    RESOURCE_EXHAUSTED and its own detail; nothing of it reaches the servicer."""
    raw = good_decrypt(uid="u" * MAX_REQUEST_BYTES).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        served.raw("Decrypt")(raw, timeout=5)
    assert info.value.code() is Code.RESOURCE_EXHAUSTED
    assert "larger than max" in (info.value.details() or "")
    assert served.servicer.rejections.counts() == {}
    assert served.openbao_calls == 0


class FinishedCodes:
    """An RpcObserver that keeps (method, code) of every finished call, as /metrics counts them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.finished: list[tuple[str, Code]] = []

    def rpc_started(self, method: str) -> None:
        pass

    def rpc_finished(self, method: str, code: Code, seconds: float) -> None:
        with self._lock:
            self.finished.append((method, code))


def test_messages_over_the_limit_are_never_judged_or_counted_as_malformed(
    socket_dir: Path,
) -> None:
    """grpcio ends such a stream as if the client had sent no message, and marks the call
    cancelled a moment later: the servicer must not take it for a half-closed stream (an
    INVALID_ARGUMENT it would count and log), and the metrics count it CANCELLED."""
    codes = FinishedCodes()
    with serving(socket_dir, interceptors=[RpcMetricsInterceptor(codes)]) as served:
        raw = good_decrypt(uid="u" * MAX_REQUEST_BYTES).SerializeToString()
        for _ in range(20):
            assert code_of(served.raw("Decrypt"), raw) is Code.RESOURCE_EXHAUSTED
        wait_for(lambda: len(codes.finished) == 20, timeout=10)
        assert served.servicer.rejections.counts() == {}
        assert set(codes.finished) == {("Decrypt", Code.CANCELLED)}
        # a stream the client really closed without a message is still the servicer's to refuse
        with pytest.raises(grpc.RpcError) as info:
            served.channel.stream_unary("/v2.KeyManagementService/Decrypt")(iter(()), timeout=5)
        assert info.value.code() is Code.INVALID_ARGUMENT
        wait_for(lambda: len(codes.finished) == 21, timeout=10)
        assert codes.finished[-1] == ("Decrypt", Code.INVALID_ARGUMENT)
        assert served.servicer.rejections.counts() == {"Decrypt": 1}


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        # 100 code points, 400 bytes: over the 256-byte uid limit
        ({"uid": "\U0001f600" * 100}, Code.INVALID_ARGUMENT),
        ({"uid": "\U0001f600" * 64}, Code.OK),  # exactly 256 bytes
        ({"key_id": "\u00e9" * 513}, Code.INVALID_ARGUMENT),  # 1026 bytes > 1024
    ],
)
def test_length_limits_count_bytes(served: Served, changes: dict[str, object], code: Code) -> None:
    raw = good_decrypt(**changes).SerializeToString()
    assert code_of(served.raw("Decrypt"), raw) is code


def test_annotation_keys_count_their_utf8_bytes(served: Served) -> None:
    value = b"x" * (MAX_ANNOTATIONS_SIZE - 2 * 1000)
    # 1000 code points but 2000 bytes of key: exactly the limit in bytes, over it in code points
    # would be wrongly accepted if keys were counted in code points
    fits = good_decrypt(annotations={"\u00e9" * 1000: value})
    over = good_decrypt(annotations={"\u00e9" * 1000: value + b"x"})
    assert code_of(served.raw("Decrypt"), over.SerializeToString()) is Code.INVALID_ARGUMENT
    # the fitting one is refused later, as an unknown annotation: still INVALID_ARGUMENT, but
    # not for its size
    assert code_of(served.raw("Decrypt"), fits.SerializeToString()) is Code.INVALID_ARGUMENT


def test_a_plaintext_of_another_length_than_the_ciphertext_seals_is_refused(
    served: Served,
) -> None:
    served.transit.plaintext = b"x" * 33  # the ciphertext seals 32 bytes
    raw = good_decrypt().SerializeToString()
    assert code_of(served.raw("Decrypt"), raw) is Code.UNAVAILABLE
    served.transit.plaintext = None
    answer = api_pb2.DecryptResponse.FromString(served.raw("Decrypt")(raw, timeout=5))
    assert len(answer.plaintext) == 32


# --- stalled streams ----------------------------------------------------------------------------


def _status_latency(served: Served) -> float:
    started = time.perf_counter()
    served.raw("Status")(b"", timeout=5)
    return time.perf_counter() - started


@pytest.mark.timeout(90)
def test_64_stalled_streams_neither_slow_status_nor_live_forever(socket_dir: Path) -> None:
    """Streams that send headers and never their message: each must end (CANCELLED, by the
    receive deadline) and Status must keep answering quickly meanwhile."""
    release = threading.Event()

    def never() -> Iterator[bytes]:
        release.wait(60)
        return
        yield b""

    codes = FinishedCodes()
    with serving(socket_dir, workers=16, interceptors=[RpcMetricsInterceptor(codes)]) as served:
        served.server.receiver.timeout = 2.0
        stall = served.channel.stream_unary("/v2.KeyManagementService/Decrypt")
        try:
            started = time.monotonic()
            stalled = [stall.future(never()) for _ in range(64)]
            time.sleep(0.5)  # all 64 are open and waiting for their message
            assert not any(future.done() for future in stalled)
            latencies = [_status_latency(served) for _ in range(10)]
            assert statistics.median(latencies) < 0.1, latencies
            for future in stalled:
                with pytest.raises(grpc.RpcError) as info:
                    future.result(timeout=15)
                assert info.value.code() is Code.CANCELLED
            ended = time.monotonic() - started
            assert ended < 2.0 + 5.0  # the receive deadline plus a loaded machine's slack
            assert served.server.receiver.stalled == 64
            wait_for(lambda: len(codes.finished) >= 64 + 10, timeout=10)
            assert codes.finished.count(("Decrypt", Code.CANCELLED)) == 64  # as /metrics counts
            # the workers are free again: a real call is served at once
            assert _status_latency(served) < 1.0
        finally:
            release.set()


def test_a_full_worker_pool_makes_calls_wait_within_their_deadline_not_status(
    socket_dir: Path,
) -> None:
    hold = threading.Event()
    with serving(socket_dir, workers=1, transit=CountingTransit(hold)) as served:
        raw = good_decrypt().SerializeToString()
        busy = served.raw("Decrypt").future(raw, timeout=20)
        while served.transit.decrypts == 0:
            time.sleep(0.01)
        try:
            started = time.monotonic()
            assert code_of(served.raw("Decrypt"), raw, timeout=0.5) is Code.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 2.0
            assert _status_latency(served) < 1.0  # Status needs no worker slot
        finally:
            hold.set()
        busy.result(timeout=10)
        assert code_of(served.raw("Decrypt"), raw) is Code.OK  # the slot came back
