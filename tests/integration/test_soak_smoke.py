"""A short soak, as CI runs it: ``benchmarks/soak.py`` for 20 s with one OpenBao restart.

The driver runs as its own process (a real raft OpenBao, the provider as ``serve``), so the
smoke checks the command a release runs, its JSON and its exit code. The bounds are the
record's own; only the duration is short. That the bounds can fail is shown on the judging
function with doctored figures: a soak that never fails would prove nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"

pytestmark = [pytest.mark.openbao, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import soak

    yield soak


def test_a_short_soak_with_an_openbao_restart_keeps_every_bound(tmp_path: Path) -> None:
    output = tmp_path / "soak.json"
    argv = [sys.executable, BENCHMARKS / "soak.py", "--duration", "20s", "--restarts", "1"]
    argv += ["--outage", "3s", "--rate", "60", "--output", output]
    # subprocess.run kills the driver on timeout; its OpenBao and provider die with it
    done = subprocess.run(
        list(map(str, argv)), cwd=ROOT, capture_output=True, text=True, timeout=200, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(output.read_text())
    assert report["ok"] and all(bound["ok"] for bound in report["bounds"].values())
    assert set(report["calls"]) == {"Status", "Encrypt", "Decrypt"}
    assert all(rpc["ok"] > 0 and rpc["p99_ms"] is not None for rpc in report["calls"].values())
    assert report["bounds"]["wrong_plaintext"]["value"] == 0
    (restart,) = report["restarts"]
    assert restart["recovered_after_s"] is not None
    for moment in ("launch", "warm", "end"):
        assert {"rss_mib", "threads", "fds"} <= set(report["resources"][moment])


def test_the_bounds_fail_on_a_leak_or_a_wrong_plaintext(soak: ModuleType) -> None:
    settings = soak.Settings(duration=60, restarts=0)
    healthy = {"rss_mib": 60.0, "threads": 20, "fds": 15}

    def judged(end: dict[str, float], wrong: int = 0) -> dict[str, bool]:
        tally = soak.Tally(started=time.monotonic())
        tally.record("Decrypt", "OK", 0.001)
        tally.wrong_plaintext = wrong
        report = soak.judge(settings, tally, healthy, healthy, end, [], [])
        return {name: bound["ok"] for name, bound in report["bounds"].items()} | {
            "ok": report["ok"]
        }

    assert judged(dict(healthy))["ok"]
    assert not judged(healthy | {"rss_mib": 60.0 + 33})["rss_growth_mib"]
    assert not judged(healthy | {"threads": 23})["thread_growth"]
    assert not judged(healthy | {"fds": 15 + settings.fd_tolerance + 1})["fd_growth"]
    verdict = judged(dict(healthy), wrong=1)
    assert not verdict["wrong_plaintext"] and not verdict["ok"]
