"""The servicer on its own: validation order, the error table applied once, nothing leaked.

The fakes are typed against :class:`StatusView` and :class:`TransitCipher`, the protocols the
servicer depends on: mypy checks their signatures where the fixture hands them over, and a
test checks them at run time.
"""

from __future__ import annotations

import contextvars

import grpc
import pytest

from bao_kms._proto import api_pb2
from bao_kms.api.interceptors import CALL_ARRIVED
from bao_kms.api.service import KeyManagementServicer, StatusView
from bao_kms.errors import (
    CiphertextAuthenticationFailed,
    DeadlineExceeded,
    NotReady,
    UnknownKeyId,
)
from bao_kms.identity import Identity, KeyVersion
from bao_kms.openbao.protocols import TransitCipher
from bao_kms.reasons import Reason
from bao_kms.status import Health

IDENTITY = Identity("provider", "cluster", "instance", "", "mount", "lineage")
V1 = IDENTITY.key_version(1, 1_700_000_000)


class Aborted(Exception):
    pass


class Context:
    """The slice of grpc.ServicerContext the servicer uses."""

    def __init__(self, remaining: float | None = 3.0) -> None:
        self.remaining = remaining
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def time_remaining(self):
        return self.remaining

    def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted


class Monitor:
    def __init__(self, healthy: bool = True) -> None:
        self.healthy = healthy
        self.lookups = 0

    def health(self) -> Health:
        if self.healthy:
            return Health(True, (), V1.key_id, 1.0)
        return Health(False, (Reason.OPENBAO_SEALED,), "", 1.0)

    def encrypt_version(self) -> KeyVersion:
        if not self.healthy:
            raise NotReady("the KMS provider is not healthy (openbao_sealed)")
        return V1

    def known(self, key_id: str) -> KeyVersion | None:
        return V1 if key_id == V1.key_id else None

    def lookup(self, key_id: str, *, deadline: float | None = None) -> KeyVersion:
        self.lookups += 1
        if key_id != V1.key_id:
            raise UnknownKeyId("key_id does not name a key version this provider knows")
        return V1


class Transit:
    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.arrivals: list[float | None] = []
        self.failure: Exception | None = None

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        self.calls.append(("encrypt", key_version, associated_data, deadline))
        if self.failure:
            raise self.failure
        return b"vault:v1:" + b"QUJD" * 10

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        self.calls.append(("decrypt", associated_data, deadline))
        self.arrivals.append(arrived)
        if self.failure:
            raise self.failure
        return b"seed" * 8


@pytest.fixture
def parts() -> tuple[KeyManagementServicer, Monitor, Transit]:
    monitor, transit = Monitor(), Transit()
    view: StatusView = monitor  # mypy: the fakes have the protocols' signatures
    cipher: TransitCipher = transit
    return KeyManagementServicer(view, cipher, clock=lambda: 100.0), monitor, transit


def test_the_fakes_satisfy_the_servicers_protocols(parts):
    _, monitor, transit = parts
    assert isinstance(monitor, StatusView)
    assert isinstance(transit, TransitCipher)


def call(method, request, context=None):
    """Call *method* as the server does: with the request's serialized bytes."""
    context = context or Context()
    try:
        return method(request.SerializeToString(), context), context
    except Aborted:
        return None, context


def good_decrypt(**changes):
    fields = {
        # 80 base64 characters: a 12-byte nonce, a 32-byte seed and a 16-byte tag
        "ciphertext": b"vault:v1:" + b"QUJD" * 20,
        "key_id": V1.key_id,
        "annotations": dict(V1.annotations),
        "uid": "u",
    }
    fields.update(changes)
    return api_pb2.DecryptRequest(**fields)


def test_status_is_answered_from_the_monitor(parts):
    servicer, monitor, transit = parts
    response, _ = call(servicer.Status, api_pb2.StatusRequest())
    assert (response.version, response.healthz, response.key_id) == ("v2", "ok", V1.key_id)
    monitor.healthy = False
    response, _ = call(servicer.Status, api_pb2.StatusRequest())
    assert (response.healthz, response.key_id) == ("openbao_sealed", "")
    assert transit.calls == []


def test_encrypt_pins_version_aad_and_deadline(parts):
    servicer, _, transit = parts
    response, _ = call(servicer.Encrypt, api_pb2.EncryptRequest(plaintext=b"k" * 32))
    assert response.key_id == V1.key_id
    assert dict(response.annotations) == dict(V1.annotations)
    assert transit.calls == [("encrypt", 1, V1.associated_data, 103.0)]


def test_encrypt_while_unhealthy_is_failed_precondition(parts):
    servicer, monitor, transit = parts
    monitor.healthy = False
    _, context = call(servicer.Encrypt, api_pb2.EncryptRequest(plaintext=b"k" * 32))
    assert context.code is grpc.StatusCode.FAILED_PRECONDITION
    assert transit.calls == []


