"""Safe set-up of the listening Unix socket: the only door between kube-apiserver and us.

Whoever can connect can ask for decryption, so the path must not be redirectable: no symlink
at the path or its directory, and no directory on the way to it that another user could
rename or replace (every component is checked, not only the parent). The socket is bound
under a private name beside its final one, given its mode and group there, and only then
published under the real name with a hard link that never replaces anything
(:func:`publish_socket`): the socket never exists at its path with the wrong mode, and grpcio,
which unlinks the name it bound when it shuts down, can never remove a socket that another
process bound at our path after ours was gone. A leftover socket from a crash is removed only
when connecting to it is refused: a live provider's socket is never stolen.
"""

from __future__ import annotations

import errno
import grp
import os
import secrets
import socket
import stat
from pathlib import Path

from ..config.fields import SOCKET_STAGING_NAME_BYTES, UNIX_SOCKET_PATH_MAX
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


def _check_owner(path: Path, info: os.stat_result, what: str) -> None:
    if info.st_uid not in (0, os.geteuid()):
        raise SocketError(
            f"{what} {path} is owned by another user (uid {info.st_uid}); "
            "it must belong to the provider's user or root"
        )


def _check_parent(parent: Path) -> None:
    _create_directories(parent)
    check_socket_directory(parent)


def check_socket_directory(parent: Path, *, check_owner: bool = True) -> None:
    """The rules an existing socket directory must meet, raised as :class:`SocketError`: not a
    symlink, a directory, not world-writable, owned by the provider's user or root (unless
    *check_owner* is false: ``doctor`` may run as another user), and only safe directories
    above it. ``doctor`` and ``config check`` ask the same question here."""
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
    if check_owner:
        _check_owner(parent, info, "socket directory")
    _check_ancestors(parent)


def _check_ancestors(parent: Path) -> None:
    """Every directory above *parent*, as written and as resolved, must be one that only root
    or the provider's user can change: whoever can rename an ancestor can swap the whole tree
    below it. A world-writable ancestor is allowed only with the sticky bit (``/tmp``), which
    stops others from renaming what they do not own. Symlinks on the way (``/var/run``) are
    fine when root or we own them; their targets are checked as resolved."""
    resolved = Path(os.path.realpath(parent)).parent
    for ancestor in (*parent.parents, *resolved.parents, resolved):
        info = ancestor.lstat()
        if stat.S_ISLNK(info.st_mode):
            _check_owner(ancestor, info, "symlink above the socket directory")
            continue
        _check_owner(ancestor, info, "directory above the socket")
        if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            raise SocketError(
                f"directory {ancestor} above the socket is world-writable without the sticky "
                "bit; another user could replace the socket directory"
            )


def socket_in_use(path: Path) -> bool:
    """Whether a process accepts connections on the socket at *path* (refused: a stale one);
    SocketError when that cannot be told."""
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
    if len(os.fsencode(path)) > UNIX_SOCKET_PATH_MAX:
        raise SocketError(
            f"socket path {path} is longer than {UNIX_SOCKET_PATH_MAX} bytes (the Unix limit)"
        )
    _check_parent(path.parent)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return path
    if stat.S_ISLNK(info.st_mode):
        raise SocketError(f"socket path {path} is a symlink; refusing it")
    if not stat.S_ISSOCK(info.st_mode):
        raise SocketError(f"socket path {path} exists and is not a socket; refusing to remove it")
    if socket_in_use(path):
        raise SocketError(f"socket {path} is in use by another process (another provider?)")
    path.unlink()  # stale: left behind by a crash, nobody is listening
    return path


def staging_path(path: Path) -> Path:
    """A fresh private name beside *path* for grpcio to bind (see :func:`publish_socket`)."""
    return path.with_name("." + secrets.token_hex((SOCKET_STAGING_NAME_BYTES - 1) // 2))


def publish_socket(staging: Path, path: Path) -> None:
    """Give the socket bound at *staging* its real name *path*, then drop the staging name.

    A hard link fails if *path* exists (a provider that started in between wins); a file
    system without hard links falls back to an atomic rename. Either way the name grpcio bound
    is gone, so its unlink at shutdown finds nothing to remove.
    """
    try:
        os.link(staging, path, follow_symlinks=False)
    except FileExistsError:
        raise SocketError(f"socket {path} appeared while binding (another provider?)") from None
    except OSError:
        try:
            os.rename(staging, path)
        except OSError as error:
            raise SocketError(f"cannot publish socket {path}: {error.strerror}") from None
    finally:
        staging.unlink(missing_ok=True)


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
