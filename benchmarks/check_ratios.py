"""The regression check: ratios that do not depend on the machine, against the baseline.

Absolute numbers move with the machine and with whatever else it runs; a ratio between two
things measured together, in one run on one machine, does not (much). Two are held:

* **codec**: pure-Python / compiled time (fastest round) of the ``decrypt validation path``
  group in a pytest-benchmark JSON (key_id parse, annotation match, ciphertext check, body);
  the baseline is the committed ``benchmarks/baseline/<machine>/*_baseline.json``;
* **end to end**: provider storm throughput (compiled, batching) / no-op server throughput,
  from the load driver's JSON; the baseline is ``benchmarks/baseline/load.json`` (the
  published run) or ``load-quick.json`` for a ``--quick`` run (small storms batch less).

Each fails when it falls more than ``--margin`` (a fraction) below its baseline. Exit 0 when
every given ratio holds, 1 when one does not, 2 on usage errors.

    pytest benchmarks/test_codec_bench.py --benchmark-only --benchmark-json=/tmp/codec.json
    python benchmarks/load_driver.py --output /tmp/load.json
    python benchmarks/check_ratios.py --codec /tmp/codec.json --load /tmp/load.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BASELINE = Path(__file__).resolve().parent / "baseline"
VALIDATION_GROUP = "decrypt validation path"
STORM = "compiled, batching / noop"
#: the issue's floor for the compiled twin on the validation path, reported beside the check
CODEC_TARGET = 3.0
#: which pytest-benchmark statistic: the fastest round, the one a busy machine disturbs least
STAT = "min"


def codec_speedup(document: dict[str, Any], group: str = VALIDATION_GROUP) -> float:
    """Pure time / compiled time (fastest rounds) of *group* in a pytest-benchmark JSON."""
    times = {}
    for bench in document["benchmarks"]:
        if bench["group"] == group:
            times["cython" if "[cython" in bench["name"] else "python"] = bench["stats"][STAT]
    if set(times) != {"python", "cython"}:
        raise ValueError(f"the JSON does not hold both twins of {group!r}")
    return float(times["python"] / times["cython"])


def codec_baseline(root: Path = BASELINE) -> Path:
    """The newest committed pytest-benchmark baseline (``--benchmark-save=baseline``)."""
    found = sorted(root.glob("*/*_baseline.json"))
    if not found:
        raise FileNotFoundError(f"no pytest-benchmark baseline under {root}")
    return found[-1]


def storm_ratio(document: dict[str, Any]) -> float:
    ratio = document["summary"]["ratios"].get(STORM)
    if ratio is None:
        raise ValueError(f"the load JSON has no {STORM!r} ratio")
    return float(ratio)


def load_baseline(document: dict[str, Any], root: Path = BASELINE) -> Path:
    return root / ("load-quick.json" if document["settings"].get("quick") else "load.json")


def judge(name: str, now: float, then: float, margin: float) -> bool:
    floor = then * (1 - margin)
    held = now >= floor
    verdict = "ok" if held else "REGRESSED"
    print(f"{name}: {now:.3f} (baseline {then:.3f}, floor {floor:.3f}) {verdict}")
    return held


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--codec", type=Path, help="pytest-benchmark JSON to check")
    parser.add_argument("--codec-baseline", type=Path, help="default: the committed baseline")
    parser.add_argument("--load", type=Path, help="load driver JSON to check")
    parser.add_argument("--load-baseline", type=Path, help="default: baseline/load[-quick].json")
    parser.add_argument("--margin", type=float, default=0.25, help="allowed fall, 0.25 = 25%%")
    args = parser.parse_args(argv)
    if args.codec is None and args.load is None:
        parser.error("give --codec, --load or both")
    held = True
    if args.codec is not None:
        now = codec_speedup(json.loads(args.codec.read_text()))
        baseline = args.codec_baseline or codec_baseline()
        then = codec_speedup(json.loads(baseline.read_text()))
        held &= judge("codec compiled/pure speed-up (validation path)", now, then, args.margin)
        if now < CODEC_TARGET:
            print(f"  below the {CODEC_TARGET:g}x target")
    if args.load is not None:
        document = json.loads(args.load.read_text())
        baseline = args.load_baseline or load_baseline(document)
        then = storm_ratio(json.loads(baseline.read_text()))
        held &= judge("storm throughput / no-op server", storm_ratio(document), then, args.margin)
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
