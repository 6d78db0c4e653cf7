"""A KMS v2 gRPC server that does nothing: the ceiling for any Python plugin on this machine.

Same grpcio, same generated service, same Unix socket transport and message limits as the
provider; Status answers ``ok``, Encrypt and Decrypt return fixed bytes without looking at the
request. Whatever it serves per second and costs in CPU per call is what grpcio alone costs,
so the load driver reports the provider against it, in the same run, at the same concurrency.

    python benchmarks/noop_server.py --socket /tmp/x/noop.sock [--workers 64] [--aio]

``--aio`` serves the same answers from grpcio's asyncio server (``grpc.aio``): one event loop,
no thread hand-off per call. It is not the ceiling the provider is held to (the provider is a
sync grpcio server); the load driver's ``--aio-noop`` measures it beside the sync one, to show
what the server model itself costs. Serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
from concurrent import futures
from typing import Any

import grpc

from bao_kms._proto import api_pb2, api_pb2_grpc

PLAINTEXT = bytes(range(32))
CIPHERTEXT = b"vault:v1:" + b"A" * 80
KEY_ID = "obk2." + "A" * 43


class NoopServicer(api_pb2_grpc.KeyManagementServiceServicer):
    """Answers every call from constants."""

    def Status(self, request: Any, context: Any) -> api_pb2.StatusResponse:
        return api_pb2.StatusResponse(version="v2", healthz="ok", key_id=KEY_ID)

    def Encrypt(self, request: Any, context: Any) -> api_pb2.EncryptResponse:
        return api_pb2.EncryptResponse(ciphertext=CIPHERTEXT, key_id=KEY_ID)

    def Decrypt(self, request: Any, context: Any) -> api_pb2.DecryptResponse:
        return api_pb2.DecryptResponse(plaintext=PLAINTEXT)


class AsyncNoopServicer(api_pb2_grpc.KeyManagementServiceServicer):
    """The same constants, as coroutines for ``grpc.aio``."""

    async def Status(self, request: Any, context: Any) -> api_pb2.StatusResponse:
        return NoopServicer.Status(self, request, context)  # type: ignore[arg-type]

    async def Encrypt(self, request: Any, context: Any) -> api_pb2.EncryptResponse:
        return NoopServicer.Encrypt(self, request, context)  # type: ignore[arg-type]

    async def Decrypt(self, request: Any, context: Any) -> api_pb2.DecryptResponse:
        return NoopServicer.Decrypt(self, request, context)  # type: ignore[arg-type]


OPTIONS = [
    ("grpc.max_receive_message_length", 128 * 1024),
    ("grpc.max_send_message_length", 64 * 1024),
]


async def serve_aio(socket_path: str) -> None:
    server = grpc.aio.server(maximum_concurrent_rpcs=1024, options=OPTIONS)
    api_pb2_grpc.add_KeyManagementServiceServicer_to_server(AsyncNoopServicer(), server)
    server.add_insecure_port(f"unix:{socket_path}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    print("serving", flush=True)
    await stop.wait()
    await server.stop(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--workers", type=int, default=64, help="gRPC thread pool size")
    parser.add_argument("--aio", action="store_true", help="grpcio's asyncio server instead")
    args = parser.parse_args()
    if args.aio:
        asyncio.run(serve_aio(args.socket))
        return 0
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        maximum_concurrent_rpcs=1024,
        options=OPTIONS,
    )
    api_pb2_grpc.add_KeyManagementServiceServicer_to_server(NoopServicer(), server)
    server.add_insecure_port(f"unix:{args.socket}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print("serving", flush=True)
    stop.wait()
    server.stop(1).wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
