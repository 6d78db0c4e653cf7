"""``bao-kms-provider dev`` end to end, and ``probe`` against it, as a new user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bao_kms", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_dev_serves_prints_config_and_stops_cleanly(socket_dir):
    socket_path = socket_dir / "dev.sock"
    workdir = socket_dir / "work"
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bao_kms",
            "dev",
            "--socket",
            str(socket_path),
            "--workdir",
            str(workdir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = dev.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Serving."):
                break
        output = "".join(lines)
        assert "Serving." in output, (
            output + dev.stderr.read() if dev.poll() is not None else output
        )
        assert f"unix://{socket_path}" in output
        assert "kind: EncryptionConfiguration" in output and "apiVersion: v2" in output
        assert "self-probe         : ok" in output
        pid_line = next(line for line in lines if line.startswith("OpenBao dev server"))
        openbao_pid = int(pid_line.rsplit("pid ", 1)[1].rstrip(")\n"))

        probe = _cli("probe", "--socket", str(socket_path), "--output", "json", "--rounds", "5")
        assert probe.returncode == 0, probe.stdout + probe.stderr
        report = json.loads(probe.stdout)
        assert report["ok"] and report["rounds"] == 5
        assert report["status_key_id"] == report["encrypt_key_id"]

        dev.send_signal(signal.SIGINT)
        assert dev.wait(30) == 0
        assert not socket_path.exists()
        with pytest.raises(ProcessLookupError):
            for _ in range(100):  # the OpenBao child is stopped by PID, not orphaned
                os.kill(openbao_pid, 0)
                time.sleep(0.1)
        token_files = list(Path(workdir).glob("openbao-token"))
        assert all(oct(f.stat().st_mode)[-3:] == "600" for f in token_files)
    finally:
        if dev.poll() is None:
            dev.kill()
            dev.wait()
        dev.stdout.close()
        stderr = dev.stderr.read()
        dev.stderr.close()
    assert "Traceback" not in stderr


def test_probe_fails_with_exit_4_when_unhealthy(start_provider, fresh_key):
    mount, key = fresh_key(key_options={"exportable": True})
    running = start_provider(mount=mount, key=key, wait=False)
    result = _cli("probe", "--socket", str(running.socket_path), "--output", "json")
    assert result.returncode == 4
    report = json.loads(result.stdout)
    assert report["ok"] is False and "healthz" in report["problem"]
