"""Control-plane "nodes" for the rotation tests: in-process providers, each with its own socket,
its own version registry file and its own rotation settings, against the real ``bao`` server.

A node can be stopped and started again on the same state file (a restart) or with other
settings (an operator changing the config); the CLI commands run in-process against its config
file, the way an operator runs them on the node.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bao_kms.api.client import KmsClient
from bao_kms.cli.main import main
from bao_kms.config import parse_config
from bao_kms.embedded import EmbeddedOpenBao, find_bao_binary
from bao_kms.manifests import openbao_policy
from bao_kms.provider import Provider

from . import provider_document, wait_for

#: the rotation settings the tests use: promote at the first observation, no delay
FAST = {"stableObservations": 1, "activationDelay": "0s"}
PROBES = {"probeInterval": "200ms", "deepProbeInterval": "1m", "maxStaleness": "5s"}


class Node:
    """One provider with a state file; ``start()``/``stop()`` may be repeated (restarts)."""

    def __init__(self, server: EmbeddedOpenBao, directory: Path, name: str, mount: str) -> None:
        self.server = server
        self.name = name
        self.mount = mount
        self.socket_path = directory / f"{name}.sock"
        self.state_path = directory / f"state-{name}" / "key-registry.json"
        self.config_file = directory / f"{name}.yaml"
        self.token_file = directory / f"token-{name}"
        self.token_file.write_text(
            server.create_token(openbao_policy(mount, "kms"), f"kms-{mount}")
        )
        self.token_file.chmod(0o600)
        self.rotation: dict[str, Any] = dict(FAST)
        self.persistent = True
        self.provider: Provider | None = None
        self.client: KmsClient | None = None

    def document(self) -> dict[str, Any]:
        document = provider_document(
            self.server, self.token_file, self.socket_path, mount=self.mount, status=PROBES
        )
        document["rotation"] = self.rotation
        if self.persistent:
            document["state"] = {"path": str(self.state_path)}
        return document

    def start(self, *, wait: bool = True, **rotation: Any) -> Node:
        self.rotation = {**self.rotation, **rotation}
        document = self.document()
        self.config_file.write_text(yaml.safe_dump(document))
        self.config_file.chmod(0o600)
        self.provider = Provider(parse_config(document))
        self.provider.start()
        self.client = KmsClient(self.socket_path)
        if wait:
            self.wait_key_id()
        return self

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.provider is not None:
            self.provider.stop(grace=1.0)
            self.provider = None

    @property
    def kms(self) -> KmsClient:
        assert self.client is not None, "node not started"
        return self.client

    def status(self) -> tuple[str, str]:
        answer = self.kms.status()
        return answer.healthz, answer.key_id

    def wait_key_id(self, other_than: str = "", timeout: float = 20.0) -> str:
        """Wait for Status ok with a key_id other than *other_than*; returns it."""

        def ready() -> str:
            healthz, key_id = self.status()
            return key_id if healthz == "ok" and key_id != other_than else ""

        return str(wait_for(ready, timeout, interval=0.01))

    def wait_reason(self, reason: str, timeout: float = 20.0) -> str:
        return str(wait_for(lambda: reason in self.status()[0] and self.status()[0], timeout))

    def versions(self) -> dict[int, str]:
        """version -> state, as this node's tracker holds them now."""
        assert self.provider is not None
        state = self.provider.monitor.key_versions.state
        return {} if state is None else {v: r.state.value for v, r in state.versions.items()}

    def cli(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
        """Run a command against this node's config; returns the exit code and the parsed
        JSON report, or the error line when there is none."""
        capsys.readouterr()
        code = main([args[0], "--config", str(self.config_file), "--output", "json", *args[1:]])
        out, err = capsys.readouterr()
        return code, json.loads(out) if out.strip() else err


def bao_rotate(server: EmbeddedOpenBao, mount: str, key: str = "kms") -> float:
    """``bao write -f <mount>/keys/<key>/rotate`` with the real CLI; returns when it exited
    (time.monotonic()), so latencies are measured from the rotation being done."""
    env = {**os.environ, "BAO_ADDR": server.address, "BAO_TOKEN": server.root_token}
    subprocess.run(
        [find_bao_binary(), "write", "-f", f"{mount}/keys/{key}/rotate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=30,
    )
    return time.monotonic()


def latest_version(server: EmbeddedOpenBao, mount: str, key: str = "kms") -> int:
    version: int = server.api("GET", f"{mount}/keys/{key}")["data"]["latest_version"]
    return version
