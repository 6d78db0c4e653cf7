"""Where the provider's CPU per Decrypt goes: the same storm through five servers, layer by layer.

Each server adds one layer of the real provider to the one before, so the difference between
neighbours is what that layer costs per Decrypt under a storm (C concurrent callers):

1. **no-op grpcio server** (``noop_server.py``): grpcio alone, the ceiling;
   beside it, as a reference outside the chain, the same no-op server whose Decrypts wait in
   batches for a stand-in OpenBao (``noop_server.py --batched``): what micro-batching's shape
   alone costs on grpcio's sync server (each call blocks and is woken by another thread);
2. **+ gRPC front end**: the provider's own server (raw-bytes handlers registered as
   client-streaming, the receive deadline, the metrics interceptor) over constant answers;
3. **+ servicer**: validation, key lookup, codec, status feedback; Transit answers at once;
4. **+ batcher**: single-flight and micro-batching in front of an OpenBao that only waits
   (``--openbao-wait`` per request, no CPU on this machine);
5. **the provider**: ``bao-kms-provider serve`` with its HTTP client and a real OpenBao dev
   server on the same CPUs.

Layers 2 to 4 are the provider's own classes (``Provider``, ``KeyManagementServicer``,
``DecryptBatcher``, ``ProviderServer``) with the Transit client swapped for a stand-in; each runs
in its own process (``layers.py --serve LAYER --config PATH``). The rounds interleave the five
servers and the table takes medians, so a slow minute on a shared machine hits every layer.

    python benchmarks/layers.py                    # ~2 minutes; JSON in benchmarks/results/
    python benchmarks/layers.py --rounds 7 --requests 4000

Every process is stopped by PID; every loop is bounded by its call count and ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from load_driver import Bench, Variant, machine, noop_run
from load_support import Run, closed_loop

from bao_kms._proto import api_pb2
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.errors import KmsError

HERE = Path(__file__).resolve().parent
#: (key, label) in the order each adds to the one before
LAYERS = (
    ("noop", "no-op grpcio server (ceiling)"),
    ("front", "+ the provider's gRPC front end"),
    ("servicer", "+ servicer, Transit answers at once"),
    ("batcher", "+ batcher, OpenBao only waits"),
    ("provider", "the provider: + its HTTP client and a real OpenBao"),
)
PARTIAL = ("front", "servicer", "batcher")
#: measured every round beside the layers, compared with the no-op only
REFERENCE = ("batched", "reference: no-op, Decrypts wait in batches")
#: a 32-byte DEK seed's length, which the servicer checks every plaintext against
SEED = bytes(32)


# --- the partial providers (run with --serve) ---------------------------------------------------


class ConstantServicer:
    """Layer 2's servicer: answers from constants, as the no-op server does."""

    def Status(self, raw: bytes | None, context: Any) -> api_pb2.StatusResponse:
        return api_pb2.StatusResponse(version="v2", healthz="ok", key_id="obk2.layers")

    def Encrypt(self, raw: bytes | None, context: Any) -> api_pb2.EncryptResponse:
        return api_pb2.EncryptResponse()

    def Decrypt(self, raw: bytes | None, context: Any) -> api_pb2.DecryptResponse:
        return api_pb2.DecryptResponse(plaintext=SEED)


class StandInTransit:
    """A Transit client whose every request takes *wait* seconds and no CPU (layers 3, 4)."""

    def __init__(self, wait: float) -> None:
        self.wait = wait

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        raise NotImplementedError("the layer benchmark sends only Decrypts")

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        if self.wait:
            time.sleep(self.wait)
        return SEED

    def decrypt_batch(
        self, items: Sequence[tuple[bytes, str]], *, deadline: float | None = None
    ) -> list[bytes | KmsError]:
        if self.wait:
            time.sleep(self.wait)
        return [SEED] * len(items)


def serve_layer(layer: str, config_path: Path, openbao_wait: float) -> int:
    """Serve *layer* on the socket *config_path* names until SIGTERM or SIGINT."""
    from bao_kms.api.server import ProviderServer
    from bao_kms.api.service import KeyManagementServicer
    from bao_kms.cli.signals import SignalLatch
    from bao_kms.config import load_config
    from bao_kms.logs import configure_logging
    from bao_kms.openbao.batcher import DecryptBatcher
    from bao_kms.provider import Provider
    from bao_kms.status.feedback import ReportingTransit

    config = load_config(config_path)
    configure_logging(config.logging.level)
    with SignalLatch() as latch:
        # the whole provider (status monitor, auth, metrics, ops endpoints) with its servicer
        # swapped: every background thread a real one runs is there, only Transit is not
        provider = Provider(config)
        servicer: Any = ConstantServicer()
        if layer != "front":
            transit = StandInTransit(0.0 if layer == "servicer" else openbao_wait)
            cipher = transit if layer == "servicer" else DecryptBatcher(transit)
            servicer = KeyManagementServicer(
                provider.monitor,
                ReportingTransit(cipher, provider.monitor.notice),
                workers=config.server.workers,
                on_failure=provider.metrics.rpc_failed,
            )
        provider.servicer = servicer
        provider.server = ProviderServer(
            servicer, config.server, interceptors=provider.interceptors
        )
        provider.start()
        latch.wait()
        provider.stop(1.0)
    return 0


