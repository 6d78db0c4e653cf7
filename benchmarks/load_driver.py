"""End-to-end load driver: a cold-start Decrypt burst through the provider vs direct Transit.

Starts a real OpenBao dev server and the provider (``bao-kms-provider serve`` in its own
process, as in production), encrypts a set of DEK seeds, then runs the same number of
Decrypts at the same concurrency twice in one run:

* **plugin** — through the provider's Unix socket with a gRPC client (what kube-apiserver does);
* **direct** — straight to Transit over HTTP with the same AAD (the floor any plugin sits on).

It prints throughput and latency percentiles for both and their ratio. The machine is shared
and noisy, so compare the ratio within one run, not absolute numbers across runs.

    python benchmarks/load_driver.py --requests 4000 --concurrency 32 [--no-extensions]

Every request loop is bounded by ``--requests`` and ``--max-seconds``; both processes are
stopped by PID at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import urllib3
import yaml

from bao_kms.api.client import KmsClient
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.identity import Identity
from bao_kms.manifests import openbao_policy

SEEDS = 256


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000  # noqa: E731
    return {"p50": statistics.median(ordered) * 1000, "p90": pick(0.90), "p99": pick(0.99)}


def _run(
    name: str, call: Callable[[int], None], requests: int, concurrency: int, max_seconds: float
) -> dict[str, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + max_seconds

    def one(index: int) -> None:
        if time.monotonic() > stop_at:
            return
        started = time.perf_counter()
        call(index)
        elapsed = time.perf_counter() - started
        with lock:
            latencies.append(elapsed)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    result = {
        "requests": len(latencies),
        "per_second": len(latencies) / wall,
        **_percentiles(latencies),
    }
    print(
        f"{name:7s} {result['requests']:6d} req  {result['per_second']:8.0f}/s  "
        f"p50 {result['p50']:6.2f} ms  p90 {result['p90']:6.2f} ms  p99 {result['p99']:6.2f} ms",
        flush=True,
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--workers", type=int, default=16, help="provider gRPC worker threads")
    parser.add_argument(
        "--no-extensions", action="store_true", help="run the provider on the pure-Python codec"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bk-load-"))
    with EmbeddedOpenBao(workdir=workdir / "openbao") as openbao:
        openbao.setup_transit()
        token_file = workdir / "token"
        token_file.write_text(openbao.create_token(openbao_policy("transit", "kms")))
        token_file.chmod(0o600)
        socket_path = workdir / "kms.sock"
        identity = {
            "providerName": "load",
            "clusterId": "load",
            "openbaoInstanceId": "load",
            "transitMountId": "load",
            "keyLineageId": "load",
        }
        config_file = workdir / "config.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "server": {"socketPath": str(socket_path), "workers": args.workers},
                    "openbao": {"addresses": [openbao.address], "timeout": "5s"},
                    "auth": {"method": "token", "token": {"file": str(token_file)}},
                    "identity": identity,
                    "logging": {"level": "warning"},
                }
            )
        )
        env = dict(os.environ)
        if args.no_extensions:
            env["BAO_KMS_NO_EXTENSIONS"] = "1"
        provider = subprocess.Popen(
            [sys.executable, "-m", "bao_kms", "serve", "--config", str(config_file)],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        try:
            client = KmsClient(socket_path, timeout=10)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if client.status().healthz == "ok":
                        break
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                time.sleep(0.1)
            else:
                print("provider did not become healthy", file=sys.stderr)
                return 1
            seeds = [os.urandom(32) for _ in range(SEEDS)]
            objects = [client.encrypt(seed) for seed in seeds]
            version = int(objects[0].annotations["transit-key-version.kms.openbao.org"])
            created = openbao.api("GET", "transit/keys/kms")["data"]["keys"][str(version)]
            aad = (
                Identity("load", "load", "load", "", "load", "load")
                .key_version(version, created)
                .associated_data
            )
            http = urllib3.PoolManager(maxsize=args.concurrency, retries=False)
            headers = {"X-Vault-Token": openbao.root_token}
            url = f"{openbao.address}/v1/transit/decrypt/kms"

            def via_plugin(index: int) -> None:
                item = objects[index % SEEDS]
                out = client.decrypt(item.ciphertext, item.key_id, item.annotations)
                assert out.plaintext == seeds[index % SEEDS]

            def direct(index: int) -> None:
                body = orjson.dumps(
                    {
                        "ciphertext": objects[index % SEEDS].ciphertext.decode(),
                        "associated_data": aad,
                    }
                )
                response = http.request("POST", url, body=body, headers=headers)
                assert response.status == 200

            codec = "pure Python" if args.no_extensions else "compiled (if built)"
            print(
                f"decrypt burst: {args.requests} requests, concurrency {args.concurrency}, "
                f"provider workers {args.workers}, codec {codec}",
                flush=True,
            )
            _run("warmup", via_plugin, min(500, args.requests), args.concurrency, 30)
            plugin = _run("plugin", via_plugin, args.requests, args.concurrency, args.max_seconds)
            base = _run("direct", direct, args.requests, args.concurrency, args.max_seconds)
            print(
                f"plugin/direct throughput ratio: {plugin['per_second'] / base['per_second']:.2f}"
                f"   p50 overhead: {plugin['p50'] - base['p50']:+.2f} ms"
            )
            client.close()
        finally:
            provider.send_signal(signal.SIGTERM)
            try:
                provider.wait(20)
            except subprocess.TimeoutExpired:
                provider.kill()
                provider.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
