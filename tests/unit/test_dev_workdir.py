"""``dev``'s temporary directories: each records its owner; only a dead owner's is removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bao_kms.cli._dev_workdir import (
    OWNER_FILE,
    PREFIX,
    create_workdir,
    owner_record,
    remove_abandoned,
)


@pytest.fixture
def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(30)
    return process.pid


def _leftover(parent: Path, name: str, record: str | None) -> Path:
    path = parent / (PREFIX + name)
    path.mkdir(mode=0o700)
    (path / "kms.sock").write_text("")
    if record is not None:
        (path / OWNER_FILE).write_text(record)
    return path


def test_create_records_this_process_privately(tmp_path: Path) -> None:
    path = create_workdir(tmp_path)
    assert path.parent == tmp_path and path.name.startswith(PREFIX)
    assert oct(path.stat().st_mode)[-3:] == "700"
    assert (path / OWNER_FILE).read_text() == owner_record(os.getpid())
    assert remove_abandoned(tmp_path) == []  # we are alive
    assert path.is_dir()


def test_a_dead_owners_directory_is_removed(tmp_path: Path, dead_pid: int) -> None:
    abandoned = _leftover(tmp_path, "dead", f"{dead_pid} 12345\n")
    assert remove_abandoned(tmp_path) == [abandoned]
    assert not abandoned.exists()


def test_a_reused_pid_is_not_mistaken_for_the_owner(tmp_path: Path) -> None:
    # our PID, but a start time that is not ours: the owner died and the PID came back
    pid, *_ = owner_record(os.getpid()).split()
    abandoned = _leftover(tmp_path, "reused", f"{pid} 1\n")
    assert remove_abandoned(tmp_path) == [abandoned]


@pytest.mark.parametrize("record", [None, "", "not a pid\n"], ids=["none", "empty", "garbage"])
def test_directories_without_a_readable_owner_are_kept(tmp_path: Path, record: str | None) -> None:
    # a dev run in its first instant has no record yet; what we did not write is not ours
    kept = _leftover(tmp_path, "unknown", record)
    assert remove_abandoned(tmp_path) == []
    assert kept.is_dir()


def test_symlinks_and_other_names_are_kept(tmp_path: Path, dead_pid: int) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / OWNER_FILE).write_text(f"{dead_pid}\n")
    (tmp_path / (PREFIX + "link")).symlink_to(target)
    other = tmp_path / "bao-kms-openbao-x"
    other.mkdir()
    (other / OWNER_FILE).write_text(f"{dead_pid}\n")
    assert remove_abandoned(tmp_path) == []
    assert target.is_dir() and other.is_dir() and (target / OWNER_FILE).exists()
