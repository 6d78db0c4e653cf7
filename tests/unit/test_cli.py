"""The command line, run as a real process: exit codes, JSON output, no tracebacks."""

from __future__ import annotations

import importlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bao_kms._codec_py import hash_label
from bao_kms._version import __version__
from bao_kms.cli.main import COMMANDS, build_parser

SRC = Path(__file__).resolve().parents[2] / "src"
TIMEOUT = 60


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    # the package under test is whatever this interpreter imports (the installed wheel in CI);
    # only the operator-facing overrides are cleared so they cannot leak into a test
    overrides = ("BAO_KMS_CONFIG", "BAO_KMS_SOCKET", "BAO_KMS_LOG_LEVEL", "BAO_KMS_BAO_BINARY")
    environ = {k: v for k, v in os.environ.items() if k not in overrides}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bao_kms", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        cwd=SRC.parent,
    )


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def document(socket_path: Path, token_file: Path, **server: Any) -> dict[str, Any]:
    return {
        "server": {"socketPath": str(socket_path), **server},
        "openbao": {
            "addresses": [f"http://127.0.0.1:{closed_port()}"],
            "timeout": "500ms",
            "allowInsecureHttp": True,
        },
        "auth": {"method": "token", "token": {"file": str(token_file)}},
        "identity": {
            "providerName": "p",
            "clusterId": "c",
            "openbaoInstanceId": "o",
            "transitMountId": "t",
            "keyLineageId": "k",
        },
    }


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("not-a-real-token\n")
    path.chmod(0o600)  # the provider refuses credential files others can read
    path.chmod(0o600)
    return path


@pytest.fixture
def valid_config(tmp_path: Path, socket_dir: Path, token_file: Path) -> Path:
    path = tmp_path / "valid.yaml"
    path.write_text(yaml.safe_dump(document(socket_dir / "kms.sock", token_file)))
    return path


# --- version / usage ----------------------------------------------------------------------------


def test_version_text() -> None:
    result = run("version")
    assert result.returncode == 0, result.stderr
    assert __version__ in result.stdout
    assert result.stdout.startswith("bao-kms-provider ")


def test_version_json() -> None:
    result = run("version", "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["version"] == __version__
    assert data["codec"] in ("python", "cython")
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "grpcio" in data


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--bogus",),
        ("version", "--bogus"),
        ("frobnicate",),
        ("version", "--output", "xml"),
        ("config",),
        ("config", "lint"),
        ("probe",),
        ("probe", "--socket", "/x", "--timeout", "10"),
        ("probe", "--socket", "/x", "--timeout", "-1s"),
        ("probe", "--socket", "tcp://127.0.0.1:1"),
        ("probe", "--socket", "unix://kms.sock"),
        ("dev", "--socket", "http://127.0.0.1:1"),
    ],
    ids=lambda args: " ".join(args) or "(none)",
)
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "usage:" in result.stderr
    no_traceback(result)


# --- config -------------------------------------------------------------------------------------


def test_config_schema_is_json() -> None:
    result = run("config", "schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["type"] == "object"
    assert {"server", "openbao", "auth", "identity"} <= set(schema["properties"])
    assert "socketPath" in schema["$defs"]["ServerConfig"]["properties"]


def test_config_check_valid(valid_config: Path) -> None:
    result = run("config", "check", "--config", str(valid_config))
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


def test_config_check_valid_json(valid_config: Path) -> None:
    result = run("config", "check", "--config", str(valid_config), "--output", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["valid"] is True
    # identity labels are shown as their hash (H, as in the annotations), never as given
    assert data["config"]["identity"]["clusterId"] == "sha256:" + hash_label("c")


def test_config_check_reads_env_path(valid_config: Path) -> None:
    result = run("config", "check", env={"BAO_KMS_CONFIG": str(valid_config)})
    assert result.returncode == 0, result.stderr


def test_config_check_without_any_path_is_usage() -> None:
    result = run("config", "check")
    assert result.returncode == 2
    no_traceback(result)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        # the unknown key itself is not repeated (it could be a pasted token)
        (lambda d: d["identity"].update(clusterIdd="x"), "identity: unknown key at line"),
        (lambda d: d["identity"].update(clusterId="Zorblax cluster"), "identity.clusterId"),
        (lambda d: d["server"].update(socketMode="0666"), "server.socketMode"),
        (lambda d: d["openbao"].update(timeout="10"), "openbao.timeout"),
    ],
    ids=["unknown-key", "bad-label", "mode", "duration"],
)
def test_config_check_invalid_exits_3_naming_field(
    tmp_path: Path, socket_dir: Path, token_file: Path, edit, field: str
) -> None:
    data = document(socket_dir / "kms.sock", token_file)
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 3, (result.stdout, result.stderr)
    assert field in result.stderr
    assert "Zorblax" not in result.stderr
    assert result.stdout == ""
    no_traceback(result)