def test_decrypt_happy_path(parts):
    servicer, _, transit = parts
    response, _ = call(servicer.Decrypt, good_decrypt())
    assert response.plaintext == b"seed" * 8
    assert transit.calls == [("decrypt", V1.associated_data, 103.0)]


V5 = IDENTITY.key_version(5, 1)
CONSISTENT_UNKNOWN = {
    "key_id": V5.key_id,
    "annotations": dict(V5.annotations),
    "ciphertext": b"vault:v5:" + b"QUJD" * 10,
}


@pytest.mark.parametrize(
    ("request_changes", "code", "looked_up"),
    [
        ({"ciphertext": b""}, grpc.StatusCode.INVALID_ARGUMENT, False),
        ({"key_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, False),
        ({"key_id": "obk2.short"}, grpc.StatusCode.INVALID_ARGUMENT, False),
        ({"uid": "u" * 300}, grpc.StatusCode.INVALID_ARGUMENT, False),
        ({"annotations": {}}, grpc.StatusCode.INVALID_ARGUMENT, False),
        ({"ciphertext": b"vault:v2:QUJD"}, grpc.StatusCode.INVALID_ARGUMENT, False),
        # an unknown key_id is looked up (maybe refreshed) only when the request is consistent
        (CONSISTENT_UNKNOWN, grpc.StatusCode.NOT_FOUND, True),
        (
            {**CONSISTENT_UNKNOWN, "annotations": dict(V1.annotations)},
            grpc.StatusCode.INVALID_ARGUMENT,
            False,
        ),
        (
            {**CONSISTENT_UNKNOWN, "ciphertext": b"vault:v1:QUJD"},
            grpc.StatusCode.INVALID_ARGUMENT,
            False,
        ),
        ({"key_id": V5.key_id}, grpc.StatusCode.INVALID_ARGUMENT, False),
    ],
)
def test_decrypt_refusals_never_reach_openbao(parts, request_changes, code, looked_up):
    servicer, monitor, transit = parts
    _, context = call(servicer.Decrypt, good_decrypt(**request_changes))
    assert context.code is code
    assert transit.calls == []
    assert (monitor.lookups > 0) is looked_up


def test_plaintext_limit_is_what_fits_in_1024_bytes_of_ciphertext(parts):
    servicer, _, transit = parts
    _, context = call(servicer.Encrypt, api_pb2.EncryptRequest(plaintext=b"k" * 726))
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT
    assert transit.calls == []
    response, _ = call(servicer.Encrypt, api_pb2.EncryptRequest(plaintext=b"k" * 725))
    assert response is not None


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (
            CiphertextAuthenticationFailed("ciphertext failed authentication"),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (DeadlineExceeded("deadline"), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_transit_errors_map_through_the_table(parts, failure, code):
    servicer, _, transit = parts
    transit.failure = failure
    _, context = call(servicer.Decrypt, good_decrypt())
    assert context.code is code


def test_a_bug_is_internal_with_a_generic_message(parts, caplog):
    servicer, _, transit = parts
    transit.failure = KeyError("super-secret-token-value")
    _, context = call(servicer.Decrypt, good_decrypt())
    assert context.code is grpc.StatusCode.INTERNAL
    assert "super-secret" not in context.details
    assert "super-secret" not in caplog.text


def test_no_deadline_means_none(parts):
    servicer, _, transit = parts
    call(servicer.Decrypt, good_decrypt(), Context(remaining=None))
    assert transit.calls[-1][-1] is None


def test_decrypt_tells_the_cipher_when_the_call_arrived():
    # the batcher shares an answer with calls that arrived before it: the arrival is the
    # servicer's first clock reading, before validation and any wait for a worker slot
    monitor, transit = Monitor(), Transit()
    readings = iter(range(100, 200))
    servicer = KeyManagementServicer(monitor, transit, clock=lambda: float(next(readings)))
    call(servicer.Decrypt, good_decrypt())
    assert transit.arrivals == [100.0]


def test_decrypt_tells_the_cipher_the_arrival_the_interceptor_stamped():
    # under the server, ArrivalInterceptor stamps the call as it comes in (earlier than the
    # handler's first clock reading, which may come after a wait for a worker thread)
    monitor, transit = Monitor(), Transit()
    servicer = KeyManagementServicer(monitor, transit, clock=lambda: 500.0)

    def stamped_call() -> None:
        CALL_ARRIVED.set(42.0)
        call(servicer.Decrypt, good_decrypt())

    contextvars.copy_context().run(stamped_call)
    call(servicer.Decrypt, good_decrypt())  # a call no interceptor saw: its own reading
    assert transit.arrivals == [42.0, 500.0]


def test_grpcio_no_deadline_sentinel_means_none(parts):
    servicer, _, transit = parts
    call(servicer.Decrypt, good_decrypt(), Context(remaining=9.2e18))
    assert transit.calls[-1][-1] is None
