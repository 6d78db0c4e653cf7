"""End-to-end load driver: the provider against its floor and its ceiling, in one run.

One real OpenBao dev server serves every phase, so the ratios between phases are what this
measures (absolute numbers swing by 25% or more between runs on a shared machine):

* **noop**: a KMS v2 grpcio server that does nothing (``noop_server.py``, its own process):
  the ceiling for any Python plugin here, in calls per second and server CPU per call;
* **direct**: a lean Python client calling Transit directly, one decrypt per HTTP request
  (http.client, one kept-alive connection per thread);
* **storm**: a cold-start storm through the provider's socket (``bao-kms-provider serve`` in
  its own process, a fresh one for each variant) over N ciphertexts it has never decrypted, for
  each codec twin with batching on and off, then two storms with 50% duplicates (N calls over
  N/2 fresh ciphertexts): each asked by two calls sent together (two kube-apiserver goroutines
  missing their DEK cache at once), and each asked twice one after the other (the second copy
  by the next caller that frees up); both count the requests and items OpenBao saw (from the
  provider's ``/metrics``);
* **latency**: p50/p99 of Status, Encrypt and Decrypt at low load (one caller), C=8 and C=64;
  beside them the floors from the same run: the no-op server's Decrypt at the same C, and a
  no-op Decrypt that waits as long as a direct Transit decrypt took (its p50 at C=1);
* **memory**: peak RSS (VmHWM) through repeated storms of ``--memory-requests`` Decrypts, and
  the RSS after each (no growth across storms).

Each round runs noop, direct and the storms back to back; the summary takes medians over
``--rounds``. It writes JSON (``--output``) and a PNG chart (``--chart``, needs matplotlib: the
``bench`` extra), and prints the table ``docs/benchmarks.md`` holds.

    python benchmarks/load_driver.py                  # the published run (several minutes)
    python benchmarks/load_driver.py --quick          # a smoke: tiny N, one round, no pure twin

Every loop is bounded by its call count and ``--max-seconds``; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml
from load_support import (
    Child,
    KmsCalls,
    Run,
    closed_loop,
    cpu_seconds,
    free_port,
    scrape,
    seal_seeds,
)

from bao_kms._proto import api_pb2
from bao_kms.embedded import EmbeddedOpenBao, find_bao_binary
from bao_kms.identity import Identity, KeyVersion
from bao_kms.manifests import openbao_policy

HERE = Path(__file__).resolve().parent
LABELS = {
    "providerName": "load",
    "clusterId": "load",
    "openbaoInstanceId": "load",
    "transitMountId": "load",
    "keyLineageId": "load",
}
IDENTITY = Identity("load", "load", "load", "", "load", "load")


@dataclass(frozen=True)
class Variant:
    pure: bool
    batching: bool

    @property
    def name(self) -> str:
        codec = "pure" if self.pure else "compiled"
        return f"{codec}, {'batching' if self.batching else 'no batching'}"


@dataclass(frozen=True)
class Sealed:
    seed: bytes
    ciphertext: bytes
    request: bytes  # a serialized DecryptRequest


class Provider:
    """A running ``bao-kms-provider serve`` process with a channel to its socket."""

    def __init__(self, child: Child, calls: KmsCalls, metrics: str, variant: Variant) -> None:
        self.child, self.calls, self.metrics, self.variant = child, calls, metrics, variant

    def decrypt_counts(self) -> tuple[float, float]:
        """(Transit decrypt requests, items) the provider has sent so far."""
        samples = scrape(self.metrics)
        requests = sum(
            value
            for name, value in samples.items()
            if name.startswith("openbao_kms_openbao_requests_total{")
            and 'operation="decrypt"' in name
        )
        return requests, samples.get("openbao_kms_decrypt_batch_items_total", requests)


class Bench:
    """The shared OpenBao, the token, the key's AAD, and how to start each server."""

    def __init__(self, args: argparse.Namespace, workdir: Path, openbao: EmbeddedOpenBao):
        self.args, self.workdir, self.openbao = args, workdir, openbao
        openbao.setup_transit("transit", "kms")
        self.token = openbao.create_token(openbao_policy("transit", "kms"))
        self.token_file = workdir / "token"
        self.token_file.write_text(self.token)
        self.token_file.chmod(0o600)
        self.serial = 0
        version = 1
        created = openbao.api("GET", "transit/keys/kms")["data"]["keys"][str(version)]
        self.key_version = IDENTITY.key_version(version, created)

    def _path(self, stem: str) -> Path:
        self.serial += 1
        return self.workdir / f"{stem}-{self.serial}"

    @contextlib.contextmanager
    def provider(self, variant: Variant, command: list[str] | None = None) -> Iterator[Provider]:
        """A provider process for *variant*, stopped on exit. *command* replaces
        ``bao-kms-provider serve`` (``layers.py`` starts its partial providers this way); it is
        given ``--config PATH``."""
        socket_path, port = self._path("kms.sock"), free_port()
        config = self._path("config.yaml")
        openbao = {"addresses": [self.openbao.address], "timeout": "5s"}
        openbao |= {"allowInsecureHttp": True, "decryptBatching": variant.batching}
        if self.args.batch_linger is not None:
            openbao["decryptBatchLinger"] = self.args.batch_linger
        server = {"socketPath": str(socket_path), "workers": self.args.workers}
        server["healthAddress"] = server["metricsAddress"] = f"127.0.0.1:{port}"
        document = {
            "server": server,
            "openbao": openbao,
            "auth": {"method": "token", "token": {"file": str(self.token_file)}},
            "identity": LABELS,
            "logging": {"level": "warning"},
        }
        config.write_text(yaml.safe_dump(document))
        config.chmod(0o600)
        # the config file says everything: no BAO_KMS_* override from the caller's environment
        env = {k: v for k, v in os.environ.items() if not k.startswith("BAO_KMS_")}
        env["BAO_KMS_NO_EXTENSIONS"] = "1" if variant.pure else "0"
        if command is None:
            installed = shutil.which("bao-kms-provider")
            command = [installed] if installed else [sys.executable, "-m", "bao_kms"]
            command.append("serve")
        argv = [*command, "--config", str(config)]
        child = Child(argv, log=self._path("provider.log"), env=env)
        calls = KmsCalls(socket_path)
        try:
            calls.wait_ok(60, child)
            yield Provider(child, calls, f"127.0.0.1:{port}", variant)
        finally:
            calls.close()
            child.stop()

    @contextlib.contextmanager
    def noop(
        self, *, aio: bool = False, decrypt_wait: float = 0.0, batched: bool = False
    ) -> Iterator[tuple[Child, KmsCalls]]:
        socket_path = self._path("noop.sock")
        argv = [sys.executable, str(HERE / "noop_server.py"), "--socket", str(socket_path)]
        argv += ["--aio"] if aio else ["--workers", str(self.args.workers)]
        argv += ["--decrypt-wait", f"{decrypt_wait:.6f}"] + (["--batched"] if batched else [])
        child = Child(argv, log=self._path("noop.log"))
        calls = KmsCalls(socket_path)
        try:
            calls.wait_ok(30, child)
            yield child, calls
        finally:
            calls.close()
            child.stop()

    def fresh(self, count: int) -> list[Sealed]:
        """*count* new DEK seeds sealed under the key's AAD (Transit batch encrypt, 150 a
        request: seeds no provider has decrypted before)."""
        version = self.key_version
        return [
            Sealed(seed, ciphertext, _decrypt_request(ciphertext, version))
            for seed, ciphertext in seal_seeds(self.openbao, version, count)
        ]


