"""Soak: a mixed Status/Encrypt/Decrypt load on ``bao-kms-provider serve`` for a set time, with
OpenBao restarted mid-way, and the provider's memory, threads and descriptors watched.

A fresh single-node raft OpenBao (it keeps its keys across restarts, unlike a dev server) and
the provider in its own process, as a node runs them. Client threads call the socket at a set
total rate (kube-apiserver is no benchmark: it polls Status, encrypts a DEK seed now and then,
and decrypts on cache misses); every Decrypt asks for a seed this run encrypted, so a wrong
plaintext is caught on the spot. OpenBao is stopped ``--restarts`` times, evenly spread over the
middle of the run, for ``--outage`` each; the run records how long Status took to turn
unhealthy and to recover.

Figures: calls and errors by code per RPC, p50/p99 of successful calls, RSS (VmRSS), thread
and fd counts of the provider at launch, after warm-up and at the end (``/proc/<pid>``).
Bounds (exit 1 when one is broken):

* RSS growth from warm-up to the end <= ``--max-rss-growth-mib`` (32); the warm-up (10% of
  the run, 2..30 s) is excluded because the first calls allocate grpcio's and the pool's
  buffers once, which is not a leak. It ends with bursts of concurrent Status calls at twice
  the load's concurrency, which grow grpcio's lazily started executor threads past anything
  the load reaches later (see :func:`_burst`);
* threads and fds *flat*: the end count at most ``--thread-tolerance`` (2) and
  ``--fd-tolerance`` (the OpenBao pool's size, workers + 2) above the warm-up count: the
  pool may hold a few more idle keep-alive connections after a restart than before, a leak
  grows without bound;
* no wrong plaintext, no INTERNAL or UNKNOWN, the key_id never changes, OpenBao came back
  after every restart, and no more than ``--max-unexpected-errors`` (0) failed calls outside
  the outage windows (a window runs from the stop until Status is ok again plus 2 s).

    python benchmarks/soak.py --duration 10m --output soak.json     # the record
    python benchmarks/soak.py --duration 20s --restarts 1 --outage 2s   # a smoke

Every process is started and stopped by PID; the OpenBao child dies with this process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from evidence_stack import CALL_TIMEOUT, WORKERS, ProviderProcess, Stack

from bao_kms.api.client import KmsClient
from bao_kms.config import parse_duration

#: errors during an outage are expected until Status is ok again and this long after
SETTLE = 2.0


# --- the load ------------------------------------------------------------------------------


@dataclass
class Written:
    seed: bytes
    ciphertext: bytes
    key_id: str
    annotations: dict[str, bytes]


@dataclass
class Tally:
    """Every call's outcome; shared by the client threads."""

    started: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    codes: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[tuple[float, str, str]] = field(default_factory=list)
    wrong_plaintext: int = 0
    key_ids: set[str] = field(default_factory=set)
    written: list[Written] = field(default_factory=list)

    def record(self, rpc: str, code: str, seconds: float) -> None:
        with self.lock:
            self.codes.setdefault(rpc, Counter())[code] += 1
            if code == "OK":
                self.latencies.setdefault(rpc, []).append(seconds)
            else:
                self.failures.append((time.monotonic() - self.started, rpc, code))


