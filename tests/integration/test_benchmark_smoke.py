"""A short smoke of the benchmarks, as CI runs them: the load driver end to end on tiny storms,
the layer benchmark on one tiny round, the codec suite's validation-path group, and the ratio
check against the committed baseline.

No timing is asserted except the two machine-independent ratios, with a generous margin
(half the baseline): a smoke this small on a shared machine only catches a collapse, such as
batching switched off by mistake or the compiled fast paths deferring everything to the spec.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"
MARGIN = "0.5"

pytestmark = [pytest.mark.openbao, pytest.mark.slow, pytest.mark.timeout(150)]


def run(*argv: str | Path, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, argv)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def quick_load(output: Path, *extra: str) -> dict[str, Any]:
    """One ``load_driver.py --quick`` run; its JSON."""
    driver = run(BENCHMARKS / "load_driver.py", "--quick", *extra, "--output", output, timeout=70)
    assert driver.returncode == 0, driver.stdout[-3000:] + driver.stderr[-3000:]
    return json.loads(output.read_text())  # type: ignore[no-any-return]


def test_the_load_driver_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "quick.json"
    result = quick_load(output, "--aio-noop")
    for name, measured in [*result["rounds"][0].items(), *result["latency"].items()]:
        assert measured["errors"] == {}, name
        assert measured["calls"] > 0, name
    assert {"noop", "noop asyncio"} <= set(result["rounds"][0])  # both server models answered
    # the latency floors were measured in the same run
    floors = {"noop C=1", "noop C=8", "noop waiting C=1", "noop batched C=8", "direct C=1"}
    assert floors <= set(result["latency"])
    assert result["summary"]["ratios"]["noop asyncio / noop"] > 0
    batched = result["rounds"][0]["dup50 compiled, batching"]["extra"]
    single = result["rounds"][0]["dup50 compiled, no batching"]["extra"]
    # no cache: every distinct ciphertext reached OpenBao; batching sent a fraction of the
    # requests, coalescing kept the items near the distinct count
    assert batched["distinct"] <= batched["openbao_items"] <= single["openbao_items"]
    assert batched["openbao_requests"] < single["openbao_requests"] / 2
    check = run(BENCHMARKS / "check_ratios.py", "--load", output, "--margin", MARGIN, timeout=30)
    if check.returncode != 0:
        # One round of 200 calls on a shared machine swings by half now and then (0.25 against
        # a 0.52 baseline once, in a CI run that passed the same check twice before): measure
        # again. A real collapse (batching off runs at a third of the baseline) fails both.
        quick_load(output)
        check = run(
            BENCHMARKS / "check_ratios.py", "--load", output, "--margin", MARGIN, timeout=30
        )
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_layer_benchmark_end_to_end(tmp_path: Path) -> None:
    output = tmp_path / "layers.json"
    layers = run(
        BENCHMARKS / "layers.py", "--requests", "150", "--rounds", "1", "--output", output,
        timeout=120,
    )  # fmt: skip
    assert layers.returncode == 0, layers.stdout[-3000:] + layers.stderr[-3000:]
    summary = json.loads(output.read_text())["summary"]["layers"]
    # every layer served every call: the partial providers are the real classes, so a change
    # that breaks how they fit together shows here
    assert [layer["layer"] for layer in summary] == [
        "noop", "batched", "front", "servicer", "batcher", "provider"
    ]  # fmt: skip
    assert all(layer["errors"] == 0 for layer in summary)
    assert "| the provider: + its HTTP client and a real OpenBao |" in layers.stdout


@pytest.mark.compiled
def test_the_codec_speedup_holds(tmp_path: Path) -> None:
    output = tmp_path / "codec.json"
    suite = run(
        "-m", "pytest", BENCHMARKS / "test_codec_bench.py", "-q", "-k", "validation_path",
        "--benchmark-only", "--benchmark-max-time=0.3", f"--benchmark-json={output}",
        timeout=60,
    )  # fmt: skip
    assert suite.returncode == 0, suite.stdout[-3000:] + suite.stderr[-3000:]
    check = run(BENCHMARKS / "check_ratios.py", "--codec", output, "--margin", MARGIN, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
