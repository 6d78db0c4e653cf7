"""The release evidence command with tiny settings: every gate runs and passes, against a
fresh real OpenBao, and the report comes out as JSON and Markdown."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GATES = ["storm", "fault", "soak", "conformance"]

pytestmark = [pytest.mark.openbao, pytest.mark.slow, pytest.mark.timeout(300)]


def test_release_evidence_runs_every_gate_and_writes_one_report(tmp_path: Path) -> None:
    argv = [sys.executable, str(ROOT / "benchmarks" / "release_evidence.py"), "--tiny"]
    # subprocess.run kills the command on timeout; its OpenBao and providers die with it
    done = subprocess.run(
        [*argv, "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((tmp_path / "release-evidence.json").read_text())
    assert [gate["name"] for gate in report["gates"]] == GATES
    assert all(gate["ok"] and gate["figure"] for gate in report["gates"]), report["gates"]
    assert report["ok"]
    assert {"bao-kms-provider", "python", "grpcio", "openbao"} <= set(report["versions"])
    assert report["versions"]["openbao"].startswith("OpenBao v")
    assert {"nproc", "memory_gib", "kernel"} <= set(report["machine"])
    markdown = (tmp_path / "release-evidence.md").read_text()
    for gate in GATES:
        assert f"| {gate} | PASS |" in markdown
