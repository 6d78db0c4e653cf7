"""Release evidence: the gates a release must pass, run against a fresh real OpenBao, in one
report (JSON + Markdown: versions, machine, pass/fail per gate with its figure).

Gates, in the order they run (each on its own ``bao-kms-provider serve`` process):

* **storm**: a cold-start Decrypt storm. ``--storm-objects`` DEK seeds are sealed in Transit
  under the provider's AAD (batch encrypt, straight to OpenBao), then a provider that has never
  seen them starts and ``--storm-concurrency`` threads on one channel (as kube-apiserver holds
  one) decrypt them all at once. Passes with every seed back exactly, no error, p99 under
  kube-apiserver's 3 s call timeout.
* **fault**: a fault-matrix smoke. Objects are written, OpenBao is stopped: Status must turn
  unhealthy (within 3 probe intervals + 5 s), Decrypt and Encrypt must fail with a code, never
  answer wrong bytes; OpenBao is started again: Status must be ``ok`` within 30 s and every
  object written before the fault must read back exactly.
* **soak**: ``benchmarks/soak.py`` for ``--soak-duration`` (2 minutes by default; the 10-minute
  record is run on its own) with ``--soak-restarts`` OpenBao restarts; passes when every soak
  bound holds (RSS growth, threads and fds flat, no wrong plaintext, recoveries).
* **conformance**: ``bao-kms-provider conformance --socket ... --output json`` with a Transit
  rotation mid-run (``--rotate-command``, ``--expect-rotation``); passes on exit code 0. A
  missed latency target is a warning in the figure unless ``--strict-latency`` is given.

    python benchmarks/release_evidence.py                      # writes benchmarks/results/
    python benchmarks/release_evidence.py --soak-duration 10m  # with the soak of record
    python benchmarks/release_evidence.py --tiny               # a smoke, under a minute

Exit 0 when every gate passed, 1 when one failed. Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import orjson
from evidence_stack import CALL_TIMEOUT, LABELS, Stack
from load_support import seal_seeds
from soak import Settings, percentile_ms, run_soak, summary_line

from bao_kms._version import __version__
from bao_kms.api.client import KmsClient
from bao_kms.config import parse_duration
from bao_kms.embedded import find_bao_binary
from bao_kms.identity import Identity

HERE = Path(__file__).resolve().parent
IDENTITY = Identity(
    LABELS["providerName"],
    LABELS["clusterId"],
    LABELS["openbaoInstanceId"],
    "",
    LABELS["transitMountId"],
    LABELS["keyLineageId"],
)


@dataclass
class Gate:
    name: str
    ok: bool
    figure: str
    seconds: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)


# --- versions and machine ------------------------------------------------------------------------


def versions() -> dict[str, str]:
    import google.protobuf
    import pydantic
    import urllib3

    from bao_kms import _codec

    bao = subprocess.run(
        [find_bao_binary(), "version"], capture_output=True, text=True, timeout=30, check=False
    )
    return {
        "bao-kms-provider": f"{__version__} ({_codec.IMPLEMENTATION} codec)",
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
        "urllib3": urllib3.__version__,
        "pydantic": pydantic.VERSION,
        "openbao": bao.stdout.strip() or f"`bao version` exited {bao.returncode}",
    }


def machine() -> dict[str, Any]:
    memory_kib = 0
    model = ""
    with contextlib.suppress(OSError), open("/proc/meminfo", encoding="ascii") as meminfo:
        memory_kib = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as cpuinfo:
        names = (line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line)
        model = next(names, "")
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# --- the gates -----------------------------------------------------------------------------------


def _active_version(stack: Stack) -> Any:
    data = stack.openbao.api("GET", "transit/keys/kms")["data"]
    latest = data["latest_version"]
    return IDENTITY.key_version(latest, data["keys"][str(latest)])


def _seal(stack: Stack, count: int) -> list[tuple[bytes, bytes]]:
    """*count* fresh (seed, ciphertext) pairs under the active version's AAD, 150 a request."""
    return seal_seeds(stack.openbao, _active_version(stack), count)


