"""gRPC server interceptors: one per concern. Here, when a call arrived, and per-RPC counts,
durations and in-flight.

:class:`ArrivalInterceptor` stamps each call's arrival in :data:`CALL_ARRIVED`. grpcio runs the
interceptors on its polling thread as the call comes in, before the call waits for a worker
thread or its message, and it runs them and the handler inside one ``contextvars.Context`` of
the call's own (``_RPCState.context`` in ``grpc/_server.py``): the handler reads the stamp of
its own call, never another's. Single-flight goes by this moment (``DecryptBatcher``): two
Decrypts kube-apiserver sends together are concurrent even when a busy server starts the
second handler after the first was answered.

The interceptor wraps each method's behaviour once (cached by method name) and reports to an
:class:`RpcObserver` (``bao_kms.ops.metrics`` implements it): ``started`` when the call enters
the servicer, ``finished`` with the gRPC code it ended with. The code is read from the call's
context, where the servicer's one error wrapper put it (``context.abort``), so for every call
the servicer answered the metrics see exactly what kube-apiserver saw. A call that grpcio ends
while the handler waits for its message counts as ``CANCELLED``, whatever grpcio sent the
client (``DEADLINE_EXCEEDED`` for an expired deadline, ``RESOURCE_EXHAUSTED`` for a message
over the receive limit). Calls grpcio refuses before any handler runs (beyond
``maxConcurrentRequests``) never reach an interceptor.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable
from typing import Any, Protocol

import grpc

#: the method label for anything that is not one of the KMS v2 methods (bounded labels)
OTHER_METHOD = "other"
KMS_METHODS = frozenset({"Status", "Encrypt", "Decrypt"})


#: when the current call arrived, on the clock :class:`ArrivalInterceptor` was given; unset
#: outside a call the interceptor saw (a servicer called directly, in tests)
CALL_ARRIVED: contextvars.ContextVar[float] = contextvars.ContextVar("bao_kms_call_arrived")


class ArrivalInterceptor(grpc.ServerInterceptor):
    """Sets :data:`CALL_ARRIVED` to *clock*'s reading as each call comes in. Put it first: an
    interceptor before it would delay the stamp by its own work."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        CALL_ARRIVED.set(self._clock())
        return continuation(handler_call_details)


class RpcObserver(Protocol):
    """Told about every call; must be cheap and thread-safe."""

    def rpc_started(self, method: str) -> None: ...

    def rpc_finished(self, method: str, code: grpc.StatusCode, seconds: float) -> None: ...


def method_label(full_method: str) -> str:
    """``/v2.KeyManagementService/Decrypt`` -> ``Decrypt``; anything unknown -> ``other``."""
    name = full_method.rsplit("/", 1)[-1]
    return name if name in KMS_METHODS else OTHER_METHOD


class RpcMetricsInterceptor(grpc.ServerInterceptor):
    """Reports each call's start, end, code and duration to *observer*."""

    def __init__(
        self, observer: RpcObserver, *, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._observer = observer
        self._clock = clock
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        full_method = handler_call_details.method
        cached = self._wrapped.get(full_method)
        if cached is not None:
            return cached
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        wrapped = self._wrap(handler, method_label(full_method))
        if len(self._wrapped) < 64:  # only real methods get here; the bound is a safeguard
            self._wrapped[full_method] = wrapped
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        observer, clock = self._observer, self._clock

        def observed(behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[..., Any]:
            def call(request: Any, context: grpc.ServicerContext) -> Any:
                observer.rpc_started(method)
                started = clock()
                code = grpc.StatusCode.UNKNOWN  # what grpcio answers for an escaped exception
                try:
                    response = behaviour(request, context)
                    code = _code_of(context, grpc.StatusCode.OK)
                    return response
                except grpc.RpcError:
                    # grpcio's own error: the call was cancelled (by the client, its deadline,
                    # the receive watchdog, or grpcio refusing the message) while it waited
                    code = _code_of(context, grpc.StatusCode.CANCELLED)
                    raise
                except BaseException:
                    code = _code_of(context, grpc.StatusCode.UNKNOWN)
                    raise
                finally:
                    observer.rpc_finished(method, code, clock() - started)

            return call

        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                observed(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                observed(handler.stream_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # streaming responses: the KMS v2 API has none


def _code_of(context: grpc.ServicerContext, default: grpc.StatusCode) -> grpc.StatusCode:
    code = getattr(context, "code", None)
    found = code() if callable(code) else None
    return found if isinstance(found, grpc.StatusCode) else default
