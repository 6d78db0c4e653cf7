"""Hostile files and paths: config files that are FIFOs, devices, huge, world-writable or
readable; secrets pasted as YAML keys; socket paths too long or under a directory another user
controls; a foreign socket bound where ours was; key metadata listing 20,000 versions."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import yaml

from _support.config_documents import minimal, refused, with_value
from _support.kms_server import serving
from bao_kms.api.unix_socket import prepare_socket_path
from bao_kms.config import load_config
from bao_kms.config.fields import SOCKET_STAGING_NAME_BYTES, UNIX_SOCKET_PATH_MAX
from bao_kms.errors import ConfigError, OpenBaoBadResponse, SocketError
from bao_kms.openbao.key_metadata import MAX_KEY_VERSIONS, parse_key_metadata

pytestmark = pytest.mark.timeout(30)
TOKEN = "s.PASTEDTOKEN0123456789abcdef"


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    path.chmod(0o600)
    return path


# --- the config file itself ---------------------------------------------------------------------


def test_a_fifo_at_the_config_path_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)  # nobody writes it: an open() without O_NONBLOCK would wait forever
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(fifo, environ={})


def test_a_device_at_the_config_path_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config("/dev/zero", environ={})


def test_a_huge_config_file_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    with path.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: 100 MB that cost no disk
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path, environ={})


def test_a_world_writable_config_is_refused(config_file: Path) -> None:
    config_file.chmod(0o666)
    with pytest.raises(ConfigError, match="world-writable"):
        load_config(config_file, environ={})


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_config_readable_by_others_is_loaded_with_a_warning(config_file: Path, mode: int) -> None:
    config_file.chmod(mode)
    notes: list[str] = []
    load_config(config_file, environ={}, warn=notes.append)
    assert len(notes) == 1 and f"{mode:04o}" in notes[0]


def test_a_private_config_loads_without_a_warning(config_file: Path) -> None:
    notes: list[str] = []
    load_config(config_file, environ={}, warn=notes.append)
    assert notes == []


@pytest.mark.parametrize(
    "text",
    ["a: " * 5000 + "x\n", "[" * 5000 + "]" * 5000 + "\n", "a: &a [*a]\nb: *a\n"],
    ids=["deep-mapping", "deep-list", "recursive-alias"],
)
def test_pathological_yaml_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    path.chmod(0o600)
    with pytest.raises(ConfigError):
        load_config(path, environ={})


# --- nothing from the file is echoed ------------------------------------------------------------


@pytest.mark.parametrize("section", ["", "server", "openbao", "auth.token", "identity"])
def test_a_token_pasted_as_a_key_is_never_printed(section: str) -> None:
    path = f"{section}.{TOKEN}" if section else TOKEN
    message = refused(with_value(path, "x"))
    assert TOKEN not in message and "PASTEDTOKEN" not in message
    assert "unknown key" in message


def test_a_token_pasted_as_a_key_is_located_by_line_not_shown(config_file: Path) -> None:
    config_file.write_text(yaml.safe_dump(minimal()) + f"{TOKEN}: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file, environ={})
    assert TOKEN not in str(info.value)
    assert "(top level): unknown key at line" in str(info.value)


def test_a_duplicated_pasted_key_is_not_printed(config_file: Path) -> None:
    config_file.write_text(yaml.safe_dump(minimal()) + f"{TOKEN}: x\n{TOKEN}: y\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file, environ={})
    assert TOKEN not in str(info.value) and "duplicate key" in str(info.value)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bao_kms", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "BAO_KMS_LOG_LEVEL": "info"},
    )


def test_config_check_prints_neither_a_pasted_token_nor_identity_labels(
    config_file: Path,
) -> None:
    config_file.write_text(yaml.safe_dump(minimal()) + f"{TOKEN}: x\n")
    bad = _cli("config", "check", "--skip-files", "--config", str(config_file))
    assert bad.returncode == 3
    assert TOKEN not in bad.stdout + bad.stderr
    config_file.write_text(yaml.safe_dump(minimal()))
    good = _cli("config", "check", "--skip-files", "--config", str(config_file), "--output", "json")
    assert good.returncode == 0, good.stderr
    for label in minimal()["identity"].values():
        assert label not in good.stdout
    identity = json.loads(good.stdout)["config"]["identity"]
    assert all(value.startswith("sha256:") for value in identity.values())


def test_config_check_reports_a_readable_config_as_a_warning(config_file: Path) -> None:
    config_file.chmod(0o644)
    result = _cli("config", "check", "--skip-files", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert "warning: config file" in result.stdout and "0644" in result.stdout


# --- the socket path ----------------------------------------------------------------------------


def test_a_socket_path_over_the_unix_limit_is_refused_at_config_time() -> None:
    room = UNIX_SOCKET_PATH_MAX - 1 - SOCKET_STAGING_NAME_BYTES
    directory = "/" + "d" * (room - 1)
    fits = f"{directory}/" + "k" * (UNIX_SOCKET_PATH_MAX - room - 1)
    assert len(fits) == UNIX_SOCKET_PATH_MAX
    load_ok = with_value("server.socketPath", fits)
    assert load_ok  # parses below
    from bao_kms.config import parse_config

    assert parse_config(load_ok).server.socket_path == fits
    message = refused(with_value("server.socketPath", fits + "k"))
    assert "server.socketPath" in message and f"{UNIX_SOCKET_PATH_MAX} bytes" in message
    # a multi-byte name is measured in bytes
    wide = f"{directory}/" + "\u00e9" * ((UNIX_SOCKET_PATH_MAX - room) // 2 + 1)
    assert len(wide) <= UNIX_SOCKET_PATH_MAX
    assert "server.socketPath" in refused(with_value("server.socketPath", wide))


def test_a_world_writable_ancestor_without_sticky_bit_is_refused(socket_dir: Path) -> None:
    shared = socket_dir / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could rename "private" below it and put their own there
    private = shared / "private"
    private.mkdir(mode=0o750)
    with pytest.raises(SocketError, match="world-writable without the sticky bit"):
        prepare_socket_path(private / "kms.sock")
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot rename what is ours
    assert prepare_socket_path(private / "kms.sock") == private / "kms.sock"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a directory to another uid")
def test_an_ancestor_owned_by_another_user_is_refused(socket_dir: Path) -> None:
    theirs = socket_dir / "theirs"
    theirs.mkdir(mode=0o755)
    ours = theirs / "ours"
    ours.mkdir(mode=0o750)
    os.chown(theirs, 4242, 4242)  # its owner can rename "ours" and plant a directory
    with pytest.raises(SocketError, match="owned by another user"):
        prepare_socket_path(ours / "kms.sock")


def test_an_ancestor_symlink_of_ours_is_followed_and_its_target_checked(socket_dir: Path) -> None:
    real = socket_dir / "real"
    (real / "run").mkdir(parents=True, mode=0o750)
    (socket_dir / "link").symlink_to(real)  # like /var/run -> /run
    assert prepare_socket_path(socket_dir / "link" / "run" / "kms.sock")
    real.chmod(0o777)
    with pytest.raises(SocketError, match="world-writable"):
        prepare_socket_path(socket_dir / "link" / "run" / "kms.sock")


def test_a_foreign_socket_bound_after_ours_was_unlinked_survives_our_stop(
    socket_dir: Path,
) -> None:
    """grpcio unlinks the path it bound at shutdown; we bind a private name and publish by
    link, so its unlink finds nothing, and ours removes only our own inode."""
    with serving(socket_dir) as served:
        path = served.socket_path
        assert [p.name for p in socket_dir.iterdir()] == [path.name]  # no staging name left
        path.unlink()
        foreign = socket.socket(socket.AF_UNIX)
        foreign.bind(str(path))
        foreign.listen()
        inode = path.lstat().st_ino
    try:
        assert stat.S_ISSOCK(path.lstat().st_mode) and path.lstat().st_ino == inode
    finally:
        foreign.close()


def test_our_socket_is_removed_at_stop(socket_dir: Path) -> None:
    with serving(socket_dir) as served:
        path = served.socket_path
        assert stat.S_ISSOCK(path.lstat().st_mode)
    assert not path.exists()
    assert list(socket_dir.iterdir()) == []


# --- key metadata -------------------------------------------------------------------------------


def _metadata(versions: int) -> bytes:
    keys = {str(v): 1_700_000_000 + v for v in range(1, versions + 1)}
    data = {
        "type": "aes256-gcm96",
        "derived": False,
        "exportable": False,
        "allow_plaintext_backup": False,
        "deletion_allowed": False,
        "latest_version": versions,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
        "min_available_version": 0,
        "keys": keys,
    }
    return orjson.dumps({"data": data})


def test_key_metadata_listing_more_versions_than_the_limit_is_refused() -> None:
    assert len(parse_key_metadata(_metadata(MAX_KEY_VERSIONS)).versions) == MAX_KEY_VERSIONS
    with pytest.raises(OpenBaoBadResponse, match=f"more than {MAX_KEY_VERSIONS} versions"):
        parse_key_metadata(_metadata(20_000))