def storm_gate(stack: Stack, objects: int, concurrency: int) -> Gate:
    version = _active_version(stack)
    sealed = _seal(stack, objects)
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    wrong = 0
    lock = threading.Lock()
    with stack.provider() as provider:
        key_id = provider.wait_ok()
        with KmsClient(provider.socket_path, timeout=CALL_TIMEOUT) as client:
            gate = threading.Barrier(concurrency + 1)
            work = iter(range(objects))

            def reader() -> None:
                nonlocal wrong
                gate.wait()
                while (index := next(work, None)) is not None:
                    seed, ciphertext = sealed[index]
                    began = time.perf_counter()
                    try:
                        reply = client.decrypt(ciphertext, version.key_id, version.annotations)
                        code = "OK"
                    except grpc.RpcError as error:
                        code, reply = error.code().name, None
                    with lock:
                        codes[code] += 1
                        if reply is not None:
                            latencies.append(time.perf_counter() - began)
                            wrong += reply.plaintext != seed

            threads = [threading.Thread(target=reader) for _ in range(concurrency)]
            for thread in threads:
                thread.start()
            gate.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join(CALL_TIMEOUT * objects)
            wall = time.perf_counter() - began
    p50, p99 = percentile_ms(latencies, 0.5), percentile_ms(latencies, 0.99)
    errors = {code: n for code, n in codes.items() if code != "OK"}
    ok = key_id == version.key_id and not errors and wrong == 0 and codes["OK"] == objects
    ok = ok and p99 is not None and p99 < CALL_TIMEOUT * 1000
    figure = (
        f"{codes['OK']}/{objects} cold Decrypts at C={concurrency} in {wall:.2f} s "
        f"({objects / wall:.0f}/s), p50 {p50} ms, p99 {p99} ms, errors {errors or 'none'}, "
        f"wrong plaintext {wrong}"
    )
    details = {"objects": objects, "concurrency": concurrency, "seconds": round(wall, 3)}
    details |= {"per_second": round(objects / wall, 1), "p50_ms": p50, "p99_ms": p99}
    details |= {"errors": errors, "wrong_plaintext": wrong}
    return Gate("storm", ok, figure, details=details)


