"""The gRPC server's lifecycle on a Unix socket: bind safely, start, drain, stop, clean up.

The servicer holds the logic; this module only owns the socket and the thread pool. Calls
beyond ``max_concurrent_requests`` are refused by grpcio with RESOURCE_EXHAUSTED (the bounded
queue), and oversized messages are refused before they are parsed.
"""

from __future__ import annotations

import logging
import os
from concurrent import futures
from pathlib import Path

import grpc

from .._proto import api_pb2_grpc
from ..config import ServerConfig
from ..errors import SocketError
from .unix_socket import prepare_socket_path, remove_socket, resolve_group, secure_socket

log = logging.getLogger("bao_kms.server")

#: the largest request kube-apiserver sends is a Decrypt of ~1 KiB ciphertext and <=32 KiB of
#: annotations; anything far larger is not from it
MAX_MESSAGE_BYTES = 128 * 1024


class ProviderServer:
    """A started KMS v2 gRPC server bound to one Unix socket."""

    def __init__(
        self, servicer: api_pb2_grpc.KeyManagementServiceServicer, settings: ServerConfig
    ) -> None:
        self.settings = settings
        self.socket_path = Path(settings.socket_path)
        self._servicer = servicer
        self._server: grpc.Server | None = None
        self._inode = 0

    def start(self) -> None:
        # resolve the group first: a typo must not leave a bound socket behind
        group = self.settings.socket_group
        gid = resolve_group(group) if group is not None else None
        path = prepare_socket_path(self.socket_path)
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self.settings.workers, thread_name_prefix="bao-kms-rpc"
            ),
            maximum_concurrent_rpcs=self.settings.max_concurrent_requests,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        api_pb2_grpc.add_KeyManagementServiceServicer_to_server(self._servicer, server)
        # grpcio binds here with the process umask; bind owner-only, then widen to the mode.
        previous_umask = os.umask(0o177)
        try:
            server.add_insecure_port(f"unix:{path}")
        except RuntimeError:
            raise SocketError(f"cannot bind socket {path}") from None
        finally:
            os.umask(previous_umask)
        try:
            self._inode = secure_socket(path, self.settings.socket_mode, gid)
        except SocketError:
            server.stop(None)
            path.unlink(missing_ok=True)
            raise
        server.start()
        self._server = server
        log.info(
            "serving KMS v2",
            extra={"socket": str(path), "mode": f"{self.settings.socket_mode:04o}"},
        )

    def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let in-flight ones finish within *grace*, remove the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        grace = self.settings.grace_period if grace is None else grace
        log.info("draining", extra={"grace_seconds": grace})
        server.stop(grace).wait()
        remove_socket(self.socket_path, self._inode)
        log.info("stopped")
