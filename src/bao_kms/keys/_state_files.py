"""Small private files done carefully: read, atomic write, and ``flock`` locks.

The version registry (:mod:`.registry`) is the one user. Every file is the provider user's
own, mode 0600, never a symbolic link, and in a directory that no other user can write: a
file that someone else could have written is refused rather than trusted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

#: a registry is a few hundred bytes per version; anything this large is not one
MAX_FILE_BYTES = 1 << 20
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700


class UnsafeFile(Exception):
    """A file or directory whose owner, type or mode means someone else could have written it."""


def _check_owner_and_mode(info: os.stat_result, what: str) -> None:
    if info.st_uid != os.geteuid():
        raise UnsafeFile(
            f"{what} belongs to uid {info.st_uid}, not to this process's uid {os.geteuid()}: "
            "run as the provider's user"
        )
    if info.st_mode & 0o022:
        raise UnsafeFile(
            f"{what} is writable by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"it must be {FILE_MODE:04o} (directory {DIRECTORY_MODE:04o})"
        )


def prepare_directory(directory: Path) -> None:
    """Create *directory* (0700) if it is missing; refuse one that others can write."""
    with contextlib.suppress(FileExistsError):
        directory.mkdir(mode=DIRECTORY_MODE)
    info = directory.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFile(f"state directory {directory} is not a directory")
    _check_owner_and_mode(info, f"state directory {directory}")


def read_private(path: Path) -> bytes | None:
    """The bytes of *path*, or None when it does not exist; UnsafeFile when it is not a
    private regular file of this user."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise UnsafeFile(f"{path} is a symbolic link") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        _check_owner_and_mode(info, str(path))
        if info.st_size > MAX_FILE_BYTES:
            raise UnsafeFile(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        chunks = []
        while chunk := os.read(fd, MAX_FILE_BYTES + 1):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def signature(path: Path) -> tuple[int, int, int, int] | None:
    """What changes when *path* is replaced or rewritten (None: it does not exist)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    return (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace *path* with *data* so that a crash leaves the old file or the new one, never a
    mix: write a temporary file beside it, fsync it, rename it over *path*, fsync the
    directory (without that, the rename itself may not survive a power cut)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # left by a crashed writer that had our pid
    fd = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        FILE_MODE,
    )
    try:
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may only have narrowed it; say it outright
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_lock_file(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        _check_owner_and_mode(info, str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


class OwnerLock:
    """An exclusive ``flock`` held for a process's lifetime, with its pid written inside.

    ``flock`` belongs to the open file, not the process: a second open in the same process
    is refused too, so two providers in one test process cannot share a file either. The
    kernel drops the lock when the process dies, so a crash never leaves it stuck.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock; returns None, or the holder's pid (as written) when it is taken."""
        fd = _open_lock_file(self.path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            return int(holder) if holder.isdigit() else 0
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


@contextlib.contextmanager
def transaction_lock(path: Path, *, exclusive: bool) -> Iterator[None]:
    """A short ``flock`` around one read (shared) or one read-modify-write (exclusive), so
    a reader never sees the state file of one write beside the checkpoint of another.

    A reader never creates the lock file: no writer has run yet if it is missing, and a file
    created by a reader of another user (root running a read-only command) would lock the
    provider out."""
    if not exclusive and not path.exists():
        yield
        return
    fd = _open_lock_file(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)
