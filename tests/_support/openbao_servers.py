"""Real OpenBao servers shaped for tests: ``-dev-tls``, and restartable raft storage.

Both extend :class:`bao_kms.embedded.EmbeddedOpenBao` (the dev server ``bao-kms-provider dev``
runs) through its hooks, so they share its start/stop-by-PID, die-with-parent and HTTP helpers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bao_kms.embedded import START_TIMEOUT, EmbeddedOpenBao, EmbeddedOpenBaoError, free_port


class TlsDevOpenBao(EmbeddedOpenBao):
    """A dev server on HTTPS with the certificate ``-dev-tls`` makes; trust :attr:`ca_file`."""

    scheme = "https"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "vault-ca.pem"

    def _server_args(self, env: dict[str, str]) -> list[str]:
        tls_dir = self.ca_file.parent
        tls_dir.mkdir(exist_ok=True)
        return [*super()._server_args(env), "-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]

    def _pool_options(self) -> dict[str, Any]:
        return {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(self.ca_file)}

    def _can_connect(self) -> bool:
        return self.ca_file.exists()


class RaftOpenBao(EmbeddedOpenBao):
    """Single-node integrated storage on disk, initialised and unsealed with one key share.

    Unlike a dev server it keeps its keys across :meth:`stop` / :meth:`start` (same port, same
    storage) and can be sealed and unsealed: what outage tests need.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root_token = ""  # chosen by `sys/init`
        self.unseal_key = ""
        self.cluster_port = 0

    def _server_args(self, env: dict[str, str]) -> list[str]:
        config = self.workdir / "openbao.hcl"
        storage = self.workdir / "data"
        storage.mkdir(exist_ok=True)
        if not self.cluster_port:
            self.cluster_port = free_port()
        config.write_text(
            f'storage "raft" {{\n  path = "{storage}"\n  node_id = "node-1"\n}}\n'
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{self.cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://127.0.0.1:{self.port}"\n'
            f'cluster_addr = "http://127.0.0.1:{self.cluster_port}"\n'
        )
        return [self.binary, "server", f"-config={config}"]

    def _after_listening(self) -> None:
        status, body = self.request("GET", "sys/init")
        if status == 200 and not body.get("initialized"):
            result = self.api(
                "POST",
                "sys/init",
                {"secret_shares": 1, "secret_threshold": 1},
                timeout=START_TIMEOUT,
            )
            self.unseal_key = result["keys"][0]
            self.root_token = result["root_token"]
        self.unseal()

    def seal(self) -> None:
        self.api("POST", "sys/seal")

    def unseal(self) -> None:
        if not self.unseal_key:
            raise EmbeddedOpenBaoError("not initialised: no unseal key")
        self.api("POST", "sys/unseal", {"key": self.unseal_key}, timeout=START_TIMEOUT)
        self._wait_active()


@contextmanager
def raft_with_transit() -> Iterator[RaftOpenBao]:
    """A started single-node raft server with Transit key ``transit/kms``, closed after the
    block (for module-scoped fixtures: restartable and sealable, unlike a dev server)."""
    server = RaftOpenBao()
    try:
        server.start()
        server.setup_transit("transit", "kms")
        yield server
    finally:
        server.close()
