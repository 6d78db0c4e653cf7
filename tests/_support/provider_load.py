"""A provider started from a config document, and a mixed Encrypt/Decrypt load against it.

:class:`LoadedProvider` builds its pool from the config the way production does (client
certificate, ``tlsServerName``), counting requests by path. :func:`run_load` drives Encrypt and
Decrypt from several threads for a while, runs scheduled events (revoke, kill a node) on the
way, and records every failure with its time: what the auth tests assert on.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from _support import CountingPool, wait_for
from bao_kms.api.client import KmsClient
from bao_kms.config import ServerConfig, parse_config
from bao_kms.embedded import free_port
from bao_kms.openbao import make_pool
from bao_kms.provider import Provider


class LoadedProvider:
    """A started provider, its counting pool and a client on its socket."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.config = parse_config(private_ops_listeners(document))
        openbao = self.config.openbao
        self.pool: CountingPool = make_pool(  # type: ignore[assignment]
            ca_file=openbao.ca_file,
            client_cert=self.config.tls_client_certificate(),
            server_hostname=openbao.tls_server_name,
            maxsize=self.config.server.workers + 2,
            pool_class=CountingPool,
        )
        self.provider = Provider(self.config, pool=self.pool)
        self.client = KmsClient(Path(self.config.server.socket_path), timeout=5.0)

    @property
    def stats(self) -> Any:
        return self.provider.auth.stats

    def start(self) -> LoadedProvider:
        self.provider.start()
        return self

    def healthz(self) -> str:
        return str(self.client.status().healthz)

    def wait_healthz(self, word: str, timeout: float = 20.0) -> None:
        """Wait until Status is *word* (``ok`` or a reason among those listed)."""

        def reached() -> bool:
            healthz = self.healthz()
            return healthz == word or word in healthz.split(",")

        wait_for(reached, timeout)

    def stop(self) -> None:
        self.client.close()
        self.provider.stop(grace=1.0)


@dataclass
class LoadResult:
    seconds: float
    calls: dict[str, int] = field(default_factory=lambda: {"encrypt": 0, "decrypt": 0})
    #: (seconds since start, operation, gRPC code name, message)
    failures: list[tuple[float, str, str, str]] = field(default_factory=list)
    #: seconds since start of each successful call, per operation (for recovery times)
    successes: dict[str, list[float]] = field(
        default_factory=lambda: {"encrypt": [], "decrypt": []}
    )

    def failed(self, operation: str = "", after: float = 0.0) -> list[tuple[float, str, str, str]]:
        return [f for f in self.failures if f[0] >= after and (not operation or f[1] == operation)]

    def first_success_after(self, moment: float) -> float:
        times = [t for op in self.successes.values() for t in op if t >= moment]
        return min(times) - moment if times else float("inf")

    def summary(self) -> str:
        return (
            f"{self.seconds:.0f} s: {self.calls['encrypt']} encrypts, "
            f"{self.calls['decrypt']} decrypts, {len(self.failures)} failures"
        )


def run_load(
    client: KmsClient,
    seconds: float,
    *,
    workers: int = 6,
    events: tuple[tuple[float, Callable[[], object]], ...] = (),
) -> LoadResult:
    """Encrypt a fresh seed, decrypt it, check it, repeat, from *workers* threads; *events* run
    on this thread at their offsets (seconds from the start)."""
    result = LoadResult(seconds)
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def record(operation: str, error: grpc.RpcError | None) -> None:
        moment = time.monotonic() - started
        with lock:
            result.calls[operation] += 1
            if error is None:
                result.successes[operation].append(moment)
            else:
                code = error.code().name if hasattr(error, "code") else "?"
                details = error.details() if hasattr(error, "details") else str(error)
                result.failures.append((moment, operation, code, details or ""))

    def worker() -> None:
        while not stop.is_set():
            seed = os.urandom(32)
            try:
                encrypted = client.encrypt(seed)
            except grpc.RpcError as error:
                record("encrypt", error)
                time.sleep(0.01)
                continue
            record("encrypt", None)
            try:
                answer = client.decrypt(
                    encrypted.ciphertext, encrypted.key_id, encrypted.annotations
                )
                assert answer.plaintext == seed
            except grpc.RpcError as error:
                record("decrypt", error)
                time.sleep(0.01)
                continue
            record("decrypt", None)

    threads = [threading.Thread(target=worker, name=f"load-{i}") for i in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for offset, event in sorted(events, key=lambda item: item[0]):
            time.sleep(max(0.0, started + offset - time.monotonic()))
            event()
        time.sleep(max(0.0, started + seconds - time.monotonic()))
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    return result


def private_ops_listeners(document: dict[str, Any]) -> dict[str, Any]:
    """Give /live, /ready and /metrics a free port: tests run several providers at once."""
    server = document.setdefault("server", {})
    fields = {field.alias for field in ServerConfig.model_fields.values()}
    for key in ("healthAddress", "metricsAddress"):
        if key in fields and key not in server:
            server[key] = f"127.0.0.1:{free_port()}"
    return document


def load_seconds(default: float) -> float:
    """The load duration: *default* in CI, ``BAO_KMS_AUTH_LOAD_SECONDS`` for a longer run."""
    return float(os.environ.get("BAO_KMS_AUTH_LOAD_SECONDS", default))
