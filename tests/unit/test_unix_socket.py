"""Safe socket set-up: refuse redirectable paths, never steal a live socket, right mode/group."""

from __future__ import annotations

import grp
import os
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bao_kms.api.unix_socket import prepare_socket_path, remove_socket, resolve_group, secure_socket
from bao_kms.errors import SocketError


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def bind_socket(path: Path, *, listen: bool) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if listen:
        sock.listen(1)
    return sock


@pytest.fixture
def stale_socket(socket_dir: Path) -> Path:
    """A socket file nobody listens on any more: bound, then closed without unlinking."""
    path = socket_dir / "stale.sock"
    bind_socket(path, listen=True).close()
    assert stat.S_ISSOCK(path.lstat().st_mode)
    return path


# --- prepare_socket_path ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["kms.sock", "run/kms.sock", "./kms.sock"])
def test_relative_path_refused(
    path: str, socket_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(socket_dir)
    with pytest.raises(SocketError, match="absolute"):
        prepare_socket_path(path)
    assert list(socket_dir.iterdir()) == []


def test_free_path_in_private_directory_is_returned(socket_dir: Path) -> None:
    path = socket_dir / "kms.sock"
    assert prepare_socket_path(str(path)) == path
    assert not path.exists()


def test_missing_parent_created_with_mode_0750(socket_dir: Path) -> None:
    path = socket_dir / "run" / "kms.sock"
    with umask(0o022):
        assert prepare_socket_path(path) == path
    assert (socket_dir / "run").is_dir()
    assert mode_of(socket_dir / "run") == 0o750


def test_missing_parent_is_0750_whatever_the_umask(socket_dir: Path) -> None:
    with umask(0o077):
        prepare_socket_path(socket_dir / "run" / "kms.sock")
    assert mode_of(socket_dir / "run") == 0o750


def test_created_intermediate_directories_are_not_world_writable(socket_dir: Path) -> None:
    with umask(0):
        prepare_socket_path(socket_dir / "a" / "b" / "kms.sock")
    for directory in (socket_dir / "a", socket_dir / "a" / "b"):
        assert not mode_of(directory) & stat.S_IWOTH, directory


def test_parent_symlink_refused(socket_dir: Path) -> None:
    real = socket_dir / "real"
    real.mkdir(mode=0o750)
    link = socket_dir / "link"
    link.symlink_to(real)
    with pytest.raises(SocketError, match="symlink"):
        prepare_socket_path(link / "kms.sock")


def test_dangling_parent_symlink_refused_and_target_not_created(socket_dir: Path) -> None:
    link = socket_dir / "link"
    link.symlink_to(socket_dir / "elsewhere")
    with pytest.raises(SocketError, match="symlink"):
        prepare_socket_path(link / "kms.sock")
    assert not (socket_dir / "elsewhere").exists()


def test_parent_that_is_a_file_refused(socket_dir: Path) -> None:
    (socket_dir / "file").write_text("x")
    with pytest.raises(SocketError, match="not a directory"):
        prepare_socket_path(socket_dir / "file" / "kms.sock")


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o757, 0o1733])
def test_world_writable_parent_refused(socket_dir: Path, mode: int) -> None:
    parent = socket_dir / "shared"
    parent.mkdir()
    parent.chmod(mode)
    with pytest.raises(SocketError, match="world-writable"):
        prepare_socket_path(parent / "kms.sock")


def test_world_writable_parent_refused_even_with_stale_socket_inside(socket_dir: Path) -> None:
    parent = socket_dir / "shared"
    parent.mkdir()
    bind_socket(parent / "kms.sock", listen=False).close()
    parent.chmod(0o1777)
    with pytest.raises(SocketError, match="world-writable"):
        prepare_socket_path(parent / "kms.sock")
    assert stat.S_ISSOCK((parent / "kms.sock").lstat().st_mode)


def test_group_writable_parent_accepted(socket_dir: Path) -> None:
    parent = socket_dir / "group"
    parent.mkdir()
    parent.chmod(0o770)
    assert prepare_socket_path(parent / "kms.sock") == parent / "kms.sock"


def test_symlink_path_refused_and_target_untouched(socket_dir: Path, stale_socket: Path) -> None:
    # The target is a stale socket that would be removed if the link were followed.
    link = socket_dir / "kms.sock"
    link.symlink_to(stale_socket)
    with pytest.raises(SocketError, match="symlink"):
        prepare_socket_path(link)
    assert link.is_symlink()
    assert stat.S_ISSOCK(stale_socket.lstat().st_mode)


def test_symlink_to_regular_file_refused_and_target_untouched(socket_dir: Path) -> None:
    target = socket_dir / "precious"
    target.write_text("keep me")
    link = socket_dir / "kms.sock"
    link.symlink_to(target)
    with pytest.raises(SocketError, match="symlink"):
        prepare_socket_path(link)
    assert link.is_symlink()
    assert target.read_text() == "keep me"


def test_dangling_symlink_path_refused(socket_dir: Path) -> None:
    link = socket_dir / "kms.sock"
    link.symlink_to(socket_dir / "nowhere.sock")
    with pytest.raises(SocketError, match="symlink"):
        prepare_socket_path(link)
    assert link.is_symlink()
    assert not (socket_dir / "nowhere.sock").exists()


def test_regular_file_in_the_way_refused_and_kept(socket_dir: Path) -> None:
    path = socket_dir / "kms.sock"
    path.write_text("not a socket")
    with pytest.raises(SocketError, match="not a socket"):
        prepare_socket_path(path)
    assert path.read_text() == "not a socket"