def _decrypt_request(ciphertext: bytes, version: KeyVersion) -> bytes:
    request = api_pb2.DecryptRequest(
        ciphertext=ciphertext, key_id=version.key_id, annotations=version.annotations
    )
    return request.SerializeToString()


@contextlib.contextmanager
def openbao_cpu(bench: Bench, runs: list[Run]) -> Iterator[None]:
    """Adds OpenBao's CPU per call (ms) to the runs made inside the block."""
    pid = bench.openbao.pid
    assert pid is not None
    before = cpu_seconds(pid)
    yield
    spent = cpu_seconds(pid) - before
    calls = sum(run.calls for run in runs)
    for run in runs:
        run.extra["openbao_cpu_ms_per_call"] = round(spent / calls * 1000, 4) if calls else None


def noop_runs(
    bench: Bench,
    calls: int,
    concurrencies: Sequence[int],
    *,
    aio: bool = False,
    decrypt_wait: float = 0.0,
    batched: bool = False,
) -> list[Run]:
    """One no-op server process, driven at each of *concurrencies* in turn. *decrypt_wait*:
    each Decrypt waits that long, alone or (*batched*) in a batch with the others queued."""
    request = api_pb2.DecryptRequest(ciphertext=b"vault:v1:AAAA", key_id="x").SerializeToString()
    name = "noop server Decrypt" + (" (grpc.aio)" if aio else "")
    if decrypt_wait or batched:
        name += f", waits {decrypt_wait * 1000:.2f} ms" + (" a batch" if batched else "")
    with bench.noop(aio=aio, decrypt_wait=decrypt_wait, batched=batched) as (child, kms):
        return [
            closed_loop(
                name,
                lambda _: kms.decrypt(request, timeout=10),
                calls,
                concurrency,
                max_seconds=bench.args.max_seconds,
                server=child,
            )
            for concurrency in concurrencies
        ]


