"""The processes the soak and the release evidence run: a fresh restartable OpenBao and
``bao-kms-provider serve`` children, with their /proc readings.

OpenBao is the tests' single-node raft server (``tests/_support/openbao_servers.py``): unlike
a dev server it keeps its keys across a stop and start. The provider runs as its own process,
as on a node, with a least-privilege token. Every child is stopped by PID, and also dies with
the thread that started it (``PR_SET_PDEATHSIG``), so start them on the main thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import yaml

from bao_kms.api.client import KmsClient
from bao_kms.embedded import EmbeddedOpenBao, die_with_parent, free_port
from bao_kms.manifests import openbao_policy

REPO = Path(__file__).resolve().parent.parent
LABELS = {
    "providerName": "soak",
    "clusterId": "soak",
    "openbaoInstanceId": "soak",
    "transitMountId": "soak",
    "keyLineageId": "soak",
}
#: kube-apiserver's one timeout for every KMS call
CALL_TIMEOUT = 3.0
WORKERS = 8


def raft_openbao(workdir: Path) -> EmbeddedOpenBao:
    """The tests' restartable raft server (tests/_support/openbao_servers.py)."""
    if str(REPO / "tests") not in sys.path:
        sys.path.insert(0, str(REPO / "tests"))
    from _support.openbao_servers import RaftOpenBao

    return RaftOpenBao(workdir=workdir)


def proc_stats(pid: int) -> dict[str, float]:
    """RSS (MiB), thread and open-descriptor counts of a process, from /proc."""
    stats: dict[str, float] = {"fds": len(os.listdir(f"/proc/{pid}/fd"))}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name == "VmRSS":
                stats["rss_mib"] = round(int(rest.split()[0]) / 1024, 1)
            elif name == "Threads":
                stats["threads"] = int(rest)
    return stats


class ProviderProcess:
    """``bao-kms-provider serve`` as a child with its stderr in a file; stopped by PID."""

    def __init__(self, config: Path, socket_path: Path, log: Path) -> None:
        self.socket_path, self.log = socket_path, log
        with log.open("ab") as stderr:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "bao_kms", "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                # killed with the driver (a test's timeout SIGKILLs it): no orphaned provider
                preexec_fn=die_with_parent(),
            )
        self.client = KmsClient(socket_path, timeout=CALL_TIMEOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stats(self) -> dict[str, float]:
        return proc_stats(self.pid)

    def wait_ok(self, seconds: float = 60.0) -> str:
        """Wait for Status ``ok``; the key_id."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"the provider exited ({self.popen.returncode}):\n{tail}")
            with contextlib.suppress(grpc.RpcError):
                answer = self.client.status()
                if answer.healthz == "ok":
                    return str(answer.key_id)
            time.sleep(0.05)
        raise RuntimeError(f"the provider was not healthy within {seconds:g} s")

    def healthz(self) -> str:
        try:
            return str(self.client.status().healthz)
        except grpc.RpcError as error:
            return f"rpc:{error.code().name}"

    def stop(self, timeout: float = 15.0) -> None:
        self.client.close()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)


class Stack:
    """A fresh raft OpenBao with Transit key ``transit/kms`` and the provider's least-privilege
    token; starts providers against it. Enter it on the main thread (the OpenBao child dies
    with the thread that started it)."""

    def __init__(self, workdir: Path, *, probe_interval: float = 1.0) -> None:
        self.workdir = workdir
        self.probe_interval = probe_interval
        self.openbao = raft_openbao(workdir / "openbao")
        self.token_file = workdir / "token"
        self._serial = 0

    def __enter__(self) -> Stack:
        self.openbao.start()
        try:
            self.openbao.setup_transit("transit", "kms")
            self.token_file.write_text(self.openbao.create_token(openbao_policy("transit", "kms")))
            self.token_file.chmod(0o600)
        except BaseException:
            self.openbao.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.openbao.close()

    def provider_document(self, socket_path: Path, state: Path) -> dict[str, Any]:
        probe = self.probe_interval
        return {
            "server": {
                "socketPath": str(socket_path),
                "workers": WORKERS,
                "gracePeriod": "2s",
                "healthAddress": f"127.0.0.1:{free_port()}",
                "metricsAddress": f"127.0.0.1:{free_port()}",
            },
            "openbao": {
                "addresses": [self.openbao.address],
                "allowInsecureHttp": True,  # loopback test server
                "timeout": "2s",
            },
            "auth": {"method": "token", "token": {"file": str(self.token_file)}},
            "identity": LABELS,
            "status": {
                "probeInterval": f"{round(probe * 1000)}ms",
                "deepProbeInterval": "30s",
                "maxStaleness": f"{round(probe * 5000)}ms",
            },
            # a rotation (the conformance run makes one) takes effect at the next probe
            "rotation": {"stableObservations": 1, "activationDelay": "0s"},
            "state": {"path": str(state)},
            "logging": {"level": "warning"},
        }

    @contextlib.contextmanager
    def provider(self) -> Iterator[ProviderProcess]:
        """A provider process, healthy, stopped by PID on exit."""
        self._serial += 1
        name = f"provider-{self._serial}"
        socket_path = self.workdir / f"{name}.sock"
        config = self.workdir / f"{name}.yaml"
        document = self.provider_document(socket_path, self.workdir / f"{name}-state.json")
        config.write_text(yaml.safe_dump(document))
        config.chmod(0o600)
        process = ProviderProcess(config, socket_path, self.workdir / f"{name}.log")
        try:
            process.wait_ok()
            yield process
        finally:
            process.stop()