# --- the driver ---------------------------------------------------------------------------------


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    runs: dict[str, list[Run]] = {key: [] for key, _ in (*LAYERS, REFERENCE)}
    with EmbeddedOpenBao(workdir=workdir / "openbao") as openbao:
        bench = Bench(args, workdir, openbao)
        # no plaintext cache and no repeat within a round: every provider Decrypt reaches
        # OpenBao; the stand-ins and the no-op server take the same requests
        sealed = bench.fresh(args.requests)
        warm = sealed[: min(300, len(sealed))]
        variant = Variant(pure=False, batching=True)
        servers = {}
        with contextlib.ExitStack() as stack:
            for layer in PARTIAL:
                command = [sys.executable, str(HERE / "layers.py"), "--serve", layer]
                command += ["--openbao-wait", str(args.openbao_wait)]
                servers[layer] = stack.enter_context(bench.provider(variant, command))
            servers["provider"] = stack.enter_context(bench.provider(variant))
            for server in servers.values():
                call = lambda i, s=server: s.calls.decrypt(warm[i].request, timeout=10)  # noqa: E731
                closed_loop("warm", call, len(warm), 8)
            for index in range(args.rounds):
                print(f"--- round {index + 1}", flush=True)
                for key, label in LAYERS:
                    if key == "noop":
                        run = noop_run(bench, args.requests, args.concurrency)
                    else:
                        server = servers[key]
                        run = closed_loop(
                            label,
                            lambda i, s=server: s.calls.decrypt(sealed[i].request, timeout=10),
                            len(sealed),
                            args.concurrency,
                            max_seconds=args.max_seconds,
                            server=server.child,
                        )
                    print(run.line(), flush=True)
                    runs[key].append(run)
                    if key == "noop":
                        run = noop_run(
                            bench,
                            args.requests,
                            args.concurrency,
                            decrypt_wait=args.openbao_wait,
                            batched=True,
                        )
                        print(run.line(), flush=True)
                        runs[REFERENCE[0]].append(run)
    return summarize(runs)


def summarize(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Medians per layer; each layer's CPU per call against the no-op's and the layer before."""
    layers: list[dict[str, Any]] = []
    noop_cpu = noop_rate = None
    previous = None
    for key, label in (LAYERS[0], REFERENCE, *LAYERS[1:]):
        done = [run for run in runs[key] if run.calls and run.cpu_ms_per_call is not None]
        if not done:
            continue
        rate = statistics.median(run.per_second for run in done)
        cpu = statistics.median(run.cpu_ms_per_call for run in done)  # type: ignore[misc]
        if noop_cpu is None:
            noop_cpu, noop_rate = cpu, rate
        layers.append(
            {
                "layer": key,
                "label": label,
                "per_second": round(rate, 1),
                "cpu_ms_per_call": round(cpu, 4),
                # the reference adds to the no-op; the layers to the layer before them
                "added_cpu_ms": round(cpu - previous, 4) if previous is not None else None,
                "cpu_vs_noop": round(cpu / noop_cpu, 3),
                "rate_vs_noop": round(rate / noop_rate, 3) if noop_rate else None,
                "errors": sum(sum(run.errors.values()) for run in runs[key]),
            }
        )
        if key != REFERENCE[0] or previous is None:
            previous = cpu
    return {"layers": layers, "rounds": {k: [r.as_dict() for r in v] for k, v in runs.items()}}


def markdown(result: dict[str, Any]) -> str:
    settings = result["settings"]
    lines = [
        f"Layers: {settings['requests']} Decrypts at concurrency {settings['concurrency']}, "
        f"medians of {settings['rounds']} interleaved rounds; the batcher's stand-in OpenBao "
        f"waits {settings['openbao_wait'] * 1000:g} ms a request.",
        "",
        "| server | Decrypts/s | vs no-op | server CPU ms/call | added by the layer "
        "| CPU vs no-op |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for layer in result["summary"]["layers"]:
        added = layer["added_cpu_ms"]
        lines.append(
            f"| {layer['label']} | {layer['per_second']:.0f} | {layer['rate_vs_noop']:.2f} "
            f"| {layer['cpu_ms_per_call']:.3f} | {'' if added is None else f'{added:+.3f}'} "
            f"| {layer['cpu_vs_noop']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="Decrypts per run (N)")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (C)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--workers", type=int, default=64, help="server.workers of each server")
    parser.add_argument(
        "--openbao-wait", type=float, default=0.001, help="the stand-in OpenBao's seconds a request"
    )
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--output", type=Path, default=HERE / "results" / "layers.json")
    parser.add_argument("--serve", choices=PARTIAL, help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0 <= args.openbao_wait <= 1:
        parser.error("--openbao-wait must be 0 to 1 seconds")
    if args.serve:
        if args.config is None:
            parser.error("--serve needs --config")
        return serve_layer(args.serve, args.config, args.openbao_wait)
    args.batch_linger = None  # the provider's default gather, as Bench expects the attribute
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bk-layers-") as workdir:
        summary = measure(args, Path(workdir))
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "machine": machine(),
        "settings": settings,
        "minutes": round((time.time() - started) / 60, 2),
        "summary": summary,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
