"""``doctor``'s checks without OpenBao (files, socket) and ``config check``, which shares them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from _support.config_documents import minimal
from bao_kms.cli.main import main
from bao_kms.config import Config, parse_config
from bao_kms.config.fields import UNIX_SOCKET_PATH_MAX
from bao_kms.doctor import Check, Outcome
from bao_kms.doctor.local import check_files, check_socket


@pytest.fixture
def node(socket_dir: Path) -> Path:
    """A private directory holding a token (0600) and a CA file (0644)."""
    (socket_dir / "token").write_text("not-a-real-token\n")
    (socket_dir / "token").chmod(0o600)
    (socket_dir / "ca.pem").write_text("not checked here\n")
    (socket_dir / "ca.pem").chmod(0o644)
    return socket_dir


def document(node: Path, **server: Any) -> dict[str, Any]:
    result = minimal()
    result["server"] = {"socketPath": str(node / "kms.sock"), **server}
    result["openbao"]["caFile"] = str(node / "ca.pem")
    result["auth"] = {"method": "token", "token": {"file": str(node / "token")}}
    return result


@pytest.fixture
def config_file(node: Path) -> Path:
    path = node / "config.yaml"
    path.write_text(yaml.safe_dump(document(node)))
    path.chmod(0o640)
    return path


def config_of(node: Path, **server: Any) -> Config:
    return parse_config(document(node, **server))


# --- files ------------------------------------------------------------------------------------


def test_files_pass_when_present_and_private(node: Path, config_file: Path) -> None:
    finding = check_files(config_file, config_of(node))
    assert (finding.check, finding.outcome) == (Check.FILES, Outcome.PASS)
    assert finding.message == "3 files present with safe modes"


@pytest.mark.parametrize(
    ("name", "mode", "outcome", "words"),
    [
        ("token", 0o644, Outcome.FAIL, "auth.token.file"),
        ("token", 0o640, Outcome.FAIL, "credential others can access"),
        ("ca.pem", 0o646, Outcome.FAIL, "world-writable"),
        ("ca.pem", 0o664, Outcome.WARN, "group-writable"),
        ("ca.pem", 0o640, Outcome.PASS, "safe modes"),
        ("config.yaml", 0o666, Outcome.FAIL, "the config file"),
    ],
)
def test_file_modes(
    node: Path, config_file: Path, name: str, mode: int, outcome: Outcome, words: str
) -> None:
    (node / name).chmod(mode)
    finding = check_files(config_file, config_of(node))
    assert finding.outcome is outcome
    assert words in finding.message


def test_missing_and_non_regular_files_fail_naming_the_key(node: Path, config_file: Path) -> None:
    (node / "token").unlink()
    (node / "token").mkdir()
    (node / "ca.pem").unlink()
    finding = check_files(config_file, config_of(node))
    assert finding.outcome is Outcome.FAIL
    assert f"auth.token.file ({node}/token) is not a regular file" in finding.message
    assert f"openbao.caFile ({node}/ca.pem) does not exist" in finding.message
    assert "not-a-real-token" not in finding.message


# --- socket -----------------------------------------------------------------------------------


def test_socket_in_a_private_directory_passes(node: Path) -> None:
    finding = check_socket(config_of(node))
    assert finding.outcome is Outcome.PASS, finding.message


def test_socket_path_too_long_for_a_unix_address_fails(node: Path) -> None:
    config = config_of(node)
    long_path = str(node / ("s" * UNIX_SOCKET_PATH_MAX)) + ".sock"
    # built past validation: the config itself may refuse such a path already
    server = config.server.model_copy(update={"socket_path": long_path})
    finding = check_socket(config.model_copy(update={"server": server}))
    assert finding.outcome is Outcome.FAIL
    assert f"the socket path must be at most {UNIX_SOCKET_PATH_MAX} bytes" in finding.message


def test_world_writable_socket_directory_fails(node: Path) -> None:
    (node / "sub").mkdir()
    (node / "sub").chmod(0o777)
    document_ = document(node)
    document_["server"]["socketPath"] = str(node / "sub/kms.sock")
    finding = check_socket(parse_config(document_))
    assert finding.outcome is Outcome.FAIL and "world-writable" in finding.message


def test_a_world_writable_directory_above_the_socket_fails_as_serve_would(node: Path) -> None:
    """doctor asks the provider's own socket-directory rules, ancestors included."""
    (node / "open").mkdir()
    (node / "open").chmod(0o777)  # no sticky bit: anyone could swap the directory below
    (node / "open/private").mkdir(mode=0o750)
    document_ = document(node)
    document_["server"]["socketPath"] = str(node / "open/private/kms.sock")
    finding = check_socket(parse_config(document_))
    assert finding.outcome is Outcome.FAIL
    assert "world-writable without the sticky bit" in finding.message


