"""The checks that need no OpenBao: the config, the files it names, the socket's directory.

``config check`` runs these too (:func:`file_findings`), so a missing token file or an unsafe
socket directory is caught where the config is written, not at the first apiserver start.
Nothing here creates, changes or removes a file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..api.unix_socket import check_socket_directory, resolve_group, socket_in_use
from ..config import Config, load_config
from ..config.fields import SocketPath
from ..errors import ConfigError, SocketError
from .checks import Check, Finding, Outcome

#: the config's own socket path rule (the Unix address limit), applied to what is loaded
_SOCKET_PATH = TypeAdapter(SocketPath)

#: files anyone may read (a CA, a certificate); every other file a config names is a secret
_PUBLIC_FIELDS = frozenset({"ca_file", "cert_file", "client_cert_file"})


@dataclass(frozen=True)
class NamedFile:
    """A file the config refers to: the key that names it, its path, whether it is secret."""

    key: str
    path: Path
    secret: bool


def _path_fields(section: BaseModel, prefix: str) -> Iterator[NamedFile]:
    for name, info in type(section).model_fields.items():
        value = getattr(section, name)
        if isinstance(value, Path):
            key = f"{prefix}.{info.alias or name}"
            yield NamedFile(key, value, name not in _PUBLIC_FIELDS)


def referenced_files(config: Config) -> list[NamedFile]:
    """Every file path in the config: ``openbao.*File`` and the chosen auth block's files."""
    files = list(_path_fields(config.openbao, "openbao"))
    method = config.auth.method
    block = getattr(config.auth, method, None)
    if isinstance(block, BaseModel):
        files += _path_fields(block, f"auth.{method}")
    return files


def check_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> tuple[Finding, Config | None]:
    try:
        config = load_config(path, environ)
    except ConfigError as error:
        return Finding(Check.CONFIG, Outcome.FAIL, str(error)), None
    return Finding(Check.CONFIG, Outcome.PASS, f"{path} is valid"), config


def _file_problem(path: Path, secret: bool) -> tuple[Outcome, str] | None:
    try:
        info = path.stat()
    except FileNotFoundError:
        return Outcome.FAIL, "does not exist"
    except OSError as error:
        return Outcome.FAIL, f"cannot be examined ({error.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return Outcome.FAIL, "is not a regular file"
    if not os.access(path, os.R_OK):
        return Outcome.FAIL, "is not readable by this user (the provider's user must read it)"
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o002:
        return Outcome.FAIL, f"is world-writable (mode {mode:04o})"
    if secret and mode & 0o077:
        return Outcome.FAIL, f"is a credential others can access (mode {mode:04o}; use 0600)"
    if mode & 0o020:
        return Outcome.WARN, f"is group-writable (mode {mode:04o})"
    return None


def check_files(config_path: str | os.PathLike[str], config: Config) -> Finding:
    """The config file itself and every file it names."""
    named = [NamedFile("the config file", Path(config_path), False), *referenced_files(config)]
    problems: list[tuple[Outcome, str]] = []
    for item in named:
        found = _file_problem(item.path, item.secret)
        if found:
            outcome, why = found
            problems.append((outcome, f"{item.key} ({item.path}) {why}"))
    if not problems:
        return Finding(Check.FILES, Outcome.PASS, f"{len(named)} files present with safe modes")
    worst = Outcome.FAIL if any(o is Outcome.FAIL for o, _ in problems) else Outcome.WARN
    return Finding(Check.FILES, worst, "; ".join(message for _, message in problems))


def _socket_state(path: Path) -> tuple[Outcome, str] | None:
    """What is at the socket path now (nothing is fine)."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return None
    except OSError as error:
        return Outcome.FAIL, f"socket path cannot be examined ({error.strerror})"
    if stat.S_ISLNK(info.st_mode):
        return Outcome.FAIL, "the socket path is a symlink; the provider refuses it"
    if not stat.S_ISSOCK(info.st_mode):
        return Outcome.FAIL, "something other than a socket is at the socket path"
    try:
        serving = socket_in_use(path)
    except SocketError as error:
        return Outcome.WARN, str(error)
    if serving:
        return Outcome.PASS, "a provider is serving on it now"
    return Outcome.PASS, "a stale socket is there (removed at start)"


def _directory_problem(directory: Path) -> tuple[Outcome, str] | None:
    """The provider's own rules for the socket directory (``api.unix_socket``), as findings:
    a missing directory is created at start, and an owner other than the one running doctor
    may be the provider's user, so those two only warn."""
    try:
        directory.lstat()
    except FileNotFoundError:
        return Outcome.WARN, (
            f"socket directory {directory} does not exist: the systemd unit creates it, "
            "a static pod needs it made first (tmpfiles snippet)"
        )
    except OSError as error:
        return Outcome.FAIL, f"socket directory {directory} cannot be examined ({error.strerror})"
    try:
        check_socket_directory(directory, check_owner=False)
    except SocketError as error:
        return Outcome.FAIL, str(error)
    except OSError as error:
        return Outcome.FAIL, f"a directory above the socket cannot be examined ({error.strerror})"
    owner = directory.lstat().st_uid
    if owner not in (0, os.geteuid()):
        # the provider refuses a directory owned by a user other than itself or root; doctor
        # may run as another user than the provider, so it can only suspect this
        return Outcome.WARN, (
            f"socket directory {directory} belongs to uid {owner}: it must be the "
            "provider's user (or root)"
        )
    return None


def check_socket(config: Config) -> Finding:
    path = Path(config.server.socket_path)
    try:
        # a config built in code (or a BAO_KMS_SOCKET override) may have skipped the check
        _SOCKET_PATH.validate_python(str(path))
    except ValidationError as error:
        why = error.errors()[0]["msg"].removeprefix("Value error, ")
        return Finding(Check.SOCKET, Outcome.FAIL, f"the socket path {why}")
    notes: list[tuple[Outcome, str]] = []
    if config.server.socket_group is not None:
        try:
            resolve_group(config.server.socket_group)
        except SocketError as error:
            notes.append((Outcome.FAIL, str(error)))
    found = _directory_problem(path.parent)
    if found:
        notes.append(found)
    if found is None or found[0] is not Outcome.FAIL:
        state = _socket_state(path)
        if state:
            notes.append(state)
    problems = [note for note in notes if note[0] is not Outcome.PASS]
    if not problems:
        extra = "; ".join(message for _, message in notes)
        return Finding(
            Check.SOCKET, Outcome.PASS, f"{path} is safe" + (f"; {extra}" if extra else "")
        )
    worst = Outcome.FAIL if any(o is Outcome.FAIL for o, _ in problems) else Outcome.WARN
    return Finding(Check.SOCKET, worst, "; ".join(message for _, message in notes))


def file_findings(config_path: str | os.PathLike[str], config: Config) -> list[Finding]:
    """The checks ``config check`` shares with ``doctor``: files and the socket."""
    return [check_files(config_path, config), check_socket(config)]
