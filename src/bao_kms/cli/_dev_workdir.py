"""The temporary directory of one ``dev`` run, and the removal of those a killed run left behind.

A SIGKILLed ``dev`` runs no clean-up, so its directory (config, token file, socket, OpenBao
log) would stay in the temp dir forever. Each directory therefore records its owner: PID and
the kernel's start time of that process, which tells a dead owner from a new process that
happens to reuse the PID. The next ``dev`` removes every ``bao-kms-dev-*`` directory whose
owner is gone. It leaves alone directories of other users, symlinks, and directories without
an owner record (a run in its first instant, or not made by ``dev``).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

PREFIX = "bao-kms-dev-"
OWNER_FILE = "owner"

log = logging.getLogger("bao_kms.cli")


def create_workdir(parent: str | os.PathLike[str] | None = None) -> Path:
    """A fresh private (0700) directory recording this process as its owner."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
    (path / OWNER_FILE).write_text(owner_record(os.getpid()))
    return path


def owner_record(pid: int) -> str:
    start = _start_time(pid)
    return f"{pid} {start}\n" if start else f"{pid}\n"


def remove_abandoned(parent: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the ``dev`` directories under *parent* (the temp dir) whose owner has died."""
    removed = []
    for candidate in Path(parent or tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            info = candidate.lstat()
            record = (candidate / OWNER_FILE).read_text()
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if _owner_alive(record):
            continue
        shutil.rmtree(candidate, ignore_errors=True)  # a concurrent `dev` may race us to it
        removed.append(candidate)
    if removed:
        log.info("removed directories of dev runs that were killed", extra={"count": len(removed)})
    return removed


def _owner_alive(record: str) -> bool:
    fields = record.split()
    if not fields or not fields[0].isdigit():
        return True  # not a record we wrote: not ours to judge
    pid = int(fields[0])
    recorded_start = fields[1] if len(fields) > 1 else None
    start = _start_time(pid)
    if start is not None:  # /proc is there: the start time settles PID reuse
        return recorded_start is None or start == recorded_start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone's process: the PID is in use
    return not Path("/proc").is_dir()  # /proc without this PID: it is gone


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (clock ticks since boot), or None: no such live process.

    A zombie counts as dead: it will never touch its directory again.
    """
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ")"
    fields = stat_line.rsplit(")", 1)[-1].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]