def test_directory_in_the_way_refused_and_kept(socket_dir: Path) -> None:
    path = socket_dir / "kms.sock"
    path.mkdir()
    with pytest.raises(SocketError):
        prepare_socket_path(path)
    assert path.is_dir()


def test_stale_socket_removed(stale_socket: Path) -> None:
    assert prepare_socket_path(stale_socket) == stale_socket
    assert not os.path.lexists(stale_socket)
    # ... and the path is really free to bind now.
    bind_socket(stale_socket, listen=False).close()


def test_live_socket_refused_and_kept(socket_dir: Path) -> None:
    path = socket_dir / "kms.sock"
    listener = bind_socket(path, listen=True)
    try:
        inode = path.lstat().st_ino
        with pytest.raises(SocketError, match="in use"):
            prepare_socket_path(path)
        assert path.lstat().st_ino == inode
        # The listener still gets connections through the path.
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            client.connect(str(path))
        finally:
            client.close()
    finally:
        listener.close()


# --- secure_socket ------------------------------------------------------------------------------


@pytest.fixture
def bound(socket_dir: Path) -> Iterator[Path]:
    path = socket_dir / "kms.sock"
    with umask(0o177):
        sock = bind_socket(path, listen=True)
    assert mode_of(path) == 0o600
    yield path
    sock.close()


def _other_gid(current: int) -> int | None:
    """A gid we may chown to that differs from *current*, so a no-op chown cannot pass."""
    if os.geteuid() == 0:
        return 4242 if current != 4242 else 4243
    others = [gid for gid in os.getgroups() if gid != current]
    return others[0] if others else None


@pytest.mark.parametrize("mode", [0o660, 0o640, 0o600])
def test_secure_socket_applies_mode_and_returns_inode(bound: Path, mode: int) -> None:
    inode = secure_socket(bound, mode, None)
    assert mode_of(bound) == mode
    assert inode == bound.lstat().st_ino


def test_secure_socket_with_current_gid_as_number(bound: Path) -> None:
    secure_socket(bound, 0o660, resolve_group(str(os.getgid())))
    assert bound.lstat().st_gid == os.getgid()
    assert mode_of(bound) == 0o660


def test_secure_socket_with_current_group_name(bound: Path) -> None:
    name = grp.getgrgid(os.getgid()).gr_name
    secure_socket(bound, 0o640, resolve_group(name))
    assert bound.lstat().st_gid == os.getgid()
    assert mode_of(bound) == 0o640


def test_secure_socket_changes_group_by_numeric_id(bound: Path) -> None:
    gid = _other_gid(bound.lstat().st_gid)
    if gid is None:
        pytest.skip("no second group this user may chown to")
    secure_socket(bound, 0o660, resolve_group(str(gid)))
    assert bound.lstat().st_gid == gid
    assert mode_of(bound) == 0o660


def test_secure_socket_without_group_keeps_gid(bound: Path) -> None:
    before = bound.lstat().st_gid
    secure_socket(bound, 0o660, None)
    assert bound.lstat().st_gid == before


def test_unknown_group_name_is_a_socket_error(bound: Path) -> None:
    with pytest.raises(SocketError, match="does not exist"):
        resolve_group("no-such-group-bao-kms-zz")


def test_secure_socket_on_missing_path_is_a_socket_error(socket_dir: Path) -> None:
    with pytest.raises(SocketError):
        secure_socket(socket_dir / "absent.sock", 0o660, None)


# --- remove_socket ------------------------------------------------------------------------------


def test_remove_socket_removes_matching_inode(bound: Path) -> None:
    remove_socket(bound, bound.lstat().st_ino)
    assert not os.path.lexists(bound)


def test_remove_socket_keeps_a_different_file(socket_dir: Path) -> None:
    path = socket_dir / "kms.sock"
    bind_socket(path, listen=False).close()
    ours = path.lstat().st_ino
    path.unlink()
    # Someone else's socket now sits at the path, on a new inode.
    keeper = socket_dir / "keep"
    keeper.write_text("x")  # holds the old inode number busy so the new one differs
    other = bind_socket(path, listen=True)
    try:
        assert path.lstat().st_ino != ours
        remove_socket(path, ours)
        assert stat.S_ISSOCK(path.lstat().st_mode)
    finally:
        other.close()


def test_remove_socket_keeps_a_regular_file_with_other_inode(socket_dir: Path) -> None:
    path = socket_dir / "kms.sock"
    path.write_text("someone else's")
    remove_socket(path, path.lstat().st_ino + 1)
    assert path.read_text() == "someone else's"


def test_remove_socket_tolerates_missing_path(socket_dir: Path) -> None:
    remove_socket(socket_dir / "gone.sock", 12345)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a directory to another uid")
def test_parent_owned_by_another_user_is_refused(socket_dir: Path) -> None:
    parent = socket_dir / "theirs"
    parent.mkdir(mode=0o755)
    os.chown(parent, 4242, 4242)
    with pytest.raises(SocketError, match="owned by another user"):
        prepare_socket_path(parent / "kms.sock")


def test_a_path_over_the_unix_limit_is_refused_before_anything_is_created(
    socket_dir: Path,
) -> None:
    with pytest.raises(SocketError, match="longer than 107 bytes"):
        prepare_socket_path(socket_dir / ("x" * 300) / "kms.sock")
    assert list(socket_dir.iterdir()) == []


def test_os_errors_are_socket_errors(socket_dir: Path) -> None:
    (socket_dir / "file").write_text("")
    with pytest.raises(SocketError, match="cannot"):
        prepare_socket_path(socket_dir / "file" / "sub" / "kms.sock")
