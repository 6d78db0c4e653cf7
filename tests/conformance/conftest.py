"""Fixtures for the conformance harness tests: serve a KMS v2 plugin, run the harness on it.

The plugins themselves (one correct, one per broken rule) are in ``_support.kms_plugins``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from _support.kms_plugins import FakePlugin, serve
from bao_kms.api.client import KmsClient
from bao_kms.conformance.report import ConformanceReport
from bao_kms.conformance.scenario import ConformanceOptions, run_conformance

#: small and quick: every phase runs, and a run takes well under a second
FAST_OPTIONS = ConformanceOptions(
    ready_timeout=1.0,
    objects=12,
    samples=8,
    concurrency=8,
    rotation_timeout=5.0,
    poll_interval=0.02,
)


@pytest.fixture
def serve_plugin(socket_dir: Path) -> Iterator[Callable[[FakePlugin], Path]]:
    """Factory: serve a plugin on a fresh socket; every server stops at teardown."""
    servers: list[grpc.Server] = []

    def start(plugin: FakePlugin) -> Path:
        path = socket_dir / f"plugin-{len(servers)}.sock"
        servers.append(serve(plugin, path))
        return path

    yield start
    for server in servers:
        server.stop(grace=None).wait(5)


@pytest.fixture
def run_against(
    serve_plugin: Callable[[FakePlugin], Path],
) -> Callable[..., ConformanceReport]:
    """Run the harness against a served plugin with :data:`FAST_OPTIONS` (overridable)."""

    def run(plugin: FakePlugin, **overrides: Any) -> ConformanceReport:
        path = serve_plugin(plugin)
        with KmsClient(path, timeout=3.0) as client:
            return run_conformance(client, dataclasses.replace(FAST_OPTIONS, **overrides))

    return run
