"""``bao-kms-provider serve`` as a child process of a test, and its resident memory.

The child's stderr goes to a file (a pipe nobody reads could fill and block it); the child is
stopped by PID at the end whatever happened.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from _support import wait_for
from bao_kms.api.client import KmsClient


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class ServeProcess:
    """``bao-kms-provider serve`` as a child, its stderr in a file; stopped by PID."""

    def __init__(self, settings: dict[str, Any], workdir: Path) -> None:
        config = workdir / "config.yaml"
        config.write_text(yaml.safe_dump(settings))
        config.chmod(0o600)
        self.socket_path = Path(settings["server"]["socketPath"])
        self.log = workdir / "serve.log"
        with self.log.open("wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bao_kms", "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.client = KmsClient(self.socket_path, timeout=10)

    def wait_healthy(self) -> None:
        wait_for(self.socket_path.exists, timeout=30)
        wait_for(lambda: self.client.status().healthz == "ok", timeout=30)

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stderr(self) -> str:
        return self.log.read_text()
