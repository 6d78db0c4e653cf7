"""The KMS v2 servicer: kube-apiserver's Status, Encrypt and Decrypt, thin over the monitor.

Each RPC takes the request's raw bytes (the server registers no deserializer), parses them and
validates in the order DESIGN §4 fixes, so that nothing reaches OpenBao until the request has
proven it names a version we know, with annotations that match it. Parsing happens inside the
one error wrapper, :func:`_rpc`: bytes that are not a valid message are INVALID_ARGUMENT,
counted in :attr:`KeyManagementServicer.rejections` and logged (throttled), never grpcio's
"Exception deserializing request!" INTERNAL. Errors are raised as :mod:`bao_kms.errors` classes
and turned into gRPC codes in that one place, through the table in ``errors.py``.

Encrypt and Decrypt each hold one of ``workers`` slots while they run (each may hold one
OpenBao connection); a call waits for a slot within its deadline. Status needs no slot: it is
answered from memory, so it stays fast however busy OpenBao calls are.

The servicer depends on two small protocols, :class:`StatusView` and :class:`TransitCipher`,
which the status monitor and the Transit client satisfy; tests hand in fakes checked against
the same protocols.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import grpc
from google.protobuf.message import DecodeError

from .. import _codec
from .._proto import api_pb2
from ..errors import (
    DeadlineExceeded,
    InvalidAnnotations,
    InvalidRequest,
    MalformedRequest,
    OpenBaoBadResponse,
    Overloaded,
    grpc_status,
)
from ..identity import KeyVersion
from ..logs import LogThrottle, short_hash
from ..openbao.answers import log_fields
from ..openbao.protocols import TransitCipher
from ..status import Health
from .interceptors import CALL_ARRIVED

log = logging.getLogger("bao_kms.service")

KMS_API_VERSION = "v2"
MAX_CIPHERTEXT = _codec.MAX_CIPHERTEXT_LENGTH
#: Transit's aes256-gcm96 ciphertext holds a 12-byte nonce and a 16-byte tag around the
#: sealed plaintext, so the plaintext length follows from the ciphertext's
_GCM_OVERHEAD = 12 + 16
#: The largest plaintext whose Transit ciphertext still fits kube-apiserver's 1024 bytes:
#: "vault:v<10 digits>:" (18) + base64 of 12-byte nonce + plaintext + 16-byte tag.
#: KMS v2 sends 32-byte DEK seeds; anything larger than this could never be stored.
MAX_PLAINTEXT = (MAX_CIPHERTEXT - 18) // 4 * 3 - _GCM_OVERHEAD
MAX_KEY_ID = 1024
MAX_UID = 256
MAX_ANNOTATIONS_SIZE = 32 * 1024


def _field_size(payload: int) -> int:
    """Wire size of one length-delimited protobuf field (tag, length varint, payload)."""
    return 1 + (payload.bit_length() + 6) // 7 + payload if payload else 2


#: The largest request kube-apiserver may send: a Decrypt with ciphertext, key_id and uid at
#: their limits and 32 KiB of annotations. An annotation entry of k + v counted bytes takes
#: k + v + 6 bytes on the wire while it is under 128 bytes (tag and length for the entry, its
#: key and its value); kube-apiserver requires keys of at least 3 bytes (``a.b``), so framing
#: at most triples the counted size. This is the server's receive limit: grpcio refuses a
#: larger message itself, before the provider sees it (RESOURCE_EXHAUSTED, see the README).
MAX_REQUEST_BYTES = (
    _field_size(MAX_CIPHERTEXT)
    + _field_size(MAX_KEY_ID)
    + _field_size(MAX_UID)
    + 3 * MAX_ANNOTATIONS_SIZE
)
#: how long an Encrypt or Decrypt whose caller set no deadline waits for a free worker
MAX_QUEUE_WAIT = 30.0

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


class Rejections:
    """Requests refused because their bytes were not a message, per RPC; thread-safe.

    A counter for the metrics exporter to read at scrape time (:meth:`counts`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def add(self, rpc: str) -> None:
        with self._lock:
            self._counts[rpc] = self._counts.get(rpc, 0) + 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


#: a servicer method as the server calls it: the request's bytes (None when the call carried
#: no message) and the call's context
RawHandler = Callable[[bytes | None, grpc.ServicerContext], Any]


def _rpc(
    parse: Callable[[bytes], Any], *, uses_openbao: bool
) -> Callable[
    [Callable[[KeyManagementServicer, Request, grpc.ServicerContext, float], Response]],
    Callable[[KeyManagementServicer, bytes | None, grpc.ServicerContext], Response],
]:
    """The one place a request is parsed and an exception becomes a gRPC status (and a log
    line). *parse* is the request message's ``FromString``; *uses_openbao* methods hold a
    worker slot while they run. The method gets the parsed request, the context and when the
    call arrived: :data:`~.interceptors.CALL_ARRIVED` when the server's ``ArrivalInterceptor``
    stamped it (on the servicer's clock), else the handler's first clock reading."""

    def decorate(
        method: Callable[[KeyManagementServicer, Request, grpc.ServicerContext, float], Response],
    ) -> Callable[[KeyManagementServicer, bytes | None, grpc.ServicerContext], Response]:
        name = method.__name__

        @functools.wraps(method)
        def handler(
            self: KeyManagementServicer, raw: bytes | None, context: grpc.ServicerContext
        ) -> Response:
            started, request = self._clock(), None
            arrived = CALL_ARRIVED.get(started)
            try:
                request = self._parse(name, parse, raw)
                if not uses_openbao:
                    return method(self, request, context, arrived)
                self._acquire_worker(context)
                try:
                    return method(self, request, context, arrived)
                finally:
                    self._workers.release()
            except Exception as error:  # every failure must become a status
                code, message = grpc_status(error)
                _log_failure(name, code, error, self._clock() - started, request)
                if self.on_failure is not None:
                    self.on_failure(name, error)  # /metrics: rejections by reason
                context.abort(code, message)
                raise AssertionError("context.abort returns only by raising") from error

        return handler

    return decorate


#: grpcio reports "no deadline" as an enormous time_remaining() (~9.2e18 s), not None
_NO_DEADLINE = 24 * 3600.0


def _log_failure(
    rpc: str, code: grpc.StatusCode, error: Exception, seconds: float, request: Any
) -> None:
    """One throttled line per kind of failure; a bug logs its type and frames, never its
    message (which could quote a secret), whatever handler the logs go to. ``reason`` is the
    cause (a refused Encrypt logs the Status reasons, not ``not_ready``)."""
    described = log_fields(error if code is not grpc.StatusCode.INTERNAL else Exception())
    reason = described["reason"]
    suppressed = _THROTTLE.admit((rpc, code, reason))
    if suppressed is None:
        return
    fields: dict[str, object] = {
        "event": "rpc_failed",
        "rpc": rpc,
        "code": code.name,
        **described,
        "duration_ms": round(seconds * 1000, 3),
        "suppressed_since_last": suppressed,
    }
    key_id = getattr(request, "key_id", "")
    if key_id and isinstance(key_id, str):
        fields["key_id_hash"] = short_hash(key_id)
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


def _utf8_length(value: str) -> int:
    # isascii() is O(1) in CPython: the common case costs no encoding
    return len(value) if value.isascii() else len(value.encode("utf-8"))


def _check_length(name: str, value: bytes | str, maximum: int, *, required: bool) -> None:
    """Limits count bytes, as they say: a str is measured in UTF-8."""
    if required and not value:
        raise InvalidRequest(f"{name} is empty")
    size = len(value) if isinstance(value, bytes) else _utf8_length(value)
    if size > maximum:
        raise InvalidRequest(f"{name} is longer than {maximum} bytes")


def _check_annotations_size(annotations: Mapping[str, bytes]) -> None:
    total = 0
    for key, value in annotations.items():
        total += _utf8_length(key) + len(value)
    if total > MAX_ANNOTATIONS_SIZE:
        raise InvalidRequest(f"annotations are larger than {MAX_ANNOTATIONS_SIZE} bytes")


def _sealed_plaintext_length(ciphertext: bytes) -> int:
    """The plaintext length a checked ``vault:vN:<base64>`` ciphertext must decrypt to."""
    encoded = ciphertext.rpartition(b":")[2]
    padding = len(encoded) - len(encoded.rstrip(b"="))
    return len(encoded) // 4 * 3 - padding - _GCM_OVERHEAD


class KeyManagementServicer:
    """Answers kube-apiserver; holds no state of its own beyond its counters."""

    def __init__(
        self,
        monitor: StatusView,
        transit: TransitCipher,
        *,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 16,
        on_failure: Callable[[str, Exception], None] | None = None,
    ) -> None:
        self._monitor = monitor
        self._transit = transit
        self._clock = clock
        self._workers = threading.Semaphore(workers)
        #: requests whose bytes did not parse, per RPC (for the metrics exporter)
        self.rejections = Rejections()
        #: told (rpc, error) of every failed call (the metrics count Decrypt's by reason)
        self.on_failure = on_failure

    def _parse(self, rpc: str, parse: Callable[[bytes], Any], raw: bytes | None) -> Any:
        if raw is None:
            self.rejections.add(rpc)
            raise MalformedRequest("the call carried no request message")
        try:
            return parse(raw)
        except DecodeError:
            # protobuf's message names the type and the problem; ours says the same, no bytes
            self.rejections.add(rpc)
            raise MalformedRequest(f"the request is not a valid {rpc}Request message") from None

    def _acquire_worker(self, context: grpc.ServicerContext) -> None:
        if self._workers.acquire(blocking=False):
            return
        deadline = _deadline(context, self._clock)
        wait = MAX_QUEUE_WAIT if deadline is None else deadline - self._clock()
        if wait > 0 and self._workers.acquire(timeout=wait):
            return
        if deadline is None:
            raise Overloaded(f"no worker became free within {MAX_QUEUE_WAIT:g} s")
        raise DeadlineExceeded("deadline passed while waiting for a free worker")

    @_rpc(api_pb2.StatusRequest.FromString, uses_openbao=False)
    def Status(
        self, request: api_pb2.StatusRequest, context: grpc.ServicerContext, arrived: float
    ) -> api_pb2.StatusResponse:
        health = self._monitor.health()
        return api_pb2.StatusResponse(
            version=KMS_API_VERSION, healthz=health.healthz, key_id=health.key_id
        )

    @_rpc(api_pb2.EncryptRequest.FromString, uses_openbao=True)
    def Encrypt(
        self, request: api_pb2.EncryptRequest, context: grpc.ServicerContext, arrived: float
    ) -> api_pb2.EncryptResponse:
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

    @_rpc(api_pb2.DecryptRequest.FromString, uses_openbao=True)
    def Decrypt(
        self, request: api_pb2.DecryptRequest, context: grpc.ServicerContext, arrived: float
    ) -> api_pb2.DecryptResponse:
        # DESIGN §4 order; no OpenBao call until every step before Transit has passed.
        _check_length("ciphertext", request.ciphertext, MAX_CIPHERTEXT, required=True)
        _check_length("key_id", request.key_id, MAX_KEY_ID, required=True)
        _check_length("uid", request.uid, MAX_UID, required=False)
        # the counted size (UTF-8 keys and values) is at most the parsed message's serialized
        # size, so only a message that large needs the walk over every entry (~5 us; ~1 us)
        if request.ByteSize() > MAX_ANNOTATIONS_SIZE:
            _check_annotations_size(request.annotations)
        _codec.parse_key_id(request.key_id)
        deadline = _deadline(context, self._clock)
        version = self._monitor.known(request.key_id)
        if version is None:
            _check_consistent(request)
            version = self._monitor.lookup(request.key_id, deadline=deadline)
        _codec.match_annotations(request.annotations, version.annotations)
        _codec.check_ciphertext_version(request.ciphertext, version.version)
        # arrived: a batcher shares with this call what OpenBao answered for the same pair
        # while it was in flight (single-flight by arrival, not by when it reached the batcher)
        plaintext = self._transit.decrypt(
            request.ciphertext, version.associated_data, deadline=deadline, arrived=arrived
        )
        # whatever answers on OpenBao's address must not hand back a plaintext of any length
        if len(plaintext) != _sealed_plaintext_length(request.ciphertext):
            raise OpenBaoBadResponse(
                "Transit returned a plaintext whose length does not match the ciphertext"
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
