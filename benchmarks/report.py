"""Tables and a chart from the load driver's JSON (and a pytest-benchmark JSON of the codec).

    python benchmarks/report.py benchmarks/results/latest.json \\
        --codec benchmarks/results/codec.json --chart docs/benchmarks.png --markdown

``--markdown`` prints the tables ``docs/benchmarks.md`` holds; ``--chart`` draws the PNG
(matplotlib, from the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

CODEC_GROUPS = [
    "decrypt validation path",
    "parse_key_id",
    "match_annotations (protobuf map, 7 keys)",
    "check_ciphertext_version",
    "decrypt_request_body",
    "parse_decrypt_response",
    "decrypt_batch_request_body (128 items)",
    "parse_decrypt_batch_response (128 items)",
]


def _storm_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, key in the summary) of each throughput row, ceiling and floor first."""
    rows = [("no-op KMS v2 server (ceiling)", "noop")]
    if "noop asyncio" in result["summary"]["per_second"]:
        rows.append(("no-op server on grpc.aio (another server model)", "noop asyncio"))
    rows.append(("direct Transit, one per request", "direct"))
    for key in result["summary"]["per_second"]:
        if key.startswith("storm "):
            rows.append((f"provider: {key.removeprefix('storm ')}", key))
    return rows


def _fmt(value: float | None, spec: str = ".0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _counts(extra: dict[str, Any]) -> str:
    return f"{extra['openbao_requests']} / {extra['openbao_items']} / {extra['distinct']}"


def markdown(result: dict[str, Any], codec: dict[str, Any] | None = None) -> str:
    summary, settings = result["summary"], result["settings"]
    noop = summary["per_second"]["noop"]
    direct = summary["per_second"]["direct"]
    noop_cpu = summary["cpu_ms_per_call"].get("noop")
    lines = [
        f"Storm: {settings['requests']} Decrypts at concurrency {settings['concurrency']}, "
        f"medians of {settings['rounds']} rounds; server CPU from `/proc/<pid>/stat`.",
        "",
        "| server | Decrypts/s (min-max) | vs no-op | vs direct | server CPU ms/call "
        "| CPU vs no-op | OpenBao CPU ms/decrypt | 50% dup: Decrypts/s "
        "| 50% dup, last round: OpenBao requests / items / distinct |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    last = result["rounds"][-1]
    for label, key in _storm_rows(result):
        rate = summary["per_second"][key]
        cpu = summary["cpu_ms_per_call"].get(key)
        dup_key = key.replace("storm ", "dup50 ") if key.startswith("storm ") else ""
        dup_rate = summary["per_second"].get(dup_key)
        counts = ""
        if dup_key in last:
            extra = last[dup_key]["extra"]
            counts = _counts(extra)
        # ratios taken within each round, then the median (as the summary holds them)
        name, ratios = key.removeprefix("storm "), summary["ratios"]
        vs_noop = ratios.get(f"{name} / noop", rate / noop)
        vs_direct = ratios.get(f"{name} / direct", rate / direct)
        cpu_ratio = ratios.get(
            f"{name} cpu / noop cpu", cpu / noop_cpu if cpu and noop_cpu else None
        )
        low, high = summary.get("per_second_range", {}).get(key, (rate, rate))
        openbao = _fmt(summary.get("openbao_cpu_ms_per_call", {}).get(key), ".3f")
        lines.append(
            f"| {label} | {rate:.0f} ({low:.0f}-{high:.0f}) | {vs_noop:.2f} "
            f"| {vs_direct:.2f} | {_fmt(cpu, '.3f')} | {_fmt(cpu_ratio, '.2f')} | {openbao} "
            f"| {_fmt(dup_rate)} | {counts} |"
        )
    staggered = [
        f"{key.removeprefix('dup50 staggered ')} {_counts(last[key]['extra'])}"
        for key in last
        if key.startswith("dup50 staggered ")
    ]
    if staggered:
        lines += [
            "",
            "50% duplicates asked one after the other instead (the second copy by the next "
            "caller that frees up), last round, OpenBao requests / items / distinct: "
            + "; ".join(staggered)
            + ".",
        ]
    latency = result.get("latency") or {}
    if latency:
        lines += ["", "| call | C=1 p50 / p99 ms | C=8 p50 / p99 ms | C=64 p50 / p99 ms |"]
        lines.append("|---|---|---|---|")
        for rpc in ("Status", "Encrypt", "Decrypt"):
            cells = []
            for concurrency in (1, 8, 64):
                run = latency.get(f"{rpc} C={concurrency}")
                cells.append(f"{run['p50_ms']:.2f} / {run['p99_ms']:.2f}" if run else "n/a")
            lines.append(f"| {rpc} | " + " | ".join(cells) + " |")
        floors = [("no-op server Decrypt (grpcio alone)", "noop")]
        floors.append(("no-op Decrypt that waits one direct Transit p50", "noop waiting"))
        floors.append(("no-op Decrypts that wait one direct p50 in batches", "noop batched"))
        floors.append(("direct Transit decrypt", "direct"))
        for label, stem in floors:
            runs = [latency.get(f"{stem} C={concurrency}") for concurrency in (1, 8, 64)]
            if any(runs):
                cells = [f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" if r else "" for r in runs]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    memory = result.get("memory")
    if memory:
        lines += [
            "",
            f"Memory, {len(memory['rss_after_each_mib'])} storms of {memory['calls']} Decrypts "
            f"(compiled, batching): peak RSS (VmHWM) **{memory['peak_rss_mib']} MiB**; RSS at "
            f"start {memory['rss_at_start_mib']} MiB, after each storm "
            + ", ".join(f"{v} MiB" for v in memory["rss_after_each_mib"])
            + ".",
        ]
    if codec:
        lines += ["", codec_table(codec)]
    return "\n".join(lines)


def codec_times(codec: dict[str, Any]) -> dict[str, dict[str, float]]:
    """group -> {"python": seconds, "cython": seconds}, each twin's fastest round (the least
    disturbed by a busy machine), from a pytest-benchmark JSON."""
    groups: dict[str, dict[str, float]] = {}
    for bench in codec["benchmarks"]:
        twin = "cython" if "[cython" in bench["name"] else "python"
        groups.setdefault(bench["group"], {})[twin] = bench["stats"]["min"]
    return groups


def codec_table(codec: dict[str, Any]) -> str:
    lines = ["| codec function (fastest round) | pure µs | compiled µs | compiled speed-up |"]
    lines.append("|---|---:|---:|---:|")
    for group, twins in sorted(codec_times(codec).items(), key=lambda g: _order(g[0])):
        if "python" in twins and "cython" in twins:
            lines.append(
                f"| {group} | {twins['python'] * 1e6:.2f} | {twins['cython'] * 1e6:.2f} "
                f"| {twins['python'] / twins['cython']:.1f}x |"
            )
    return "\n".join(lines)


def _order(group: str) -> tuple[int, str]:
    return (CODEC_GROUPS.index(group) if group in CODEC_GROUPS else len(CODEC_GROUPS), group)


def chart(result: dict[str, Any], path: Path) -> None:
    """Throughput (storm and 50% duplicates), server CPU per call, and latency percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = result["summary"]
    rows = _storm_rows(result)
    labels = [label.replace("provider: ", "").replace(", ", "\n") for label, _ in rows]
    labels[0], labels[1] = "no-op\nserver", "direct\nTransit"
    figure, (rates, cpus, latencies) = plt.subplots(1, 3, figsize=(16, 5.2))
    positions = range(len(rows))
    medians = [summary["per_second"][key] for _, key in rows]
    spans = [
        summary.get("per_second_range", {}).get(key, (m, m))
        for (_, key), m in zip(rows, medians, strict=True)
    ]
    whiskers = [
        [m - low for m, (low, _) in zip(medians, spans, strict=True)],
        [high - m for m, (_, high) in zip(medians, spans, strict=True)],
    ]
    rates.bar(
        positions, medians, color="#4c72b0", yerr=whiskers, capsize=3, label="median, min-max"
    )
    dup = [summary["per_second"].get(key.replace("storm ", "dup50 "), 0) for _, key in rows[2:]]
    dup = [0, 0, *dup]
    rates.bar(positions, dup, width=0.35, color="#dd8452", label="50% duplicates")
    rates.set_xticks(list(positions), labels, fontsize=8)
    rates.set_ylabel("Decrypts per second")
    rates.set_title(f"Cold-start storm, C={result['settings']['concurrency']}")
    rates.legend(fontsize=8)
    server_cpu = [summary["cpu_ms_per_call"].get(key) or 0 for _, key in rows]
    openbao = summary.get("openbao_cpu_ms_per_call", {})
    openbao_cpu = [openbao.get(key) or 0 for _, key in rows]
    cpus.bar(positions, server_cpu, color="#55a868", label="server (provider / no-op)")
    cpus.bar(positions, openbao_cpu, bottom=server_cpu, color="#937860", label="OpenBao")
    cpus.set_xticks(list(positions), labels, fontsize=8)
    cpus.set_ylabel("CPU ms per Decrypt")
    cpus.set_title("CPU per Decrypt: server and OpenBao")
    cpus.legend(fontsize=8)
    latency = result.get("latency") or {}
    names = [f"{rpc}\nC={c}" for c in (1, 8, 64) for rpc in ("Status", "Encrypt", "Decrypt")]
    keys = [f"{rpc} C={c}" for c in (1, 8, 64) for rpc in ("Status", "Encrypt", "Decrypt")]
    present = [(n, k) for n, k in zip(names, keys, strict=True) if k in latency]
    spots = range(len(present))
    latencies.bar(spots, [latency[k]["p99_ms"] for _, k in present], color="#c44e52", label="p99")
    latencies.bar(spots, [latency[k]["p50_ms"] for _, k in present], color="#8172b3", label="p50")
    latencies.set_xticks(list(spots), [n for n, _ in present], fontsize=7)
    latencies.set_yscale("log")
    latencies.set_ylabel("ms (log scale)")
    latencies.set_title("Latency through the provider (compiled, batching)")
    latencies.legend(fontsize=8)
    host = result["machine"]
    figure.suptitle(f"bao-kms-provider on {host['cpus']} CPUs: {host['cpu']}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("result", type=Path)
    parser.add_argument("--codec", type=Path, help="pytest-benchmark JSON of test_codec_bench.py")
    parser.add_argument("--chart", type=Path)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    result = json.loads(args.result.read_text())
    codec = json.loads(args.codec.read_text()) if args.codec else None
    if args.chart:
        chart(result, args.chart)
    if args.markdown:
        print(markdown(result, codec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
