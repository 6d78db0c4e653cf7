"""``bao-kms-provider dev`` as a child process of a test: start, read what it printed, stop by PID.

The tests judge "nothing left behind" by PID and by path, so the helper parses the PID of the
OpenBao server, the socket and the config path (hence the work directory) from dev's output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: a first start builds a dev server, a Transit key and a token: seconds, on 2 busy cores
START_TIMEOUT = 60.0


def process_gone(pid: int) -> bool:
    """True once *pid* is no running process; a zombie (dead, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not process_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class DevProcess:
    """One ``dev`` run; use as a context manager so it is always stopped (SIGKILL at worst)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bao_kms", "dev", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines: list[str] = []
        self.openbao_pid = 0
        self.socket_path = Path()
        self.config_file = Path()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def workdir(self) -> Path:
        return self.config_file.parent

    def wait_serving(self, timeout: float = START_TIMEOUT) -> DevProcess:
        """Read stdout up to the "Serving." line; fail with everything it printed otherwise."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if line.startswith("OpenBao dev server"):
                self.openbao_pid = int(line.rsplit("pid ", 1)[1].rstrip(")\n"))
            elif line.startswith("KMS socket"):
                self.socket_path = Path(line.split(":", 1)[1].strip())
            elif line.startswith("config "):
                self.config_file = Path(line.split(":", 1)[1].strip())
            elif line.startswith("Serving."):
                return self
        self.kill()
        assert self.process.stderr is not None
        raise AssertionError(f"dev did not start:\n{self.output}\n{self.process.stderr.read()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stderr(self) -> str:
        """Everything on stderr; only once the process has exited."""
        assert self.process.stderr is not None and self.process.poll() is not None
        return self.process.stderr.read()

    def __enter__(self) -> DevProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
        if self.openbao_pid and not process_gone(self.openbao_pid):
            os.kill(self.openbao_pid, signal.SIGKILL)  # never leave a server behind a test
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