def noop_run(
    bench: Bench,
    calls: int,
    concurrency: int,
    *,
    aio: bool = False,
    decrypt_wait: float = 0.0,
    batched: bool = False,
) -> Run:
    return noop_runs(
        bench, calls, (concurrency,), aio=aio, decrypt_wait=decrypt_wait, batched=batched
    )[0]


def direct_run(bench: Bench, sealed: list[Sealed], concurrency: int, name: str) -> Run:
    """The lean client: the standard library's http.client, one kept-alive connection per
    calling thread (what a Python program that only decrypts would write)."""
    host, port = bench.openbao.address.removeprefix("http://").rsplit(":", 1)
    path = "/v1/transit/decrypt/kms"
    headers = {"X-Vault-Token": bench.token, "Content-Type": "application/json"}
    aad = bench.key_version.associated_data
    bodies = [
        orjson.dumps({"ciphertext": s.ciphertext.decode(), "associated_data": aad}) for s in sealed
    ]
    expected = [base64.b64encode(s.seed) for s in sealed]
    per_thread = threading.local()
    opened: list[http.client.HTTPConnection] = []

    def call(index: int) -> None:
        connection = getattr(per_thread, "connection", None)
        if connection is None:
            connection = per_thread.connection = http.client.HTTPConnection(host, int(port), 10)
            opened.append(connection)
        connection.request("POST", path, body=bodies[index], headers=headers)
        answer = connection.getresponse()
        if answer.status != 200 or expected[index] not in answer.read():
            raise AssertionError("Transit did not answer the seed")

    try:
        return closed_loop(name, call, len(sealed), concurrency, max_seconds=bench.args.max_seconds)
    finally:
        for connection in opened:
            connection.close()


def storm_run(provider: Provider, sealed: list[Sealed], concurrency: int, name: str) -> Run:
    decrypt = provider.calls.decrypt
    before = provider.decrypt_counts()

    def call(index: int) -> None:
        if decrypt(sealed[index].request, timeout=10).plaintext != sealed[index].seed:
            raise AssertionError("wrong plaintext")

    run = closed_loop(
        name, call, len(sealed), concurrency, max_seconds=provider.calls.timeout * 12,
        server=provider.child,
    )  # fmt: skip
    return _with_openbao_counts(run, provider, before, len({s.ciphertext for s in sealed}))