def percentile_ms(samples: list[float], q: float) -> float | None:
    """The nearest-rank percentile of *samples* (seconds) in milliseconds; None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000, 3)


class Load:
    """Client threads calling at *rate* calls/s in total: 20% Status, 10% Encrypt, 70% Decrypt
    of a seed encrypted earlier in the run (at most 2000 kept)."""

    KEEP = 2000

    def __init__(self, socket_path: Path, tally: Tally, *, threads: int, rate: float) -> None:
        self.socket_path, self.tally = socket_path, tally
        self.interval = threads / rate
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._worker, args=(index,), name=f"soak-{index}")
            for index in range(threads)
        ]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(CALL_TIMEOUT + 5)

    def _worker(self, index: int) -> None:
        rng = random.Random(index)
        tally = self.tally
        with KmsClient(self.socket_path, timeout=CALL_TIMEOUT) as client:
            next_at = time.monotonic() + rng.random() * self.interval
            while not self.stop.is_set():
                now = time.monotonic()
                if next_at > now:
                    self.stop.wait(next_at - now)
                # behind schedule (an outage, a slow call): skip ahead, no burst to catch up
                next_at = max(next_at + self.interval, time.monotonic() - 1.0)
                roll = rng.random()
                with tally.lock:
                    target = rng.choice(tally.written) if tally.written else None
                rpc = (
                    "Status" if roll < 0.2 else "Encrypt" if roll < 0.3 or not target else "Decrypt"
                )
                began = time.perf_counter()
                try:
                    self._call(client, rpc, target, rng)
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                tally.record(rpc, code, time.perf_counter() - began)

    def _call(
        self, client: KmsClient, rpc: str, target: Written | None, rng: random.Random
    ) -> None:
        tally = self.tally
        if rpc == "Status":
            answer = client.status()
            if answer.healthz == "ok":
                with tally.lock:
                    tally.key_ids.add(answer.key_id)
        elif rpc == "Encrypt":
            seed = rng.randbytes(32)
            reply = client.encrypt(seed)
            written = Written(seed, reply.ciphertext, reply.key_id, dict(reply.annotations))
            with tally.lock:
                tally.key_ids.add(reply.key_id)
                if len(tally.written) < self.KEEP:
                    tally.written.append(written)
                else:
                    tally.written[rng.randrange(self.KEEP)] = written
        else:
            assert target is not None
            reply = client.decrypt(target.ciphertext, target.key_id, target.annotations)
            if reply.plaintext != target.seed:
                with tally.lock:
                    tally.wrong_plaintext += 1


# --- the run -------------------------------------------------------------------------------


@dataclass
class Settings:
    duration: float = 600.0
    restarts: int = 2
    outage: float = 5.0
    rate: float = 100.0
    threads: int = 4
    sample_interval: float = 5.0
    max_rss_growth_mib: float = 32.0
    thread_tolerance: int = 2
    fd_tolerance: int = WORKERS + 2
    max_unexpected_errors: int = 0
    max_recovery_seconds: float = 30.0

    @property
    def warmup(self) -> float:
        return min(30.0, max(2.0, self.duration * 0.1))


def _burst(provider: ProviderProcess, calls: int, rounds: int = 5) -> None:
    """Concurrent Status calls on the provider's channel, all released at once.

    grpcio's executor starts a thread only when a call finds none idle, so the pool grows to
    the most calls ever in flight at once; an outage piles up calls the first time. This grows
    it to twice the load's concurrency before the baseline, so growth after it is not the pool
    filling up (that is bounded by config) but a leak.
    """
    gate = threading.Barrier(calls)

    def call() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            gate.wait(5)
        with contextlib.suppress(grpc.RpcError):
            provider.client.status()

    for _ in range(rounds):
        threads = [threading.Thread(target=call) for _ in range(calls)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(CALL_TIMEOUT + 5)
        gate.reset()


def _restart(
    stack: Stack, provider: ProviderProcess, outage: float, clock: float
) -> dict[str, Any]:
    """Stop OpenBao for *outage* seconds, start it again, time Status's way down and up."""
    stopped = time.monotonic()
    stack.openbao.stop()
    unhealthy_after, reason = None, ""
    while time.monotonic() - stopped < outage:
        healthz = provider.healthz()
        if healthz != "ok" and unhealthy_after is None:
            unhealthy_after, reason = round(time.monotonic() - stopped, 2), healthz
        time.sleep(0.1)
    stack.openbao.start()  # the main thread: see Stack
    started = time.monotonic()
    recovered_after = None
    while time.monotonic() - started < 120:
        if provider.healthz() == "ok":
            recovered_after = round(time.monotonic() - started, 2)
            break
        time.sleep(0.1)
    return {
        "at_s": round(stopped - clock, 1),
        "down_s": round(started - stopped, 2),
        "unhealthy_after_s": unhealthy_after,
        "unhealthy_reason": reason,
        "recovered_after_s": recovered_after,
        "window_s": [round(stopped - clock, 2), round(time.monotonic() - clock + SETTLE, 2)],
    }


def run_soak(stack: Stack, provider: ProviderProcess, settings: Settings) -> dict[str, Any]:
    """Drive the load for ``settings.duration`` with the restarts; the report (``ok`` inside)."""
    launch = provider.stats()
    began = time.monotonic()
    tally = Tally(started=began)
    restart_at = [
        settings.duration * (i + 1) / (settings.restarts + 1) for i in range(settings.restarts)
    ]
    samples: list[dict[str, float]] = []
    restarts: list[dict[str, Any]] = []
    warm: dict[str, float] | None = None
    with Load(provider.socket_path, tally, threads=settings.threads, rate=settings.rate):
        next_sample = 0.0
        while (elapsed := time.monotonic() - began) < settings.duration:
            if warm is None and elapsed >= settings.warmup:
                _burst(provider, 2 * (settings.threads + 1))
                time.sleep(1.0)  # let the burst's calls finish and their buffers go
                warm = {"t_s": round(time.monotonic() - began, 1), **provider.stats()}
            if restart_at and elapsed >= restart_at[0]:
                restart_at.pop(0)
                restarts.append(_restart(stack, provider, settings.outage, began))
                continue
            if elapsed >= next_sample:
                samples.append({"t_s": round(elapsed, 1), **provider.stats()})
                next_sample = elapsed + settings.sample_interval
            time.sleep(min(0.2, max(0.0, settings.duration - elapsed)))
        end = {"t_s": round(time.monotonic() - began, 1), **provider.stats()}
    return judge(settings, tally, launch, warm or end, end, samples, restarts)


