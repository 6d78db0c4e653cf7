"""load_config: reading the file, YAML problems, duplicate keys, environment overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from _support.config_documents import MARKER, minimal, with_value
from bao_kms.config import DEFAULT_SOCKET, load_config
from bao_kms.errors import ConfigError

# --- load_config --------------------------------------------------------------------------------


@pytest.fixture
def write(tmp_path: Path):
    def write(content: str | bytes | dict[str, Any], name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, dict):
            content = yaml.safe_dump(content, allow_unicode=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    return write


def test_load_valid_file(write) -> None:
    config = load_config(write(minimal()), environ={})
    assert config.identity.provider_name == "openbao-kms-a"
    assert config.server.socket_path == DEFAULT_SOCKET


def test_load_keeps_unicode_label(write) -> None:
    config = load_config(write(with_value("identity.clusterId", "clüster-ä")), environ={})
    assert config.identity.cluster_id == "clüster-ä"


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(tmp_path) in str(info.value)


def test_load_non_utf8(write) -> None:
    path = write(yaml.safe_dump(minimal()).encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path, environ={})


def test_load_invalid_yaml_gives_line_number(write) -> None:
    path = write("openbao:\n  addresses: [a\nauth: {\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "line 3" in str(info.value) or "line 4" in str(info.value)
    assert "YAML" in str(info.value)


def test_load_invalid_yaml_bad_indentation_line(write) -> None:
    path = write("server:\n  socketPath: /a\n bad: [\n")
    with pytest.raises(ConfigError, match=r"line 3\b"):
        load_config(path, environ={})


def test_load_invalid_yaml_does_not_echo_content(write) -> None:
    path = write(f"identity:\n  clusterId: {MARKER}: x: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert MARKER not in str(info.value)


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_load_top_level_not_mapping(write, content: str) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(content), environ={})


def test_load_refuses_python_tags(write) -> None:
    path = write("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError):
        load_config(path, environ={})


def test_load_refuses_duplicate_keys(write) -> None:
    text = yaml.safe_dump(minimal()) + "logging: {level: info}\nlogging: {level: debug}\n"
    with pytest.raises(ConfigError, match="logging"):
        load_config(write(text), environ={})


def test_env_overrides_applied(write) -> None:
    path = write(minimal())
    config = load_config(
        path, environ={"BAO_KMS_SOCKET": "/run/other/kms.sock", "BAO_KMS_LOG_LEVEL": "debug"}
    )
    assert config.server.socket_path == "/run/other/kms.sock"
    assert config.logging.level == "debug"


def test_env_overrides_win_over_file(write) -> None:
    document = with_value("server.socketPath", "/run/file/kms.sock")
    document = with_value("logging.level", "error", document)
    config = load_config(
        write(document),
        environ={"BAO_KMS_SOCKET": "/run/env/kms.sock", "BAO_KMS_LOG_LEVEL": "warning"},
    )
    assert config.server.socket_path == "/run/env/kms.sock"
    assert config.server.socket_mode == 0o660
    assert config.logging.level == "warning"


def test_env_socket_override_is_validated(write) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(minimal()), environ={"BAO_KMS_SOCKET": "relative/kms.sock"})
    assert "socketPath" in str(info.value)


def test_env_log_level_override_is_validated(write) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(minimal()), environ={"BAO_KMS_LOG_LEVEL": "chatty"})
    assert "logging.level" in str(info.value)


def test_environ_argument_replaces_process_environment(
    write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAO_KMS_SOCKET", "relative.sock")
    monkeypatch.setenv("BAO_KMS_LOG_LEVEL", "chatty")
    config = load_config(write(minimal()), environ={})
    assert config.server.socket_path == DEFAULT_SOCKET


def test_process_environment_used_by_default(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAO_KMS_SOCKET", "/run/from-env/kms.sock")
    monkeypatch.delenv("BAO_KMS_LOG_LEVEL", raising=False)
    assert load_config(write(minimal())).server.socket_path == "/run/from-env/kms.sock"


def test_load_reports_file_field_problem(write) -> None:
    path = write(with_value("identity.clusterId", f"{MARKER} x"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "identity.clusterId" in str(info.value)
    assert MARKER not in str(info.value)


def test_os_pathlike_and_str_both_accepted(write) -> None:
    path = write(minimal())
    assert load_config(os.fspath(path), environ={}) == load_config(path, environ={})


def test_unhashable_yaml_key_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match="mapping key"):
        load_config(path, environ={})
