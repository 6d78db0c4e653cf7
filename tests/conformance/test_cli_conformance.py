"""``bao-kms-provider conformance`` as an operator runs it: output, report file, exit codes.

The command runs in a child process (the installed entry point's module) against plugins
served by this test process, and against the real provider on a real OpenBao dev server with
the Transit key rotated mid-run by ``--rotate-command``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from _support.kms_plugins import EncryptKeyIdDiffers, FakePlugin
from _support.rotation_nodes import Node
from bao_kms.cli.main import main
from bao_kms.conformance.checks import Check
from bao_kms.embedded import find_bao_binary

pytestmark = pytest.mark.timeout(90)

#: small runs: every phase, a few objects and samples
QUICK = ("--objects", "8", "--samples", "5", "--concurrency", "4", "--ready-timeout", "2s")


def conformance(
    socket: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bao_kms", "conformance", "--socket", str(socket), *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # subprocess.run kills the child by PID when it runs over
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


class RotatesOnTrigger(FakePlugin):
    """Rotates its key when a trigger file appears (what the test's --rotate-command makes)."""

    def __init__(self, trigger: Path) -> None:
        super().__init__()
        self.trigger = trigger

    def status_key_id(self) -> str:
        if self.trigger.exists():
            self.trigger.unlink()
            self.rotate()
        return self.current


def test_a_correct_plugin_passes_with_json_and_a_report_file(serve_plugin, socket_dir):
    socket = serve_plugin(FakePlugin())
    report_file = socket_dir / "report.json"
    result = conformance(
        f"unix://{socket}", *QUICK, "--output", "json", "--report", str(report_file)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report == json.loads(report_file.read_text())
    assert report["ok"] is True and report["summary"]["failed"] == 0
    assert report["socket"] == str(socket)
    assert [check["name"] for check in report["checks"]] == [str(check) for check in Check]
    outcomes = {check["name"]: check["outcome"] for check in report["checks"]}
    assert outcomes["rotation"] == "SKIP"
    assert {"encrypt", "decrypt"} <= set(report["latency_ms"])
    assert report["objects_written"] == 3 * 8


def test_a_broken_plugin_exits_4_with_one_line_per_check(serve_plugin):
    result = conformance(serve_plugin(EncryptKeyIdDiffers()), *QUICK)
    assert result.returncode == 4, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(Check) + 1
    assert [line.split()[1].rstrip(":") for line in lines[:-1]] == [str(c) for c in Check]
    assert "FAIL encrypt-key-id: Encrypt returned another key_id than Status reported" in lines
    assert lines[-1].startswith("10 passed, 1 failed, 8 skipped")
    assert result.stderr == ""


def test_rotate_command_rotates_mid_run_and_a_failing_one_fails_rotation(serve_plugin, socket_dir):
    trigger = socket_dir / "rotate-now"
    socket = serve_plugin(RotatesOnTrigger(trigger))
    command = f"touch {shlex.quote(str(trigger))}"
    result = conformance(socket, *QUICK, "--rotate-command", command, "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    outcomes = {c["name"]: c["outcome"] for c in json.loads(result.stdout)["checks"]}
    assert outcomes["rotation"] == "PASS"

    result = conformance(socket, *QUICK, "--rotate-command", "exit 3")
    assert result.returncode == 4
    assert "FAIL rotation: the rotate hook failed: --rotate-command exited with status 3" in (
        result.stdout
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--samples", "0"),
        ("--socket", "tcp://127.0.0.1:1"),
        ("--rotation-timeout", "5"),  # a bare number is ambiguous: 5s? 5m?
        ("--output", "yaml"),
    ],
)
def test_usage_errors_exit_2(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(["conformance", "--socket", "/run/kms.sock", *args])
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_without_cryptography_it_says_what_to_install(socket_dir):
    script = (
        "import sys; sys.modules['cryptography'] = None\n"
        "from bao_kms.cli.main import main\n"
        f"sys.exit(main(['conformance', '--socket', {str(socket_dir / 'k.sock')!r}]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "pip install 'bao-kms-provider[conformance]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.openbao
def test_the_provider_passes_on_real_openbao_through_a_transit_rotation(
    openbao, fresh_key, socket_dir
):
    mount, key = fresh_key()
    # promotes a new Transit version at its first observation: the rotation lands mid-run
    node = Node(openbao, socket_dir, "conformance", mount).start()
    try:
        report_file = socket_dir / "provider-report.json"
        rotate = f"{shlex.quote(find_bao_binary())} write -f {mount}/keys/{key}/rotate"
        result = conformance(
            node.socket_path,
            *("--objects", "32", "--samples", "50", "--concurrency", "16"),
            *("--rotate-command", rotate, "--rotation-timeout", "30s"),
            *("--report", str(report_file)),
            env={"BAO_ADDR": openbao.address, "BAO_TOKEN": openbao.root_token},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(report_file.read_text())
        outcomes = {c["name"]: c["outcome"] for c in report["checks"]}
        # latency is judged on a shared 2-core machine: a warning is allowed, nothing else
        assert {name for name, outcome in outcomes.items() if outcome != "PASS"} <= {
            "encrypt-latency",
            "decrypt-latency",
        }, result.stdout
        assert report["key_id_changes"] == 1
        assert node.versions() == {1: "retired", 2: "active"}
    finally:
        node.stop()
