"""Real OpenBao servers for the auth tests: a TLS listener with our own PKI, and raft HA.

:class:`TlsOpenBao` serves HTTPS with a certificate from :class:`~_support.pki.TestPki`
(``-dev-tls`` cannot make expired or client-verifying set-ups); its certificate files can be
swapped and reloaded with SIGHUP while it runs. :class:`RaftCluster` is three raft nodes on
loopback, joined and unsealed, with a way to find and kill the leader. Both extend the
:mod:`_support.openbao_servers` shapes, so they share start/stop-by-PID and HTTP helpers.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from _support.openbao_servers import RaftOpenBao
from _support.pki import TestPki
from bao_kms.embedded import START_TIMEOUT, EmbeddedOpenBaoError, free_port


class TlsOpenBao(RaftOpenBao):
    """In-memory storage, one unseal key, HTTPS on 127.0.0.1 with *pki*'s server certificate.

    The listener asks for (but does not require) a client certificate, as OpenBao does by
    default, so TLS certificate auth works on it.
    """

    scheme = "https"

    def __init__(self, pki: TestPki, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pki = pki
        self.cert_file, self.key_file = pki.server(f"server-{id(self)}", dns=("bao.test",))

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    def _server_args(self, env: dict[str, str]) -> list[str]:
        config = self.workdir / "openbao.hcl"
        config.write_text(
            'storage "inmem" {}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  tls_cert_file = "{self.cert_file}"\n  tls_key_file = "{self.key_file}"\n}}\n'
            f'api_addr = "https://127.0.0.1:{self.port}"\n'
            "disable_mlock = true\n"
        )
        return [self.binary, "server", f"-config={config}"]

    def _pool_options(self) -> dict[str, Any]:
        # the helper's own pool trusts the CA but not the name: tests swap in certificates
        # for other names and out of their validity, and must still set the server up
        return {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(self.ca_file)}

    def serve_certificate(self, cert_file: Path, key_file: Path) -> None:
        """Serve another certificate from now on (OpenBao reloads its files on SIGHUP)."""
        shutil.copyfile(cert_file, self.cert_file)
        shutil.copyfile(key_file, self.key_file)
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)  # the reload is asynchronous; nothing to poll that proves it


class RaftNode(RaftOpenBao):
    """One node of :class:`RaftCluster`: plain HTTP on loopback, joined to the first node."""

    def __init__(self, node_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_id = node_id
        self.leader_address = ""  # set for the nodes that join

    def _server_args(self, env: dict[str, str]) -> list[str]:
        config = self.workdir / "openbao.hcl"
        storage = self.workdir / "data"
        storage.mkdir(exist_ok=True)
        if not self.cluster_port:
            self.cluster_port = free_port()
        # performance_multiplier 1: elections in about a second instead of five
        config.write_text(
            f'storage "raft" {{\n  path = "{storage}"\n  node_id = "{self.node_id}"\n'
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://127.0.0.1:{self.port}"\n'
            f'cluster_addr = "https://127.0.0.1:{self.cluster_port}"\n'
            "disable_mlock = true\n"
        )
        return [self.binary, "server", f"-config={config}"]

    def _after_listening(self) -> None:
        if not self.leader_address:
            super()._after_listening()  # the first node initialises
            return
        status, body = self.request("GET", "sys/init")
        if status == 200 and not body.get("initialized"):
            self.api("POST", "sys/storage/raft/join", {"leader_api_addr": self.leader_address})
        self.unseal()

    def _wait_active(self) -> None:
        if not self.leader_address:
            super()._wait_active()  # the first node becomes the leader
            return
        # a standby answers sys/health with 429; "serving" is all a joined node promises
        for _ in self._deadline_loop("joining the cluster"):
            try:
                status, _ = self.request("GET", "sys/health?standbyok=true")
            except EmbeddedOpenBaoError:
                continue
            if status == 200:
                return


class RaftCluster:
    """Three raft nodes on loopback; the first one initialises, the others join it."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RaftNode(f"node-{index + 1}") for index in range(size)]
        self._stack = ExitStack()

    @property
    def addresses(self) -> list[str]:
        return [node.address for node in self.nodes]

    @property
    def root_token(self) -> str:
        return self.nodes[0].root_token

    def __enter__(self) -> RaftCluster:
        first, *others = self.nodes
        self._stack.enter_context(first)
        # autopilot promotes a joined node to voter only after it was stable this long; a
        # leader killed before then leaves no quorum
        first.api(
            "POST",
            "sys/storage/raft/autopilot/configuration",
            {"server_stabilization_time": "1s", "cleanup_dead_servers": False},
        )
        for node in others:
            node.leader_address = first.address
            node.unseal_key, node.root_token = first.unseal_key, first.root_token
            self._stack.enter_context(node)
        self._wait_for_voters()
        return self

    def _wait_for_voters(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            servers = self.api("GET", "sys/storage/raft/configuration")["data"]["config"]["servers"]
            if len(servers) == len(self.nodes) and all(s["voter"] for s in servers):
                return
            time.sleep(0.2)
        raise EmbeddedOpenBaoError("raft nodes did not all become voters")

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def leader(self) -> RaftNode:
        """The active node, as the cluster reports it."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for node in self.running():
                try:
                    status, body = node.request("GET", "sys/leader")
                except EmbeddedOpenBaoError:
                    continue
                if status == 200 and body.get("is_self"):
                    return node
            time.sleep(0.1)
        raise EmbeddedOpenBaoError("no raft leader")

    def running(self) -> Iterator[RaftNode]:
        return (node for node in self.nodes if node.process is not None)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """An API call to the leader (setting up mounts, roles and policies)."""
        return self.leader().api(method, path, body)

    def kill(self, node: RaftNode) -> None:
        """SIGKILL: no step-down, no goodbye, as when the machine dies."""
        assert node.process is not None
        node.process.kill()
        node.process.wait(10)
        node.stop()
