"""The gRPC server's lifecycle on a Unix socket: bind safely, start, drain, stop, clean up.

The servicer holds the logic; this module only owns the socket, the thread pool and the way
requests reach the servicer:

- The three methods are registered without a request deserializer: the servicer gets the raw
  bytes and parses them inside its one error wrapper, so malformed bytes are INVALID_ARGUMENT
  (grpcio's own deserializer path answered INTERNAL and leaked memory on every failure).
- They are registered as client-streaming, which is the same as unary on the wire, so the
  handler runs before the request message arrives and :class:`ReceiveDeadline` can cancel a
  call whose message never comes (a stalled stream would otherwise pin a worker forever).
- Every admitted call gets its own thread at once (the pool is as large as
  ``maxConcurrentRequests``), so stalled or queued calls never delay Status; the servicer
  bounds how many run against OpenBao at a time (``workers``). Calls beyond
  ``maxConcurrentRequests`` are refused by grpcio with RESOURCE_EXHAUSTED.
- The receive limit is the largest request kube-apiserver may legally send
  (:data:`~bao_kms.api.service.MAX_REQUEST_BYTES`); grpcio refuses a larger message itself
  with RESOURCE_EXHAUSTED before any of our code runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from .._proto import api_pb2
from ..config import ServerConfig
from ..errors import SocketError
from .receive import ReceiveDeadline
from .service import MAX_REQUEST_BYTES, KeyManagementServicer
from .unix_socket import (
    prepare_socket_path,
    publish_socket,
    remove_socket,
    resolve_group,
    secure_socket,
    staging_path,
)

log = logging.getLogger("bao_kms.server")

SERVICE = "v2.KeyManagementService"
#: our answers are small (a 1 KiB ciphertext, a 48-byte key_id, under 1 KiB of annotations)
MAX_RESPONSE_BYTES = 64 * 1024
#: method -> its response type; requests arrive as bytes and the servicer parses them
_RESPONSES: dict[str, Any] = {
    "Status": api_pb2.StatusResponse,
    "Encrypt": api_pb2.EncryptResponse,
    "Decrypt": api_pb2.DecryptResponse,
}


class ProviderServer:
    """A started KMS v2 gRPC server bound to one Unix socket."""

    def __init__(
        self,
        servicer: KeyManagementServicer,
        settings: ServerConfig,
        *,
        interceptors: Sequence[grpc.ServerInterceptor] = (),
    ) -> None:
        self.settings = settings
        self._interceptors = tuple(interceptors)
        #: stale sockets (left by a crash, nobody listening) removed at start, for /metrics
        self.stale_sockets_removed = 0
        self.socket_path = Path(settings.socket_path)
        self._servicer = servicer
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._inode = 0
        #: cancels calls whose request message does not arrive in time; ``stalled`` counts them
        self.receiver = ReceiveDeadline()

    def _handlers(self) -> dict[str, grpc.RpcMethodHandler]:
        return {
            name: grpc.stream_unary_rpc_method_handler(
                self._receiving(getattr(self._servicer, name)),
                response_serializer=response.SerializeToString,
            )
            for name, response in _RESPONSES.items()
        }

    def _receiving(
        self, method: Callable[[bytes | None, grpc.ServicerContext], Any]
    ) -> Callable[[Iterator[bytes], grpc.ServicerContext], Any]:
        receive = self.receiver.receive

        def handle(requests: Iterator[bytes], context: grpc.ServicerContext) -> Any:
            return method(receive(requests, context), context)

        return handle

    def start(self) -> None:
        # resolve the group first: a typo must not leave a bound socket behind
        group = self.settings.socket_group
        gid = resolve_group(group) if group is not None else None
        stale = self.socket_path.is_socket()  # if prepare accepts it, it removed it as stale
        path = prepare_socket_path(self.socket_path)
        self.stale_sockets_removed += stale
        executor = futures.ThreadPoolExecutor(
            max_workers=self.settings.max_concurrent_requests, thread_name_prefix="bao-kms-rpc"
        )
        server = grpc.server(
            executor,
            interceptors=self._interceptors,
            maximum_concurrent_rpcs=self.settings.max_concurrent_requests,
            options=[
                ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
                ("grpc.max_send_message_length", MAX_RESPONSE_BYTES),
            ],
        )
        handlers = self._handlers()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_registered_method_handlers(SERVICE, handlers)
        staging = staging_path(path)
        # grpcio binds with the process umask; bind owner-only, then widen to the mode.
        previous_umask = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix:{staging}")
        except RuntimeError:
            raise SocketError(f"cannot bind socket {path}") from None
        finally:
            os.umask(previous_umask)
        try:
            self._inode = secure_socket(staging, self.settings.socket_mode, gid)
            publish_socket(staging, path)
        except SocketError:
            server.stop(None)
            staging.unlink(missing_ok=True)
            executor.shutdown(wait=False)
            raise
        server.start()
        self.receiver.start()
        self._server, self._executor = server, executor
        log.info(
            "serving KMS v2",
            extra={
                "socket": str(path),
                "mode": f"{self.settings.socket_mode:04o}",
                "max_request_bytes": MAX_REQUEST_BYTES,
            },
        )

    def remove_own_socket(self) -> None:
        """Remove the socket now if it is still ours; lock-free (a forced exit's last act)."""
        if self._inode:
            remove_socket(self.socket_path, self._inode)

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish within *grace*, remove the socket.

        The socket is removed after grpcio's own shutdown, and only if it is still the one we
        bound (same inode).
        """
        server, self._server = self._server, None
        if server is None:
            return
        grace = self.settings.grace_period if grace is None else grace
        log.info("draining", extra={"grace_seconds": grace})
        server.stop(grace).wait()
        self.receiver.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        remove_socket(self.socket_path, self._inode)
        log.info("stopped")
