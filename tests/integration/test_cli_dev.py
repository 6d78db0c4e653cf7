"""``bao-kms-provider dev`` end to end, and ``probe`` against it, as a new user runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from _support.dev_process import DevProcess, wait_gone

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]


def _cli(
    *args: str, timeout: float = 30, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bao_kms", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )


def test_dev_serves_prints_config_and_stops_cleanly(socket_dir):
    socket_path = socket_dir / "dev.sock"
    workdir = socket_dir / "work"
    with DevProcess("--socket", str(socket_path), "--workdir", str(workdir)) as dev:
        output = dev.wait_serving().output
        assert f"unix://{socket_path}" in output
        assert "kind: EncryptionConfiguration" in output and "apiVersion: v2" in output
        assert "self-probe         : ok" in output
        assert dev.socket_path == socket_path

        probe = _cli("probe", "--socket", str(socket_path), "--output", "json", "--rounds", "5")
        assert probe.returncode == 0, probe.stdout + probe.stderr
        report = json.loads(probe.stdout)
        assert report["ok"] and report["rounds"] == 5
        assert report["status_key_id"] == report["encrypt_key_id"]

        dev.signal(signal.SIGINT)
        assert dev.wait(30) == 0
        assert not socket_path.exists()
        # the OpenBao child is stopped by PID, not orphaned
        assert wait_gone(dev.openbao_pid, 10)
        token_files = list(Path(workdir).glob("openbao-token"))
        assert all(oct(f.stat().st_mode)[-3:] == "600" for f in token_files)
        assert "Traceback" not in dev.stderr()


def test_probe_takes_a_relative_path_or_the_endpoint_and_sighup_stops_dev(socket_dir):
    # no --workdir: dev makes its own directory in TMPDIR, which is this test's private dir
    with DevProcess(env={"TMPDIR": str(socket_dir)}) as dev:
        dev.wait_serving()
        socket_path = dev.socket_path
        assert socket_path.parent == dev.workdir and dev.workdir.parent == socket_dir
        for cwd, endpoint in [
            (dev.workdir, socket_path.name),  # "kms.sock", as typed next to it
            (socket_dir, f"{dev.workdir.name}/{socket_path.name}"),
            (None, f"unix://{socket_path}"),  # pasted from the EncryptionConfiguration
        ]:
            probe = _cli("probe", "--socket", endpoint, "--output", "json", cwd=cwd)
            assert probe.returncode == 0, (endpoint, probe.stdout + probe.stderr)
            assert json.loads(probe.stdout)["ok"]

        dev.signal(signal.SIGHUP)  # the terminal went away
        assert dev.wait(30) == 0
        assert wait_gone(dev.openbao_pid, 10)
        assert not socket_path.exists()
        assert not dev.workdir.exists()
        assert "Traceback" not in dev.stderr()


def test_probe_fails_with_exit_4_when_unhealthy(start_provider, fresh_key):
    mount, key = fresh_key(key_options={"exportable": True})
    running = start_provider(mount=mount, key=key, wait=False)
    result = _cli("probe", "--socket", str(running.socket_path), "--output", "json")
    assert result.returncode == 4
    report = json.loads(result.stdout)
    assert report["ok"] is False and "healthz" in report["problem"]
