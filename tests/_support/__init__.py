"""Helpers shared by test modules (the package ``_support``: tests/ is on sys.path).

Modules: this one (waiting, a counting pool, provider config documents), ``fake_openbao``
(a scripted HTTP server for unit tests of error classification), ``leaks`` (known secrets and
an assertion that none of them leaked)."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.openbao import KeyMetadata
from bao_kms.openbao.connections import ConnectionPool

GOLDEN_IDENTITY = {
    "providerName": "openbao-kms-workload-a",
    "clusterId": "workload-a",
    "openbaoInstanceId": "bao-prod-a",
    "transitMountId": "transit-prod-primary",
    "keyLineageId": "01HXEXAMPLEKEYLINEAGEID",
}


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll *predicate* until it returns a truthy value; fail the test after *timeout*."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


class CountingPool(ConnectionPool):
    """The provider's real connection pool, counting every request it sends by path."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._count_lock = threading.Lock()
        self.paths: collections.Counter[str] = collections.Counter()

    def request(self, address: str, method: str, target: str, **kw: Any) -> Any:
        with self._count_lock:
            self.paths[target.removeprefix("/v1/")] += 1
        return super().request(address, method, target, **kw)

    def count(self, fragment: str = "") -> int:
        with self._count_lock:
            return sum(n for path, n in self.paths.items() if fragment in path)

    def reset(self) -> None:
        with self._count_lock:
            self.paths.clear()


def provider_document(
    server: EmbeddedOpenBao,
    token_file: Path,
    socket_path: Path,
    *,
    mount: str = "transit",
    key: str = "kms",
    identity: dict[str, str] | None = None,
    status: dict[str, str] | None = None,
    ca_file: Path | None = None,
    server_settings: dict[str, Any] | None = None,
    openbao_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "server": {
            "socketPath": str(socket_path),
            "gracePeriod": "5s",
            # a free port each: providers (and other test runs) must not share /live
            "healthAddress": "127.0.0.1:0",
            "metricsAddress": "127.0.0.1:0",
            **(server_settings or {}),
        },
        "openbao": {"addresses": [server.address], "timeout": "2s", **(openbao_settings or {})},
        "auth": {"method": "token", "token": {"file": str(token_file)}},
        "identity": identity or GOLDEN_IDENTITY,
        "transit": {"mountPath": mount, "keyName": key},
        "status": status
        or {"probeInterval": "300ms", "deepProbeInterval": "1m", "maxStaleness": "5s"},
    }
    if ca_file is not None:
        document["openbao"]["caFile"] = str(ca_file)
    if server.address.startswith("http://"):
        # the test server on loopback speaks plain http, which a config must opt into
        document["openbao"]["allowInsecureHttp"] = True
    return document


#: Transit key metadata with the safe profile: one version, nothing exportable or deletable
SAFE_KEY = KeyMetadata(
    type="aes256-gcm96",
    derived=False,
    convergent_encryption=False,
    exportable=False,
    allow_plaintext_backup=False,
    deletion_allowed=False,
    soft_deleted=False,
    latest_version=1,
    min_decryption_version=1,
    min_encryption_version=0,
    min_available_version=0,
    versions={1: 1_700_000_000},
)


class FakeClock:
    """A hand-driven monotonic clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