def _with_openbao_counts(
    run: Run, provider: Provider, before: tuple[float, float], distinct: int
) -> Run:
    """*run* with the distinct ciphertexts and what OpenBao saw since *before*."""
    after = provider.decrypt_counts()
    run.extra["distinct"] = distinct
    run.extra["openbao_requests"] = int(after[0] - before[0])
    run.extra["openbao_items"] = int(after[1] - before[1])
    return run


def pair_storm_run(provider: Provider, sealed: list[Sealed], concurrency: int, name: str) -> Run:
    """Each of *sealed* asked by two Decrypts sent together, as two kube-apiserver goroutines
    that miss their DEK cache at the same moment do: C/2 callers, C calls in flight (C rounded
    down to even). Counted in Decrypts (two a pair); the latencies are a pair's (until both
    answered) and errors count pairs."""
    decrypt = provider.calls.decrypt
    before = provider.decrypt_counts()

    def call(index: int) -> None:
        request = sealed[index].request
        both = [decrypt.future(request, timeout=10) for _ in (0, 1)]
        if any(future.result().plaintext != sealed[index].seed for future in both):
            raise AssertionError("wrong plaintext")

    run = closed_loop(
        name, call, len(sealed), max(1, concurrency // 2),
        max_seconds=provider.calls.timeout * 12, server=provider.child,
    )  # fmt: skip
    run.concurrency = 2 * max(1, concurrency // 2)
    run.calls, run.per_second = run.calls * 2, run.per_second * 2
    if run.cpu_ms_per_call is not None:
        run.cpu_ms_per_call /= 2
    if run.client_cpu_ms_per_call is not None:
        run.client_cpu_ms_per_call /= 2
    return _with_openbao_counts(run, provider, before, len(sealed))


def rpc_run(
    provider: Provider, rpc: str, calls: int, concurrency: int, sealed: list[Sealed]
) -> Run:
    kms = provider.calls
    if rpc == "Status":
        call = lambda _: kms.status(kms.status_request, timeout=10)  # noqa: E731
    elif rpc == "Encrypt":
        seeds = [api_pb2.EncryptRequest(plaintext=s.seed).SerializeToString() for s in sealed]
        call = lambda i: kms.encrypt(seeds[i], timeout=10)  # noqa: E731
    else:
        call = lambda i: kms.decrypt(sealed[i].request, timeout=10)  # noqa: E731
    return closed_loop(f"{rpc} (C={concurrency})", call, calls, concurrency, server=provider.child)


def one_round(bench: Bench, variants: list[Variant], index: int) -> dict[str, Any]:
    n, c = bench.args.requests, bench.args.concurrency
    print(f"--- round {index + 1}: {n} calls at concurrency {c}", flush=True)
    runs: dict[str, Any] = {}

    def keep(key: str, run: Run) -> None:
        print(run.line(), flush=True)
        runs[key] = run.as_dict()

    def measured(key: str, make: Callable[[], Run]) -> None:
        made: list[Run] = []
        with openbao_cpu(bench, made):
            made.append(make())
        keep(key, made[0])

    keep("noop", noop_run(bench, n, c))
    if bench.args.aio_noop:
        keep("noop asyncio", noop_run(bench, n, c, aio=True))
    sealed = bench.fresh(n)
    measured("direct", lambda: direct_run(bench, sealed, c, "direct Transit, one per request"))
    for variant in variants:
        # a fresh process for each variant; fresh ciphertexts for each storm, so neither storm
        # meets one the provider has decrypted before
        with bench.provider(variant) as provider:
            cold = bench.fresh(n)
            storm = functools.partial(storm_run, provider, cold, c, variant.name)
            measured(f"storm {variant.name}", storm)
            # 50% duplicates, each ciphertext asked twice at once ...
            pairs = bench.fresh(n // 2)
            dup = functools.partial(pair_storm_run, provider, pairs, c, f"{variant.name}, 50% dup")
            measured(f"dup50 {variant.name}", dup)
            # ... and asked twice one after the other: the second copy goes to the next caller
            # that frees up, sometimes after the first has been answered
            staggered = [s for s in bench.fresh(n // 2) for _ in (0, 1)]
            later = f"{variant.name}, 50% dup, staggered"
            dup = functools.partial(storm_run, provider, staggered, c, later)
            measured(f"dup50 staggered {variant.name}", dup)
    return runs


def latency_runs(bench: Bench, calls: int) -> dict[str, Any]:
    runs: dict[str, Any] = {}
    print(f"--- latency: {calls} calls each", flush=True)
    direct = direct_run(bench, bench.fresh(calls), 1, "direct Transit (C=1)")
    print(direct.line(), flush=True)
    runs["direct C=1"] = direct.as_dict()
    # the floors in the same run: grpcio's own latency (a no-op Decrypt), and a no-op Decrypt
    # that waits as long as a direct Transit decrypt took (what any plugin has to wait)
    for noop in noop_runs(bench, calls, (1, 8, 64)):
        print(noop.line(), flush=True)
        runs[f"noop C={noop.concurrency}"] = noop.as_dict()
    waiting = noop_run(bench, calls, 1, decrypt_wait=direct.p50_ms / 1000)
    print(waiting.line(), flush=True)
    runs["noop waiting C=1"] = waiting.as_dict()
    # ... and at C=8, one whose Decrypts wait that long together, in batches: the floor for a
    # batching plugin (the wait is one decrypt's; a batch takes OpenBao longer, and its CPU)
    batched = noop_run(bench, calls, 8, decrypt_wait=direct.p50_ms / 1000, batched=True)
    print(batched.line(), flush=True)
    runs["noop batched C=8"] = batched.as_dict()
    with bench.provider(Variant(pure=False, batching=True)) as provider:
        for concurrency in (1, 8, 64):
            for rpc in ("Status", "Encrypt", "Decrypt"):
                run = rpc_run(provider, rpc, calls, concurrency, bench.fresh(calls))
                print(run.line(), flush=True)
                runs[f"{rpc} C={concurrency}"] = run.as_dict()
    return runs


def memory_runs(bench: Bench, calls: int, repeats: int) -> dict[str, Any]:
    print(f"--- memory: {repeats} storms of {calls} Decrypts", flush=True)
    sealed = bench.fresh(calls)
    after: list[float] = []
    with bench.provider(Variant(pure=False, batching=True)) as provider:
        started = provider.child.memory_mib()
        for repeat in range(repeats):
            run = storm_run(provider, sealed, bench.args.concurrency, f"memory storm {repeat + 1}")
            after.append(round(provider.child.memory_mib()["rss"], 1))
            print(run.line(), f"rss {after[-1]} MiB", flush=True)
        peak = provider.child.memory_mib()["peak"]
    result = {"calls": calls, "rss_at_start_mib": round(started["rss"], 1)}
    result |= {"rss_after_each_mib": after, "peak_rss_mib": round(peak, 1)}
    print(f"peak RSS {peak:.1f} MiB, RSS after each storm {after}", flush=True)
    return result


def summarize(rounds: list[dict[str, Any]], variants: list[Variant]) -> dict[str, Any]:
    """Medians over rounds of each rate, and of each ratio taken within its own round."""

    def median(key: str, field: str) -> float | None:
        values = [r[key][field] for r in rounds if key in r and r[key][field] is not None]
        return statistics.median(values) if values else None

    def ratio(top: str, bottom: str, field: str = "per_second") -> float | None:
        values = [
            r[top][field] / r[bottom][field]
            for r in rounds
            if top in r and bottom in r and r[top][field] and r[bottom][field]
        ]
        return round(statistics.median(values), 3) if values else None

    summary: dict[str, Any] = {"per_second": {}, "per_second_range": {}, "ratios": {}}
    summary |= {"cpu_ms_per_call": {}, "openbao_cpu_ms_per_call": {}, "client_cpu_ms_per_call": {}}
    for key in rounds[0]:
        summary["per_second"][key] = round(median(key, "per_second") or 0, 1)
        rates = [r[key]["per_second"] for r in rounds if key in r]
        summary["per_second_range"][key] = [round(min(rates), 1), round(max(rates), 1)]
        cpu = median(key, "cpu_ms_per_call")
        if cpu is not None:
            summary["cpu_ms_per_call"][key] = round(cpu, 4)
        client = median(key, "client_cpu_ms_per_call")
        if client is not None:  # the driver's own CPU: what the servers' ceiling leaves out
            summary["client_cpu_ms_per_call"][key] = round(client, 4)
        spent = [r[key]["extra"].get("openbao_cpu_ms_per_call") for r in rounds if key in r]
        if spent and None not in spent:
            summary["openbao_cpu_ms_per_call"][key] = round(statistics.median(spent), 4)
    if "noop asyncio" in rounds[0]:
        summary["ratios"]["noop asyncio / noop"] = ratio("noop asyncio", "noop")
        cpu = ratio("noop asyncio", "noop", "cpu_ms_per_call")
        summary["ratios"]["noop asyncio cpu / noop cpu"] = cpu
    for variant in variants:
        storm = f"storm {variant.name}"
        summary["ratios"][f"{variant.name} / noop"] = ratio(storm, "noop")
        summary["ratios"][f"{variant.name} / direct"] = ratio(storm, "direct")
        cpu = ratio(storm, "noop", "cpu_ms_per_call")
        summary["ratios"][f"{variant.name} cpu / noop cpu"] = cpu
        for kind in ("", " staggered"):
            dup = [r[f"dup50{kind} {variant.name}"]["extra"] for r in rounds]
            summary["ratios"][f"{variant.name} 50% dup{kind}: items / distinct"] = max(
                d["openbao_items"] / d["distinct"] for d in dup
            )
    return summary


def machine() -> dict[str, Any]:
    import grpc

    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as cpuinfo:
        names = (line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line)
        model = next(names, "")
    bao = subprocess.run(
        [find_bao_binary(), "version"], capture_output=True, text=True, check=False
    ).stdout
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "system": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "openbao": bao.strip(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="Decrypts per storm (N)")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (C)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds to take medians over")
    parser.add_argument("--workers", type=int, default=None, help="provider server.workers")
    parser.add_argument("--latency-calls", type=int, default=500)
    parser.add_argument("--memory-requests", type=int, default=20000)
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--no-pure", action="store_true", help="skip the pure-Python twin")
    parser.add_argument(
        "--aio-noop", action="store_true", help="also the no-op server on grpc.aio, each round"
    )
    parser.add_argument(
        "--batch-linger", default=None, help="the provider's openbao.decryptBatchLinger (e.g. 0s)"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke: tiny, one round, no pure")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--chart", type=Path, default=None, help="PNG chart (matplotlib)")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.no_pure = min(args.requests, 200), 1, True
        args.latency_calls, args.memory_requests = min(args.latency_calls, 40), 0
    if args.workers is None:
        args.workers = max(64, args.concurrency)
    variants = [Variant(pure, batching) for pure in (False, True) for batching in (True, False)]
    variants = [v for v in variants if not (v.pure and args.no_pure)]
    workdir = Path(tempfile.mkdtemp(prefix="bk-load-", dir="/tmp"))
    started = time.time()
    try:
        with EmbeddedOpenBao(workdir=workdir / "openbao") as openbao:
            bench = Bench(args, workdir, openbao)
            rounds = [one_round(bench, variants, index) for index in range(args.rounds)]
            latency = latency_runs(bench, args.latency_calls)
            memory = None
            if args.memory_requests:
                memory = memory_runs(bench, args.memory_requests, args.memory_repeats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "machine": machine(),
        "settings": settings,
        "started_unix": int(started),
        "minutes": round((time.time() - started) / 60, 2),
        "summary": summarize(rounds, variants),
        "rounds": rounds,
        "latency": latency,
        "memory": memory,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    if args.chart is not None:
        from report import chart

        chart(result, args.chart)
    print(f"wrote {args.output}" + (f" and {args.chart}" if args.chart else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
