"""Building blocks of the load driver: child processes, /proc readings, the closed-loop load.

Everything the driver measures is measured the same way for every phase: the same closed loop
of C client threads over pre-built requests (so the client spends as little CPU as it can on
this shared machine), the same percentiles, the same CPU and memory readings of the server
process from ``/proc/<pid>``. Child processes are stopped by PID, SIGTERM first.
"""

from __future__ import annotations

import base64
import itertools
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bao_kms._proto import api_pb2
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.identity import KeyVersion

SERVICE = "/v2.KeyManagementService/"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes -----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process *pid* so far (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


class Child:
    """A process this driver started; its output goes to *log*; stopped by PID."""

    def __init__(self, argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None):
        self.argv = list(argv)
        self.log_path = log
        self._log = log.open("ab")
        self.popen = subprocess.Popen(
            self.argv, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far (all its threads)."""
        return cpu_seconds(self.pid)

    def memory_mib(self) -> dict[str, float]:
        """Resident set now (VmRSS) and its peak since start (VmHWM), in MiB."""
        values: dict[str, float] = {}
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM"):
                    values["rss" if name == "VmRSS" else "peak"] = int(rest.split()[0]) / 1024
        return values

    def stop(self, timeout: float = 20.0) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self._log.close()


# --- gRPC calls over pre-serialized requests -----------------------------------------------------


class KmsCalls:
    """One channel to a KMS v2 socket, as kube-apiserver holds one, with raw-bytes requests."""

    def __init__(self, socket_path: Path, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            f"unix://{socket_path}",
            options=[("grpc.default_authority", "localhost"), ("grpc.enable_retries", 0)],
        )
        # request_serializer None: the requests are bytes already, built before the clock runs
        self.status = self.channel.unary_unary(
            SERVICE + "Status", response_deserializer=api_pb2.StatusResponse.FromString
        )
        self.encrypt = self.channel.unary_unary(
            SERVICE + "Encrypt", response_deserializer=api_pb2.EncryptResponse.FromString
        )
        self.decrypt = self.channel.unary_unary(
            SERVICE + "Decrypt", response_deserializer=api_pb2.DecryptResponse.FromString
        )
        self.status_request = api_pb2.StatusRequest().SerializeToString()

    def wait_ok(self, seconds: float, child: Child | None = None) -> str:
        """Poll Status until healthz is ``ok``; returns the key_id."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if child is not None and not child.alive():
                tail = child.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{child.argv[:4]} exited:\n{tail}")
            try:
                answer = self.status(self.status_request, timeout=1)
                if answer.healthz == "ok":
                    return answer.key_id
            except grpc.RpcError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the server did not answer Status ok in time")

    def close(self) -> None:
        self.channel.close()


# --- the closed loop -----------------------------------------------------------------------------


@dataclass
class Run:
    """What one phase measured; times in milliseconds, CPU in seconds of the server process."""

    name: str
    concurrency: int
    calls: int
    seconds: float
    per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_seconds: float | None = None
    cpu_ms_per_call: float | None = None
    #: the calling process's CPU (the client threads; servers run in other processes)
    client_cpu_ms_per_call: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        cpu = f"  cpu {self.cpu_ms_per_call:.3f} ms/call" if self.cpu_ms_per_call else ""
        errors = f"  errors {self.errors}" if self.errors else ""
        more = "".join(f"  {k} {v}" for k, v in self.extra.items())
        return (
            f"{self.name:34s} C={self.concurrency:<3d} {self.calls:6d} calls "
            f"{self.per_second:8.0f}/s  p50 {self.p50_ms:6.2f}  p99 {self.p99_ms:6.2f} ms"
            f"{cpu}{errors}{more}"
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank percentile of already sorted samples, in milliseconds."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000


def closed_loop(
    name: str,
    call: Callable[[int], None],
    calls: int,
    concurrency: int,
    *,
    max_seconds: float = 120.0,
    server: Child | None = None,
) -> Run:
    """Call ``call(i)`` for i in 0..calls-1 from *concurrency* threads, each starting its next
    call when its last one ends; all threads start together. Stops early at *max_seconds*."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    numbers = itertools.count()
    start = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def worker() -> None:
        mine: list[float] = []
        start.wait()
        clock = time.perf_counter
        while True:
            index = next(numbers)
            if index >= calls or clock() > stop_at[0]:
                break
            began = clock()
            try:
                call(index)
            except grpc.RpcError as error:
                with lock:
                    errors[error.code().name] += 1
                continue
            except Exception as error:  # noqa: BLE001 - counted and reported, never hidden
                with lock:
                    errors[type(error).__name__] += 1
                continue
            mine.append(clock() - began)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    cpu_before = server.cpu_seconds() if server is not None else None
    client_before = time.process_time()
    stop_at[0] = time.perf_counter() + max_seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    client_cpu = time.process_time() - client_before
    cpu = None
    if server is not None and cpu_before is not None:
        cpu = server.cpu_seconds() - cpu_before
    ordered = sorted(latencies)
    done = len(ordered)
    return Run(
        name=name,
        concurrency=concurrency,
        calls=done,
        seconds=round(wall, 4),
        per_second=done / wall if wall else 0.0,
        p50_ms=percentile(ordered, 0.50),
        p90_ms=percentile(ordered, 0.90),
        p99_ms=percentile(ordered, 0.99),
        errors=dict(errors),
        server_cpu_seconds=cpu,
        cpu_ms_per_call=(cpu / done * 1000) if cpu is not None and done else None,
        client_cpu_ms_per_call=(client_cpu / done * 1000) if done else None,
    )


def scrape(address: str) -> dict[str, float]:
    """Prometheus samples of a provider's /metrics, ``name{labels}`` -> value."""
    import urllib.request

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- sealed DEK seeds --------------------------------------------------------------------------


def seal_seeds(
    openbao: EmbeddedOpenBao, version: KeyVersion, count: int, key_path: str = "transit/encrypt/kms"
) -> list[tuple[bytes, bytes]]:
    """*count* fresh (seed, ciphertext) pairs: 32-byte seeds no provider has decrypted before,
    sealed under *version*'s AAD by Transit batch encrypt, 150 a request."""
    sealed: list[tuple[bytes, bytes]] = []
    while len(sealed) < count:
        seeds = [os.urandom(32) for _ in range(min(150, count - len(sealed)))]
        batch = [
            {
                "plaintext": base64.b64encode(seed).decode(),
                "associated_data": version.associated_data,
                "key_version": version.version,
            }
            for seed in seeds
        ]
        answer = openbao.api("POST", key_path, {"batch_input": batch})
        results = answer["data"]["batch_results"]
        sealed += [(s, r["ciphertext"].encode()) for s, r in zip(seeds, results, strict=True)]
    return sealed
