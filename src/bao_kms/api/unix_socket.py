"""Safe set-up of the listening Unix socket: the only door between kube-apiserver and us.

Whoever can connect can ask for decryption, so the path must not be redirectable (no symlink,
no world-writable parent where someone else could plant one) and the mode must be right from
the first instant (bind under a tight umask, then chmod/chown to the configured mode/group).
A leftover socket from a crash is removed only when connecting to it is refused: a live
provider's socket is never stolen.
"""

from __future__ import annotations

import errno
import grp
import os
import socket
import stat
from pathlib import Path

from ..errors import SocketError

#: mode for a socket directory we create ourselves
SOCKET_DIR_MODE = 0o750


def resolve_group(group: str) -> int:
    """A group id from a name or a decimal id."""
    if group.isascii() and group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SocketError(f"socket group {group!r} does not exist") from None


def _create_directories(directory: Path) -> None:
    """Create *directory* and any missing parents, each 0750 whatever the umask: a level left
    world-writable would let another user swap the socket directory out from under us."""
    missing = []
    while not os.path.lexists(directory):
        missing.append(directory)
        directory = directory.parent
    for level in reversed(missing):
        try:
            os.mkdir(level, SOCKET_DIR_MODE)
            os.chmod(level, SOCKET_DIR_MODE)
        except FileExistsError:
            continue  # created concurrently; it is checked like any existing directory
        except OSError as error:
            raise SocketError(f"cannot create socket directory {level}: {error.strerror}") from None


def _check_parent(parent: Path) -> None:
    _create_directories(parent)
    info = parent.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise SocketError(f"socket directory {parent} is a symlink; refusing it")
    if not stat.S_ISDIR(info.st_mode):
        raise SocketError(f"socket directory {parent} is not a directory")
    if info.st_mode & stat.S_IWOTH:
        raise SocketError(
            f"socket directory {parent} is world-writable; use a directory only the provider "
            "(and the apiserver's group) can write"
        )
    if info.st_uid not in (0, os.geteuid()):
        raise SocketError(
            f"socket directory {parent} is owned by another user (uid {info.st_uid}); "
            "it must belong to the provider's user or root"
        )


def _is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError as error:
        if error.errno == errno.ECONNREFUSED:
            return False
        raise SocketError(
            f"cannot tell whether socket {path} is in use ({error.strerror}); refusing to remove it"
        ) from None
    finally:
        probe.close()
    return True


def prepare_socket_path(path: str | os.PathLike[str]) -> Path:
    """Make *path* free to bind, or raise SocketError saying why it is not safe to."""
    try:
        return _prepare(Path(path))
    except OSError as error:
        raise SocketError(f"cannot prepare socket path {path}: {error.strerror}") from None


def _prepare(path: Path) -> Path:
    if not path.is_absolute():
        raise SocketError(f"socket path {path} must be absolute")
    _check_parent(path.parent)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(info.st_mode):
        raise SocketError(f"socket path {path} is a symlink; refusing it")
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketError(f"socket path {path} exists and is not a socket; refusing to remove it")
    if _is_live(path):
        raise SocketError(f"socket {path} is in use by another process (another provider?)")
    path.unlink()  # stale: left behind by a crash, nobody is listening
    return path


def secure_socket(path: Path, mode: int, gid: int | None) -> int:
    """Apply the configured mode and group to a freshly bound socket; returns its inode."""
    try:
        if gid is not None:
            os.chown(path, -1, gid, follow_symlinks=False)
        os.chmod(path, mode)
        return path.lstat().st_ino
    except OSError as error:
        raise SocketError(f"cannot set mode/group of socket {path}: {error.strerror}") from None


def remove_socket(path: Path, inode: int) -> None:
    """Remove the socket at *path* only if it is still the one we bound (same inode)."""
    try:
        if path.lstat().st_ino == inode:
            path.unlink()
    except FileNotFoundError:
        pass