def judge(
    settings: Settings,
    tally: Tally,
    launch: dict[str, float],
    warm: dict[str, float],
    end: dict[str, float],
    samples: list[dict[str, float]],
    restarts: list[dict[str, Any]],
) -> dict[str, Any]:
    windows = [r["window_s"] for r in restarts]
    unexpected = Counter(
        f"{rpc} {code}"
        for at, rpc, code in tally.failures
        if not any(start <= at <= stop for start, stop in windows)
    )
    errors: Counter[str] = Counter()
    for codes in tally.codes.values():
        errors.update({code: n for code, n in codes.items() if code != "OK"})
    recoveries = [r["recovered_after_s"] for r in restarts]
    bounds = {
        "rss_growth_mib": (round(end["rss_mib"] - warm["rss_mib"], 1), settings.max_rss_growth_mib),
        "thread_growth": (end["threads"] - warm["threads"], settings.thread_tolerance),
        "fd_growth": (end["fds"] - warm["fds"], settings.fd_tolerance),
        "wrong_plaintext": (tally.wrong_plaintext, 0),
        "internal_or_unknown": (errors["INTERNAL"] + errors["UNKNOWN"], 0),
        "key_ids_seen_minus_one": (max(0, len(tally.key_ids) - 1), 0),
        "unexpected_errors": (sum(unexpected.values()), settings.max_unexpected_errors),
        "slowest_recovery_s": (
            max((r if r is not None else float("inf")) for r in recoveries) if recoveries else 0.0,
            settings.max_recovery_seconds,
        ),
    }
    judged = {
        name: {"value": value, "limit": limit, "ok": value <= limit}
        for name, (value, limit) in bounds.items()
    }
    calls = {
        rpc: {
            "calls": sum(codes.values()),
            "ok": codes["OK"],
            "errors": {code: n for code, n in sorted(codes.items()) if code != "OK"},
            "p50_ms": percentile_ms(tally.latencies.get(rpc, []), 0.50),
            "p99_ms": percentile_ms(tally.latencies.get(rpc, []), 0.99),
        }
        for rpc, codes in sorted(tally.codes.items())
    }
    return {
        "settings": {**vars(settings), "warmup": settings.warmup},
        "calls": calls,
        "total_calls": sum(c["calls"] for c in calls.values()),
        "errors_by_code": dict(sorted(errors.items())),
        "unexpected_errors": dict(unexpected),
        "restarts": restarts,
        "resources": {"launch": launch, "warm": warm, "end": end, "samples": samples},
        "bounds": judged,
        "ok": all(bound["ok"] for bound in judged.values()),
    }


def summary_line(report: dict[str, Any]) -> str:
    """One line of the soak's headline figures."""
    res, bounds = report["resources"], report["bounds"]
    errors = ", ".join(f"{code} {n}" for code, n in report["errors_by_code"].items()) or "none"
    p99 = ", ".join(f"{rpc} {c['p99_ms']}" for rpc, c in report["calls"].items())
    recoveries = ", ".join(f"{r['recovered_after_s']} s" for r in report["restarts"]) or "none"
    return (
        f"{report['total_calls']} calls, errors: {errors}; wrong plaintext "
        f"{bounds['wrong_plaintext']['value']}; RSS {res['warm']['rss_mib']} -> "
        f"{res['end']['rss_mib']} MiB, threads {res['warm']['threads']} -> "
        f"{res['end']['threads']}, fds {res['warm']['fds']} -> {res['end']['fds']}; "
        f"p99 ms: {p99}; recovered after: {recoveries}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    defaults = Settings()
    parser.add_argument("--duration", type=parse_duration, default="10m", help="e.g. 20s, 10m")
    parser.add_argument("--restarts", type=int, default=defaults.restarts)
    parser.add_argument("--outage", type=parse_duration, default="5s", help="each restart's")
    parser.add_argument("--rate", type=float, default=defaults.rate, help="calls/s in total")
    parser.add_argument("--threads", type=int, default=defaults.threads, help="client threads")
    parser.add_argument("--probe-interval", type=parse_duration, default="1s")
    parser.add_argument("--max-rss-growth-mib", type=float, default=defaults.max_rss_growth_mib)
    parser.add_argument("--thread-tolerance", type=int, default=defaults.thread_tolerance)
    parser.add_argument("--fd-tolerance", type=int, default=defaults.fd_tolerance)
    parser.add_argument("--max-unexpected-errors", type=int, default=0)
    parser.add_argument("--output", type=Path, help="write the JSON report here too")
    args = parser.parse_args(argv)
    settings = Settings(
        duration=args.duration,
        restarts=args.restarts,
        outage=args.outage,
        rate=args.rate,
        threads=args.threads,
        sample_interval=min(5.0, max(1.0, args.duration / 20)),
        max_rss_growth_mib=args.max_rss_growth_mib,
        thread_tolerance=args.thread_tolerance,
        fd_tolerance=args.fd_tolerance,
        max_unexpected_errors=args.max_unexpected_errors,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bk-soak-", dir="/tmp"))
    try:
        with Stack(workdir, probe_interval=args.probe_interval) as stack, stack.provider() as p:
            report = run_soak(stack, p, settings)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(report, indent=1)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text)
    print(("PASS " if report["ok"] else "FAIL ") + summary_line(report), file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
