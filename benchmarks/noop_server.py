"""A KMS v2 gRPC server that does nothing: the ceiling for any Python plugin on this machine.

Same grpcio, same generated service, same Unix socket transport and message limits as the
provider; Status answers ``ok``, Encrypt and Decrypt return fixed bytes without looking at the
request. Whatever it serves per second and costs in CPU per call is what grpcio alone costs,
so the load driver reports the provider against it, in the same run, at the same concurrency.

    python benchmarks/noop_server.py --socket /tmp/x/noop.sock [--workers 64] [--aio]
                                     [--decrypt-wait 0.0009 [--batched]]

``--aio`` serves the same answers from grpcio's asyncio server (``grpc.aio``): one event loop,
no thread hand-off per call. It is not the ceiling the provider is held to (the provider is a
sync grpcio server); the load driver's ``--aio-noop`` measures it beside the sync one, to show
what the server model itself costs.

``--decrypt-wait SECONDS`` makes each Decrypt wait that long (sleeping, no CPU) before it
answers, as a plugin does while Transit decrypts: with the direct Transit latency there, it is
the lowest latency any plugin on grpcio's sync server can answer a lone Decrypt in. A handler
that blocks costs grpcio more than the wait itself (its threads sleep and wake again), so this
floor is higher than the no-op's latency plus the wait. With ``--batched`` the Decrypts wait
together instead, in batches (:class:`BatchedWait`): the shape of micro-batching with none of
its work, the floor for any batching plugin on this server model. Serves until SIGTERM or
SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import threading
import time
from concurrent import futures
from typing import Any

import grpc

from bao_kms._proto import api_pb2, api_pb2_grpc

PLAINTEXT = bytes(range(32))
CIPHERTEXT = b"vault:v1:" + b"A" * 80
KEY_ID = "obk2." + "A" * 43


class BatchedWait:
    """Decrypts wait in batches, as a micro-batching plugin's do: each call queues and blocks;
    one sender thread takes every queued call, waits *wait* seconds (one OpenBao batch request
    that costs this process no CPU) and wakes them. What is left is the shape alone: one
    block and one wake by another thread per call, one sender wake per batch."""

    def __init__(self, wait: float) -> None:
        self.wait = wait
        self._queued: list[threading.Lock] = []
        self._ready = threading.Condition()
        threading.Thread(target=self._send, name="noop-batch-sender", daemon=True).start()

    def __call__(self) -> None:
        done = threading.Lock()
        done.acquire()
        with self._ready:
            self._queued.append(done)
            self._ready.notify()
        done.acquire()

    def _send(self) -> None:
        while True:
            with self._ready:
                while not self._queued:
                    self._ready.wait()
                batch, self._queued = self._queued, []
            time.sleep(self.wait)
            for done in batch:
                done.release()


class NoopServicer(api_pb2_grpc.KeyManagementServiceServicer):
    """Answers every call from constants; Decrypt after *decrypt_wait* seconds (alone, or in
    a batch with the Decrypts queued together when *batched*)."""

    def __init__(self, decrypt_wait: float = 0.0, *, batched: bool = False) -> None:
        self.decrypt_wait = decrypt_wait
        self._batched = BatchedWait(decrypt_wait) if batched else None

    def Status(self, request: Any, context: Any) -> api_pb2.StatusResponse:
        return api_pb2.StatusResponse(version="v2", healthz="ok", key_id=KEY_ID)

    def Encrypt(self, request: Any, context: Any) -> api_pb2.EncryptResponse:
        return api_pb2.EncryptResponse(ciphertext=CIPHERTEXT, key_id=KEY_ID)

    def Decrypt(self, request: Any, context: Any) -> api_pb2.DecryptResponse:
        if self._batched is not None:
            self._batched()
        elif self.decrypt_wait:
            time.sleep(self.decrypt_wait)
        return api_pb2.DecryptResponse(plaintext=PLAINTEXT)


class AsyncNoopServicer(api_pb2_grpc.KeyManagementServiceServicer):
    """The same constants, as coroutines for ``grpc.aio``."""

    def __init__(self, decrypt_wait: float = 0.0) -> None:
        self.decrypt_wait = decrypt_wait

    async def Status(self, request: Any, context: Any) -> api_pb2.StatusResponse:
        return NoopServicer.Status(self, request, context)  # type: ignore[arg-type]

    async def Encrypt(self, request: Any, context: Any) -> api_pb2.EncryptResponse:
        return NoopServicer.Encrypt(self, request, context)  # type: ignore[arg-type]

    async def Decrypt(self, request: Any, context: Any) -> api_pb2.DecryptResponse:
        if self.decrypt_wait:
            await asyncio.sleep(self.decrypt_wait)
        return api_pb2.DecryptResponse(plaintext=PLAINTEXT)


OPTIONS = [
    ("grpc.max_receive_message_length", 128 * 1024),
    ("grpc.max_send_message_length", 64 * 1024),
]


async def serve_aio(socket_path: str, decrypt_wait: float) -> None:
    server = grpc.aio.server(maximum_concurrent_rpcs=1024, options=OPTIONS)
    servicer = AsyncNoopServicer(decrypt_wait)
    api_pb2_grpc.add_KeyManagementServiceServicer_to_server(servicer, server)
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
    parser.add_argument(
        "--decrypt-wait", type=float, default=0.0, help="seconds each Decrypt waits (default 0)"
    )
    parser.add_argument(
        "--batched", action="store_true", help="Decrypts wait in batches (sync server only)"
    )
    args = parser.parse_args()
    if not 0 <= args.decrypt_wait <= 10:
        parser.error("--decrypt-wait must be 0 to 10 seconds")
    if args.batched and args.aio:
        parser.error("--batched is for the sync server only")
    if args.aio:
        asyncio.run(serve_aio(args.socket, args.decrypt_wait))
        return 0
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        maximum_concurrent_rpcs=1024,
        options=OPTIONS,
    )
    api_pb2_grpc.add_KeyManagementServiceServicer_to_server(
        NoopServicer(args.decrypt_wait, batched=args.batched), server
    )
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
