"""A live round trip through the provider's socket: Status, Encrypt, Decrypt, compare.

This is what ``bao-kms-provider probe`` and ``dev`` run; it speaks to the socket exactly as
kube-apiserver does, so a passing probe means the apiserver will be able to use the provider.
The socket may be given as a path or as the ``unix:///...`` endpoint of an
EncryptionConfiguration (:func:`bao_kms.api.client.socket_path` reads both).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import asdict, dataclass, field

import grpc

from .client import KmsClient

SEED_BYTES = 32


@dataclass
class ProbeReport:
    ok: bool = False
    healthz: str = ""
    status_key_id: str = ""
    encrypt_key_id: str = ""
    ciphertext_bytes: int = 0
    problem: str = ""
    #: per-RPC latency in milliseconds over all rounds: p50 / p99 / max
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    rounds: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


def run_probe(
    endpoint: str | os.PathLike[str], *, timeout: float = 3.0, rounds: int = 1
) -> ProbeReport:
    """Round-trip *rounds* random seeds; ``ok`` only if every one matched and key_ids agreed.

    Raises :class:`~bao_kms.api.client.InvalidSocketEndpoint` for an endpoint that names no
    Unix socket path; every other failure is reported in the returned report.
    """
    report = ProbeReport()
    timings: dict[str, list[float]] = {"status": [], "encrypt": [], "decrypt": []}
    with KmsClient(endpoint, timeout=timeout) as client:
        try:
            for _ in range(rounds):
                started = time.perf_counter()
                status = client.status()
                timings["status"].append(time.perf_counter() - started)
                report.healthz, report.status_key_id = status.healthz, status.key_id
                if status.version != "v2":
                    report.problem = "Status version is not v2"
                    return report
                if status.healthz != "ok":
                    report.problem = f"Status healthz is {status.healthz!r}"
                    return report
                seed = os.urandom(SEED_BYTES)
                started = time.perf_counter()
                encrypted = client.encrypt(seed, uid="bao-kms-provider-probe")
                timings["encrypt"].append(time.perf_counter() - started)
                report.encrypt_key_id = encrypted.key_id
                report.ciphertext_bytes = len(encrypted.ciphertext)
                if encrypted.key_id != status.key_id:
                    report.problem = "Encrypt key_id differs from Status key_id"
                    return report
                started = time.perf_counter()
                decrypted = client.decrypt(
                    encrypted.ciphertext, encrypted.key_id, encrypted.annotations
                )
                timings["decrypt"].append(time.perf_counter() - started)
                if decrypted.plaintext != seed:
                    report.problem = "Decrypt returned other bytes than were encrypted"
                    return report
                report.rounds += 1
        except grpc.RpcError as error:
            report.problem = f"{error.code().name}: {error.details()}"
            return report
        finally:
            report.latency_ms = {name: _summary(s) for name, s in timings.items() if s}
    report.ok = report.rounds == rounds > 0
    return report