def test_config_check_invalid_yaml_exits_3(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("server:\n  socketPath: [\n")
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 3
    assert "line" in result.stderr
    no_traceback(result)


@pytest.mark.parametrize("which", ["missing", "directory"])
def test_config_check_unreadable_exits_3(tmp_path: Path, which: str) -> None:
    path = tmp_path / "absent.yaml" if which == "missing" else tmp_path
    result = run("config", "check", "--config", str(path))
    assert result.returncode == 3
    assert str(path) in result.stderr
    no_traceback(result)


def test_env_log_level_override_validated(valid_config: Path) -> None:
    result = run(
        "config", "check", "--config", str(valid_config), env={"BAO_KMS_LOG_LEVEL": "chatty"}
    )
    assert result.returncode == 3
    assert "logging.level" in result.stderr
    no_traceback(result)


# --- serve --------------------------------------------------------------------------------------


def test_serve_without_config_is_usage() -> None:
    result = run("serve", timeout=30)
    assert result.returncode == 2
    assert "--config" in result.stderr
    no_traceback(result)


def test_serve_settles_the_garbage_collector() -> None:
    """Start-up objects are frozen and the young generation is collected less often, yet a
    reference cycle made afterwards is still collected. In a subprocess: the setting is
    process-wide."""
    script = textwrap.dedent(
        """
        import gc, weakref
        from bao_kms.cli.serve import YOUNG_GENERATION_THRESHOLD, settle_garbage_collector
        before = gc.get_threshold()
        settle_garbage_collector()
        class Node:
            pass
        first, second = Node(), Node()
        first.peer, second.peer = second, first
        alive = weakref.ref(first)
        del first, second
        gc.collect()
        print(
            gc.get_freeze_count() > 1000,
            gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, *before[1:]),
            alive() is None,
        )
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.split() == ["True", "True", "True"], (result.stdout, result.stderr)


def test_serve_with_missing_config_exits_3(tmp_path: Path) -> None:
    result = run("serve", env={"BAO_KMS_CONFIG": str(tmp_path / "absent.yaml")}, timeout=30)
    assert result.returncode == 3
    no_traceback(result)


def test_serve_refuses_world_writable_socket_directory(
    tmp_path: Path, socket_dir: Path, token_file: Path
) -> None:
    shared = socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document(shared / "kms.sock", token_file)))
    started = time.monotonic()
    result = run("serve", "--config", str(path), timeout=30)
    elapsed = time.monotonic() - started
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "world-writable" in result.stderr
    assert str(shared) in result.stderr
    no_traceback(result)
    assert elapsed < 15
    assert list(shared.iterdir()) == []


def test_serve_refuses_live_socket(tmp_path: Path, socket_dir: Path, token_file: Path) -> None:
    sock_path = socket_dir / "kms.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock_path))
    listener.listen(1)
    try:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(document(sock_path, token_file)))
        result = run("serve", "--config", str(path), timeout=30)
        assert result.returncode == 5, (result.stdout, result.stderr)
        assert "in use" in result.stderr
        no_traceback(result)
        assert sock_path.is_socket()
    finally:
        listener.close()


def test_serve_with_unknown_group_leaves_no_socket(
    tmp_path: Path, socket_dir: Path, token_file: Path
) -> None:
    sock_path = socket_dir / "kms.sock"
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(document(sock_path, token_file, socketGroup="no-such-group-bao-kms-zz"))
    )
    result = run("serve", "--config", str(path), timeout=30)
    assert result.returncode == 5, (result.stdout, result.stderr)
    assert "no-such-group-bao-kms-zz" in result.stderr
    no_traceback(result)
    assert not os.path.lexists(sock_path)


# --- probe --------------------------------------------------------------------------------------


def test_probe_missing_socket_exits_4() -> None:
    result = run("probe", "--socket", "/nonexistent/x.sock", "--timeout", "1s", timeout=30)
    assert result.returncode == 4, (result.stdout, result.stderr)
    assert "FAILED" in result.stdout
    no_traceback(result)


def test_probe_missing_socket_json() -> None:
    result = run(
        "probe",
        "--socket",
        "/nonexistent/x.sock",
        "--timeout",
        "1s",
        "--output",
        "json",
        timeout=30,
    )
    assert result.returncode == 4
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    assert data["ok"] is False
    assert data["problem"]
    no_traceback(result)


def test_probe_socket_nobody_answers_exits_4(socket_dir: Path) -> None:
    # A listener that never speaks HTTP/2: the probe must give up within its timeout.
    path = socket_dir / "mute.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    try:
        started = time.monotonic()
        result = run(
            "probe", "--socket", str(path), "--timeout", "1s", "--output", "json", timeout=30
        )
        assert result.returncode == 4
        assert json.loads(result.stdout)["ok"] is False
        assert time.monotonic() - started < 20
    finally:
        listener.close()


def test_probe_resolves_a_relative_socket_against_the_working_directory() -> None:
    result = run("probe", "--socket", "no-such.sock", "--timeout", "1s", "--output", "json")
    assert result.returncode == 4
    assert str(SRC.parent / "no-such.sock") in json.loads(result.stdout)["problem"]
    no_traceback(result)


def test_every_registered_command_has_a_parser_and_runs() -> None:
    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    assert list(subparsers.choices) == [
        "serve",
        "dev",
        "probe",
        "conformance",
        "config",
        "init",
        "policy",
        "doctor",
        "rotation-plan",
        "retire-versions",
        "restore-versions",
        "rebuild-state",
        "version",
    ]
    for name, (command, parser) in zip(COMMANDS, subparsers.choices.items(), strict=True):
        module = importlib.import_module(f"bao_kms.cli.{name}")
        assert module.__doc__, name
        assert parser.get_default("run") is module.run, command


def test_probe_zero_rounds_is_not_a_pass() -> None:
    result = run(
        "probe", "--socket", "/nonexistent/x.sock", "--timeout", "1s", "--rounds", "0", timeout=30
    )
    assert result.returncode != 0, result.stdout


def test_dev_without_an_openbao_binary_exits_5(tmp_path: Path) -> None:
    result = run(
        "dev",
        "--workdir",
        str(tmp_path / "w"),
        env={"BAO_KMS_BAO_BINARY": str(tmp_path / "no-such-bao")},
    )
    assert result.returncode == 5, result.stderr
    assert "cannot run" in result.stderr
    no_traceback(result)


def test_dev_with_an_unusable_workdir_exits_5(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run("dev", "--workdir", str(blocker / "sub"))
    assert result.returncode == 5, result.stderr
    no_traceback(result)


def test_a_closed_stdout_pipe_is_not_reported_as_a_bug() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BAO_KMS_CONFIG")}
    reader_gone = subprocess.run(
        f"{sys.executable} -m bao_kms config schema | true",
        shell=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environ,
    )
    assert "internal error" not in reader_gone.stderr
    no_traceback(reader_gone)