def test_symlinked_socket_directory_fails(node: Path) -> None:
    (node / "real").mkdir()
    (node / "link").symlink_to(node / "real")
    document_ = document(node)
    document_["server"]["socketPath"] = str(node / "link/kms.sock")
    finding = check_socket(parse_config(document_))
    assert finding.outcome is Outcome.FAIL and "symlink" in finding.message


def test_missing_socket_directory_warns_and_is_not_created(node: Path) -> None:
    document_ = document(node)
    document_["server"]["socketPath"] = str(node / "later/kms.sock")
    finding = check_socket(parse_config(document_))
    assert finding.outcome is Outcome.WARN and "does not exist" in finding.message
    assert not (node / "later").exists()


def test_something_else_at_the_socket_path_fails(node: Path) -> None:
    (node / "kms.sock").write_text("")
    finding = check_socket(config_of(node))
    assert finding.outcome is Outcome.FAIL and "other than a socket" in finding.message


@pytest.fixture
def listening(node: Path) -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(node / "kms.sock"))
    server.listen(1)
    yield server
    server.close()


def test_a_live_socket_passes_and_says_so(node: Path, listening: socket.socket) -> None:
    finding = check_socket(config_of(node))
    assert finding.outcome is Outcome.PASS and "serving" in finding.message


def test_a_stale_socket_passes_and_says_so(node: Path, listening: socket.socket) -> None:
    listening.close()
    finding = check_socket(config_of(node))
    assert finding.outcome is Outcome.PASS and "stale" in finding.message
    assert (node / "kms.sock").exists()  # doctor removes nothing


def test_unknown_socket_group_fails(node: Path) -> None:
    finding = check_socket(config_of(node, socketGroup="no-such-group-x"))
    assert finding.outcome is Outcome.FAIL and "does not exist" in finding.message


# --- config check shares them ------------------------------------------------------------------


def test_config_check_fails_on_a_missing_file(
    node: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node / "token").unlink()
    assert main(["config", "check", "--config", str(config_file)]) == 3
    err = capsys.readouterr().err
    assert "files: auth.token.file" in err and "does not exist" in err


def test_config_check_skip_files_checks_the_document_only(
    node: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node / "token").unlink()
    assert main(["config", "check", "--skip-files", "--config", str(config_file)]) == 0


def test_config_check_fails_on_a_socket_path_too_long(
    node: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document_ = document(node)
    document_["server"]["socketPath"] = "/run/" + "s" * UNIX_SOCKET_PATH_MAX + ".sock"
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(document_))
    assert main(["config", "check", "--config", str(path)]) == 3
    assert "socket" in capsys.readouterr().err


def test_config_check_json_lists_the_checks_and_prints_warnings(
    node: Path, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (node / "ca.pem").chmod(0o664)
    assert main(["config", "check", "--config", str(config_file), "--output", "json"]) == 0
    checks = json.loads(capsys.readouterr().out)["checks"]
    assert [(c["name"], c["status"]) for c in checks] == [("files", "warn"), ("socket", "pass")]
    assert main(["config", "check", "--config", str(config_file)]) == 0
    assert "warning: files:" in capsys.readouterr().out