def _poll(predicate: Callable[[], bool], seconds: float) -> float | None:
    """Seconds until *predicate* held, or None if it did not within *seconds*."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if predicate():
            return round(time.monotonic() - began, 2)
        time.sleep(0.1)
    return None


def _code(call: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """The gRPC code of ``call(*args)`` and its answer (None unless OK)."""
    try:
        return "OK", call(*args)
    except grpc.RpcError as error:
        return error.code().name, None


def fault_gate(stack: Stack, probe_interval: float, objects: int = 20) -> Gate:
    with stack.provider() as provider:
        client = provider.client
        written = []
        for _ in range(objects):
            seed = os.urandom(32)
            reply = client.encrypt(seed)
            written.append((seed, reply.ciphertext, reply.key_id, dict(reply.annotations)))
        stopped = time.monotonic()
        stack.openbao.stop()
        reasons: list[str] = []

        def unhealthy() -> bool:
            healthz = provider.healthz()
            reasons.append(healthz)
            return healthz != "ok"

        # timed from the stop signal: a SIGTERMed OpenBao refuses requests while it winds down
        down = _poll(unhealthy, 3 * probe_interval + 5)
        went_down = None if down is None else round(time.monotonic() - stopped, 2)
        seed, ciphertext, key_id, annotations = written[0]
        during_decrypt, reply = _code(client.decrypt, ciphertext, key_id, annotations)
        wrong = int(reply is not None and reply.plaintext != seed)
        during_encrypt, _ = _code(client.encrypt, os.urandom(32))
        stack.openbao.start()  # the main thread: the child dies with the thread that starts it
        recovered = _poll(lambda: provider.healthz() == "ok", 30)
        read_back = 0
        for seed, ciphertext, key_id, annotations in written:
            code, reply = _code(client.decrypt, ciphertext, key_id, annotations)
            read_back += code == "OK" and reply.plaintext == seed
            wrong += code == "OK" and reply.plaintext != seed
    ok = went_down is not None and recovered is not None and read_back == objects and not wrong
    figure = (
        f"OpenBao stopped: Status {reasons[-1] if reasons else '?'} after {went_down} s, "
        f"Decrypt {during_decrypt}, Encrypt {during_encrypt}; started: Status ok after "
        f"{recovered} s, {read_back}/{objects} objects read back, wrong plaintext {wrong}"
    )
    details = {"unhealthy_after_s": went_down, "reason": reasons[-1] if reasons else ""}
    details |= {"decrypt_during": during_decrypt, "encrypt_during": during_encrypt}
    details |= {"recovered_after_s": recovered, "read_back": read_back, "objects": objects}
    return Gate("fault", ok, figure, details=details | {"wrong_plaintext": wrong})


def soak_gate(stack: Stack, settings: Settings) -> Gate:
    with stack.provider() as provider:
        report = run_soak(stack, provider, settings)
    broken = [name for name, bound in report["bounds"].items() if not bound["ok"]]
    figure = f"{settings.duration:g} s: " + summary_line(report)
    if broken:
        figure += f"; broken: {', '.join(broken)}"
    return Gate("soak", report["ok"], figure, details=report)


def conformance_gate(
    stack: Stack, objects: int, samples: int, concurrency: int, *, strict_latency: bool
) -> Gate:
    bao = find_bao_binary()
    env = dict(os.environ, BAO_ADDR=stack.openbao.address, BAO_TOKEN=stack.openbao.root_token)
    with stack.provider() as provider:
        argv = [sys.executable, "-m", "bao_kms", "conformance", "--socket"]
        argv += [str(provider.socket_path), "--output", "json", "--objects", str(objects)]
        argv += ["--samples", str(samples), "--concurrency", str(concurrency)]
        argv += ["--rotate-command", f"{bao} write -f transit/keys/kms/rotate"]
        argv += ["--expect-rotation", "--rotation-timeout", "30s"]
        argv += ["--strict-latency"] if strict_latency else []
        done = subprocess.run(argv, capture_output=True, env=env, timeout=600, check=False)
    try:
        report = orjson.loads(done.stdout)
        summary = report["summary"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        tail = done.stderr.decode(errors="replace")[-500:]
        return Gate("conformance", False, f"no JSON report (exit {done.returncode}): {tail}")
    figure = (
        f"{summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped, "
        f"{summary['warned']} warned (exit {done.returncode})"
    )
    for outcome in ("fail", "warn"):
        named = [
            f"{c['name']} ({c['detail']})"
            for c in report["checks"]
            if c["outcome"].lower() == outcome
        ]
        if named:
            figure += f"; {outcome}: {'; '.join(named)}"
    return Gate("conformance", done.returncode == 0, figure, details=report)


# --- the report ----------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# bao-kms-provider release evidence",
        "",
        f"Result: **{'PASS' if report['ok'] else 'FAIL'}** ({report['minutes']} minutes, "
        f"started {report['started_utc']})",
        "",
        "| gate | result | figure |",
        "|---|---|---|",
    ]
    for gate in report["gates"]:
        figure = gate["figure"].replace("|", "\\|")
        lines.append(f"| {gate['name']} | {'PASS' if gate['ok'] else 'FAIL'} | {figure} |")
    lines += ["", "| version | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in report["versions"].items()]
    lines += ["", "| machine | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in report["machine"].items()]
    soak = next((g for g in report["gates"] if g["name"] == "soak"), None)
    if soak and soak["details"].get("calls"):
        lines += ["", "| soak RPC | calls | ok | errors | p50 ms | p99 ms |", "|---" * 6 + "|"]
        for rpc, c in soak["details"]["calls"].items():
            errors = ", ".join(f"{k} {v}" for k, v in c["errors"].items()) or "none"
            row = [rpc, c["calls"], c["ok"], errors, c["p50_ms"], c["p99_ms"]]
            lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--soak-duration", type=parse_duration, default="2m")
    parser.add_argument("--soak-restarts", type=int, default=1)
    parser.add_argument("--soak-outage", type=parse_duration, default="5s")
    parser.add_argument("--soak-rate", type=float, default=100.0, help="calls/s in total")
    parser.add_argument("--storm-objects", type=int, default=2000)
    parser.add_argument("--storm-concurrency", type=int, default=32)
    parser.add_argument("--conformance-objects", type=int, default=64)
    parser.add_argument("--conformance-samples", type=int, default=100)
    parser.add_argument("--probe-interval", type=parse_duration, default="1s")
    parser.add_argument(
        "--strict-latency",
        action="store_true",
        help="a missed Encrypt/Decrypt latency target fails the conformance gate (default: a "
        "warning in the figure; latency depends on the machine, correctness does not)",
    )
    parser.add_argument("--tiny", action="store_true", help="a smoke: tiny settings throughout")
    parser.add_argument("--output-dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    if args.tiny:
        args.soak_duration, args.soak_outage, args.soak_rate = 8.0, 2.0, 50.0
        args.storm_objects, args.storm_concurrency = 100, 8
        args.conformance_objects, args.conformance_samples = 8, 10
        args.probe_interval = 0.5
    soak = Settings(
        duration=args.soak_duration,
        restarts=args.soak_restarts,
        outage=args.soak_outage,
        rate=args.soak_rate,
        sample_interval=min(5.0, max(1.0, args.soak_duration / 20)),
    )
    started = time.time()
    report: dict[str, Any] = {
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "versions": versions(),
        "machine": machine(),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    gates: list[Gate] = []
    workdir = Path(tempfile.mkdtemp(prefix="bk-evidence-", dir="/tmp"))
    runs: list[tuple[str, Callable[[Stack], Gate]]] = [
        ("storm", lambda s: storm_gate(s, args.storm_objects, args.storm_concurrency)),
        ("fault", lambda s: fault_gate(s, args.probe_interval)),
        ("soak", lambda s: soak_gate(s, soak)),
        ("conformance", lambda s: conformance_gate(
            s, args.conformance_objects, args.conformance_samples, args.storm_concurrency,
            strict_latency=args.strict_latency,
        )),
    ]  # fmt: skip
    try:
        with Stack(workdir, probe_interval=args.probe_interval) as stack:
            for name, run in runs:
                began = time.monotonic()
                try:
                    gate = run(stack)
                except Exception as error:  # noqa: BLE001 - a gate that cannot run has failed
                    gate = Gate(name, False, f"did not run: {type(error).__name__}: {error}")
                gate.seconds = round(time.monotonic() - began, 1)
                print(f"{'PASS' if gate.ok else 'FAIL'} {gate.name}: {gate.figure}", flush=True)
                gates.append(gate)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["gates"] = [asdict(gate) for gate in gates]
    report["ok"] = bool(gates) and all(gate.ok for gate in gates)
    report["minutes"] = round((time.time() - started) / 60, 2)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "release-evidence.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.output_dir / "release-evidence.md").write_text(markdown(report))
    verdict = "PASS" if report["ok"] else "FAIL"
    print(f"{verdict}: wrote {args.output_dir}/release-evidence.json and .md")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
