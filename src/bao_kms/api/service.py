"""The KMS v2 servicer: kube-apiserver's Status, Encrypt and Decrypt, thin over the monitor.

Each RPC validates in the order DESIGN §4 fixes, so that nothing reaches OpenBao until the
request has proven it names a version we know, with annotations that match it. Errors are
raised as :mod:`bao_kms.errors` classes and turned into gRPC codes in exactly one place,
:func:`_rpc`, through the table in ``errors.py``. The servicer depends on two small protocols,
:class:`StatusView` and :class:`TransitCipher`, which the status monitor and the Transit client
satisfy; tests hand in fakes checked against the same protocols.
"""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

import grpc

from .. import _codec
from .._proto import api_pb2, api_pb2_grpc
from ..errors import InvalidAnnotations, InvalidRequest, grpc_status
from ..identity import KeyVersion
from ..logs import LogThrottle
from ..openbao.protocols import TransitCipher
from ..status import Health

log = logging.getLogger("bao_kms.service")

KMS_API_VERSION = "v2"
MAX_CIPHERTEXT = _codec.MAX_CIPHERTEXT_LENGTH
#: The largest plaintext whose Transit ciphertext still fits kube-apiserver's 1024 bytes:
#: "vault:v<10 digits>:" (18) + base64 of 12-byte nonce + plaintext + 16-byte tag.
#: KMS v2 sends 32-byte DEK seeds; anything larger than this could never be stored.
MAX_PLAINTEXT = (MAX_CIPHERTEXT - 18) // 4 * 3 - 28
MAX_KEY_ID = 1024
MAX_UID = 256
MAX_ANNOTATIONS_SIZE = 32 * 1024

Request = TypeVar("Request")
Response = TypeVar("Response")
_THROTTLE = LogThrottle()


@runtime_checkable
class StatusView(Protocol):
    """What the servicer reads from the status monitor: health and key versions, from memory."""

    def health(self) -> Health: ...

    def encrypt_version(self) -> KeyVersion: ...

    def known(self, key_id: str) -> KeyVersion | None: ...

    def lookup(self, key_id: str, *, deadline: float | None = None) -> KeyVersion: ...


def _rpc(
    method: Callable[[KeyManagementServicer, Request, grpc.ServicerContext], Response],
) -> Callable[[KeyManagementServicer, Request, grpc.ServicerContext], Response]:
    """The one place an exception becomes a gRPC status (and a log line)."""
    name = method.__name__

    @functools.wraps(method)
    def handler(
        self: KeyManagementServicer, request: Request, context: grpc.ServicerContext
    ) -> Response:
        try:
            return method(self, request, context)
        except Exception as error:  # every failure must become a status
            code, message = grpc_status(error)
            _log_failure(name, code, error)
            context.abort(code, message)
            raise AssertionError("context.abort returns only by raising") from error

    return handler


#: grpcio reports "no deadline" as an enormous time_remaining() (~9.2e18 s), not None
_NO_DEADLINE = 24 * 3600.0


def _log_failure(rpc: str, code: grpc.StatusCode, error: Exception) -> None:
    """One throttled line per kind of failure; a bug logs its type and frames, never its
    message (which could quote a secret), whatever handler the logs go to."""
    reason = getattr(error, "reason", "bug") if code is not grpc.StatusCode.INTERNAL else "bug"
    suppressed = _THROTTLE.admit((rpc, code, reason))
    if suppressed is None:
        return
    fields: dict[str, object] = {
        "rpc": rpc,
        "code": code.name,
        "reason": reason,
        "suppressed_since_last": suppressed,
    }
    if reason == "bug":
        fields["error_type"] = type(error).__name__
        fields["stack"] = "".join(traceback.format_tb(error.__traceback__))
        log.error("rpc failed with a bug", extra=fields)
    else:
        log.warning("rpc failed", extra=fields)


def _deadline(context: grpc.ServicerContext, clock: Callable[[], float]) -> float | None:
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return clock() + remaining


def _check_length(name: str, value: bytes | str, maximum: int, *, required: bool) -> None:
    if required and not value:
        raise InvalidRequest(f"{name} is empty")
    if len(value) > maximum:
        raise InvalidRequest(f"{name} is longer than {maximum} bytes")


def _check_annotations_size(annotations) -> None:
    total = 0
    for key, value in annotations.items():
        total += len(key) + len(value)
    if total > MAX_ANNOTATIONS_SIZE:
        raise InvalidRequest(f"annotations are larger than {MAX_ANNOTATIONS_SIZE} bytes")


class KeyManagementServicer(api_pb2_grpc.KeyManagementServiceServicer):
    """Answers kube-apiserver; holds no state of its own."""

    def __init__(
        self,
        monitor: StatusView,
        transit: TransitCipher,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._monitor = monitor
        self._transit = transit
        self._clock = clock

    @_rpc
    def Status(self, request: api_pb2.StatusRequest, context: grpc.ServicerContext):
        health = self._monitor.health()
        return api_pb2.StatusResponse(
            version=KMS_API_VERSION, healthz=health.healthz, key_id=health.key_id
        )

    @_rpc
    def Encrypt(self, request: api_pb2.EncryptRequest, context: grpc.ServicerContext):
        _check_length("plaintext", request.plaintext, MAX_PLAINTEXT, required=True)
        _check_length("uid", request.uid, MAX_UID, required=False)
        active = self._monitor.encrypt_version()
        # parse_encrypt_response refuses a ciphertext over MAX_CIPHERTEXT or of another version
        ciphertext = self._transit.encrypt(
            request.plaintext,
            active.version,
            active.associated_data,
            deadline=_deadline(context, self._clock),
        )
        return api_pb2.EncryptResponse(
            ciphertext=ciphertext, key_id=active.key_id, annotations=active.annotations
        )

    @_rpc
    def Decrypt(self, request: api_pb2.DecryptRequest, context: grpc.ServicerContext):
        # DESIGN §4 order; no OpenBao call until every step before Transit has passed.
        _check_length("ciphertext", request.ciphertext, MAX_CIPHERTEXT, required=True)
        _check_length("key_id", request.key_id, MAX_KEY_ID, required=True)
        _check_length("uid", request.uid, MAX_UID, required=False)
        _check_annotations_size(request.annotations)
        _codec.parse_key_id(request.key_id)
        deadline = _deadline(context, self._clock)
        version = self._monitor.known(request.key_id)
        if version is None:
            _check_consistent(request)
            version = self._monitor.lookup(request.key_id, deadline=deadline)
        _codec.match_annotations(request.annotations, version.annotations)
        _codec.check_ciphertext_version(request.ciphertext, version.version)
        plaintext = self._transit.decrypt(
            request.ciphertext, version.associated_data, deadline=deadline
        )
        return api_pb2.DecryptResponse(plaintext=plaintext)


def _check_consistent(request: api_pb2.DecryptRequest) -> None:
    """Before an unknown key_id may cost an OpenBao read, the request must at least agree with
    itself: well-formed annotations that hash this key_id and name the ciphertext's version."""
    annotated_version = _codec.parse_annotations(request.annotations)
    key_id_hash = _codec.hash_label(request.key_id).encode("ascii")
    if bytes(request.annotations[_codec.ANN_KEY_ID_HASH]) != key_id_hash:
        raise InvalidAnnotations(f"annotation {_codec.ANN_KEY_ID_HASH} does not match the key_id")
    _codec.check_ciphertext_version(request.ciphertext, annotated_version)
