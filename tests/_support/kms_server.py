"""The real gRPC server and servicer in-process, on fakes of the monitor and Transit.

For tests of what a hostile *client* can do: the request path is real end to end (socket,
grpcio, the receive deadline, parsing, validation, worker slots), while OpenBao is a counting
fake, so "no OpenBao call" is exact and the tests need no ``bao`` binary.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from bao_kms.api.server import ProviderServer
from bao_kms.api.service import KeyManagementServicer
from bao_kms.config import ServerConfig
from bao_kms.identity import Identity, KeyVersion
from bao_kms.status import Health

SERVICE = "/v2.KeyManagementService/"
IDENTITY = Identity("provider", "cluster", "instance", "", "mount", "lineage")
V1 = IDENTITY.key_version(1, 1_700_000_000)


class HealthyMonitor:
    """A monitor that knows one key version and is always healthy."""

    def __init__(self) -> None:
        self.lookups = 0

    def health(self) -> Health:
        return Health(True, (), V1.key_id, 1.0)

    def encrypt_version(self) -> KeyVersion:
        return V1

    def known(self, key_id: str) -> KeyVersion | None:
        return V1 if key_id == V1.key_id else None

    def lookup(self, key_id: str, *, deadline: float | None = None) -> KeyVersion:
        from bao_kms.errors import UnknownKeyId

        self.lookups += 1
        raise UnknownKeyId("key_id does not name a key version this provider knows")


def sealed(plaintext_length: int, version: int = 1) -> bytes:
    """A Transit-shaped ciphertext: nonce (12) + sealed plaintext + tag (16), base64."""
    body = base64.b64encode(bytes(12 + plaintext_length + 16))
    return f"vault:v{version}:".encode() + body


class CountingTransit:
    """Transit that counts calls; *hold* (an Event) makes each call wait until it is set."""

    def __init__(self, hold: threading.Event | None = None) -> None:
        self.encrypts = 0
        self.decrypts = 0
        self.hold = hold
        #: what decrypt returns; None: zeros of the length the ciphertext seals
        self.plaintext: bytes | None = None

    def encrypt(
        self, plaintext: bytes, key_version: int, associated_data: str, *, deadline=None
    ) -> bytes:
        self.encrypts += 1
        if self.hold is not None:
            self.hold.wait(30)
        return sealed(len(plaintext), key_version)

    def decrypt(
        self, ciphertext: bytes, associated_data: str, *, deadline=None, arrived=None
    ) -> bytes:
        self.decrypts += 1
        if self.hold is not None:
            self.hold.wait(30)
        if self.plaintext is not None:
            return self.plaintext
        return bytes(len(base64.b64decode(ciphertext.rpartition(b":")[2])) - 28)


@dataclass
class Served:
    server: ProviderServer
    servicer: KeyManagementServicer
    transit: CountingTransit
    channel: grpc.Channel
    socket_path: Path

    def raw(self, method: str) -> grpc.UnaryUnaryMultiCallable:
        """A callable sending raw bytes to *method* and returning the raw answer."""
        return self.channel.unary_unary(SERVICE + method)

    @property
    def openbao_calls(self) -> int:
        return self.transit.encrypts + self.transit.decrypts


@contextmanager
def serving(
    socket_dir: Path,
    *,
    workers: int = 4,
    max_concurrent_requests: int = 256,
    transit: CountingTransit | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> Iterator[Served]:
    transit = transit or CountingTransit()
    settings = ServerConfig(
        socket_path=str(socket_dir / "kms.sock"),
        workers=workers,
        max_concurrent_requests=max_concurrent_requests,
        grace_period="1s",
    )
    servicer = KeyManagementServicer(HealthyMonitor(), transit, workers=workers)
    server = ProviderServer(servicer, settings, interceptors=interceptors)
    server.start()
    channel = grpc.insecure_channel(f"unix:{settings.socket_path}")
    try:
        yield Served(server, servicer, transit, channel, Path(settings.socket_path))
    finally:
        channel.close()
        server.stop(0)
