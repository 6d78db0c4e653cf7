"""Shared fixtures: real OpenBao servers, a provider wired to one, and a request-counting pool.

Every server a test starts is a real ``bao`` process on 127.0.0.1 (``bao_kms.embedded``),
stopped by PID at teardown. Sockets live in short private temp dirs (AF_UNIX paths are limited
to 107 bytes, which pytest's tmp_path can exceed).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _support import CountingPool, provider_document, wait_for
from bao_kms.api.client import KmsClient
from bao_kms.config import Config, parse_config
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.manifests import openbao_policy
from bao_kms.openbao import make_pool
from bao_kms.provider import Provider

# Every provider a test starts as a process (serve, dev) listens for /live, /ready, /metrics
# on a free port, never on the default 127.0.0.1:8787 another test run may hold.
os.environ.setdefault("BAO_KMS_HEALTH_ADDRESS", "127.0.0.1:0")
os.environ.setdefault("BAO_KMS_METRICS_ADDRESS", "127.0.0.1:0")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what an in-process CLI run did to logging (``configure_logging``).

    ``main([...])`` points the ``bao_kms`` logger at the test's captured stderr, which pytest
    closes afterwards, and stops it propagating; every later test would then print "Logging
    error" tracebacks and lose records to ``caplog``.
    """
    logger = logging.getLogger("bao_kms")
    handlers, level = list(logger.handlers), logger.level
    propagate, excepthook = logger.propagate, threading.excepthook
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)  # setLevel, not assignment: it clears the children's level cache
    logger.propagate, threading.excepthook = propagate, excepthook


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bk-", dir="/tmp"))
    path.chmod(0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def openbao() -> Iterator[EmbeddedOpenBao]:
    """One real OpenBao dev server for the session, with Transit key ``transit/kms``."""
    with EmbeddedOpenBao() as server:
        server.setup_transit("transit", "kms")
        yield server


_mount_counter = iter(range(1, 10_000))


@pytest.fixture
def fresh_key(openbao: EmbeddedOpenBao) -> Callable[..., tuple[str, str]]:
    """Make a new Transit mount + safe key on the shared server; returns (mount, key)."""

    def make(**setup: Any) -> tuple[str, str]:
        mount = f"transit-t{next(_mount_counter)}"
        openbao.setup_transit(mount, "kms", **setup)
        return mount, "kms"

    return make


class RunningProvider:
    """A started provider, its counting pool, and a client on its socket."""

    def __init__(self, config: Config) -> None:
        self.config = config
        ca_file = config.openbao.ca_file
        self.pool = make_pool(
            ca_file=ca_file, maxsize=config.server.workers + 2, pool_class=CountingPool
        )
        self.provider = Provider(config, pool=self.pool)
        self.socket_path = Path(config.server.socket_path)
        self.client = KmsClient(self.socket_path)

    def start(self) -> RunningProvider:
        self.provider.start()
        return self

    def wait_healthy(self, timeout: float = 20.0) -> str:
        """Wait for Status ``ok``; returns the key_id."""

        def healthy() -> str:
            status = self.client.status()
            return status.key_id if status.healthz == "ok" else ""

        return wait_for(healthy, timeout)

    def stop(self) -> None:
        self.client.close()
        self.provider.stop(grace=1.0)


@pytest.fixture
def start_provider(
    openbao: EmbeddedOpenBao, socket_dir: Path
) -> Iterator[Callable[..., RunningProvider]]:
    """Factory: start a provider against *server* (default: the session's) and mount/key."""
    running: list[RunningProvider] = []

    def start(
        *,
        server: EmbeddedOpenBao | None = None,
        mount: str = "transit",
        key: str = "kms",
        wait: bool = True,
        **options: Any,
    ) -> RunningProvider:
        server = server or openbao
        token_file = socket_dir / f"token-{len(running)}"
        token_file.write_text(server.create_token(openbao_policy(mount, key), f"kms-{mount}"))
        token_file.chmod(0o600)
        document = provider_document(
            server,
            token_file,
            socket_dir / f"kms-{len(running)}.sock",
            mount=mount,
            key=key,
            **options,
        )
        handle = RunningProvider(parse_config(document)).start()
        running.append(handle)
        if wait:
            handle.wait_healthy()
        return handle

    yield start
    for handle in running:
        handle.stop()
