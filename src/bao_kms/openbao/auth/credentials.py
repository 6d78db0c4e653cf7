"""Reading a credential file safely: the checks every auth method shares.

Credentials come from files only (static pods mount host paths, not Secrets). A file is opened
once with ``O_NONBLOCK`` (a FIFO must never hang the provider) and judged by ``fstat`` of that
open file, so what is checked is what is read. Symlinks are followed: Kubernetes projected
volumes and most agents swap a ``..data`` link to rotate files atomically.

Permissions, decided once for every method: a file that users other than the owner and its
group can read or write, or that its group can write, is refused (the secret is exposed, or
anyone could swap it); a group-readable one is accepted with a warning, because ``root:kms
0640`` is a legitimate way to share it with a service group. Certificates are public and are
not held to this.

Problems raise :class:`CredentialProblem`, which becomes a :class:`~bao_kms.errors.ConfigError`
at start (exit 3, the path named) or an :class:`~bao_kms.errors.AuthCredentialInvalid` at run
time (a Status reason; the path goes to the log, not to kube-apiserver). No message quotes the
content.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ...errors import AuthCredentialInvalid, ConfigError
from ...logs import LogThrottle

logger = logging.getLogger(__name__)

#: a token, ID or JWT is a few KiB at most; anything far larger is not a credential file
MAX_CREDENTIAL_BYTES = 64 * 1024

# Visible ASCII only: values go into HTTP headers and JSON, where whitespace or control bytes
# would corrupt the request (or be refused by http.client with a message that quotes them).
_SINGLE_VALUE_RE = re.compile(rb"[\x21-\x7e]+")
#: the same rule for a value already decoded (a token a login answered with, before it is sent)
VISIBLE_ASCII = re.compile(_SINGLE_VALUE_RE.pattern.decode("ascii"))

#: (inode, size, mtime_ns) of the file that was read: a change means it was replaced
Signature = tuple[int, int, int]

_warnings = LogThrottle(interval=3600.0)  # a group-readable file is worth one line an hour
_errors = LogThrottle(interval=10.0)  # a missing file fails every request: one line per 10 s


@dataclass(frozen=True, slots=True)
class CredentialFile:
    """One configured credential file and how errors name it."""

    #: the config key, for start-up errors: ``auth.approle.secretIdFile``
    key: str
    #: what it holds, for run-time messages kube-apiserver may show: ``AppRole secret ID file``
    label: str
    path: str
    #: secrets must not be readable by other users; certificates are public
    secret: bool = True


class CredentialProblem(Exception):
    """A credential file cannot be used; the message names the problem, never the content."""

    def __init__(self, file: CredentialFile, problem: str) -> None:
        super().__init__(f"{file.label} {problem}")
        self.file = file
        self.problem = problem

    def config_error(self) -> ConfigError:
        """The start-up form: the config key and path, for the operator's terminal."""
        return ConfigError(f"{self.file.key} {self.file.path}: {self.problem}")

    def runtime_error(self) -> AuthCredentialInvalid:
        """The run-time form, logged once with the path (throttled) and returned to raise."""
        if _errors.admit((self.file.path, self.problem)) is not None:
            logger.warning(
                "credential file unusable",
                extra={"file": self.file.key, "path": self.file.path, "problem": self.problem},
            )
        return AuthCredentialInvalid(str(self))


@contextlib.contextmanager
def _opened(file: CredentialFile) -> Iterator[tuple[int, os.stat_result]]:
    """The file open (never blocking on a FIFO, never becoming a controlling terminal) and
    its kind and mode checked; any OS error on the way is a :class:`CredentialProblem`."""
    try:
        fd = os.open(file.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as error:
        raise CredentialProblem(file, _open_problem(error)) from None
    try:
        info = os.fstat(fd)
        _check_kind_and_mode(file, info)
        yield fd, info
    except OSError as error:
        raise CredentialProblem(file, f"cannot be read ({error.strerror})") from None
    finally:
        os.close(fd)


def read_credential(file: CredentialFile) -> tuple[bytes, Signature]:
    """The file's content without surrounding whitespace, and the signature of what was read."""
    with _opened(file) as (fd, info):
        content = os.read(fd, MAX_CREDENTIAL_BYTES + 1)
    if len(content) > MAX_CREDENTIAL_BYTES:
        raise CredentialProblem(file, "is larger than 64 KiB: not a credential file")
    content = content.strip(b" \t\r\n")
    if not content:
        raise CredentialProblem(file, "is empty")
    return content, (info.st_ino, info.st_size, info.st_mtime_ns)


def single_value(file: CredentialFile, content: bytes) -> str:
    """*content* as one printable word (a token, role ID or secret ID)."""
    if not _SINGLE_VALUE_RE.fullmatch(content):
        raise CredentialProblem(file, "does not hold a single printable value")
    return content.decode("ascii")


def check_file(file: CredentialFile) -> Signature:
    """Only the kind, mode and signature (files read by OpenSSL, such as a client key)."""
    with _opened(file) as (_, info):
        pass
    if info.st_size == 0:
        raise CredentialProblem(file, "is empty")
    return info.st_ino, info.st_size, info.st_mtime_ns


def _open_problem(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "does not exist"
    if error.errno == errno.ELOOP:
        return "is a symlink loop"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "cannot be read: permission denied to this process"
    if error.errno == errno.ENXIO:
        return "is not a regular file (a socket or device)"
    return f"cannot be opened ({error.strerror})"


def _check_kind_and_mode(file: CredentialFile, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise CredentialProblem(file, "is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise CredentialProblem(file, "is not a regular file (a FIFO, socket or device)")
    if not file.secret:
        return
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        raise CredentialProblem(
            file, f"is readable or writable by other users (mode {mode:04o}): make it 0600"
        )
    if mode & stat.S_IWGRP:
        raise CredentialProblem(file, f"is writable by its group (mode {mode:04o}): make it 0600")
    if mode & stat.S_IRGRP and _warnings.admit((file.path, "group-readable")) is not None:
        logger.warning(
            "credential file is readable by its group; make it 0600 unless that group must read it",
            extra={"file": file.key, "path": file.path, "mode": f"{mode:04o}"},
        )
