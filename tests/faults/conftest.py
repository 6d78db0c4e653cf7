"""Fixtures of the fault matrix: the run's :class:`~_support.faults.Matrix`, a restartable raft
server shared by the tests of one module, and providers with the matrix's short probe intervals.

Servers are real ``bao`` processes on 127.0.0.1, stopped by PID at teardown. Every test leaves
the server it broke working again (its fault is cleared in a ``finally``), so the next one can
share it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _support.fault_table import FAULTS
from _support.faults import (
    OPENBAO,
    PROBES,
    REPORT_ENV,
    Kms,
    Matrix,
    Measured,
    MeasureFault,
    Seen,
    run_fault,
)
from _support.openbao_servers import RaftOpenBao, raft_with_transit

_MATRIX = pytest.StashKey[Matrix]()


@pytest.fixture(scope="session")
def matrix(request: pytest.FixtureRequest) -> Matrix:
    """The measured times of this run, reported by :func:`pytest_terminal_summary`."""
    return request.config.stash.setdefault(_MATRIX, Matrix())


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the run's times, and write them as JSON to the file ``BAO_KMS_FAULT_MATRIX_JSON``
    names: what docs/fault-matrix.md is updated from."""
    measured = config.stash.get(_MATRIX, None)
    if measured is None or not measured.rows:
        return
    terminalreporter.write_line("fault matrix (detected: from the fault; recovered: from its end)")
    for line in measured.lines():
        terminalreporter.write_line(f"  {line}")
    target = os.environ.get(REPORT_ENV)
    if target:
        measured.write(Path(target))


@pytest.fixture(scope="module")
def raft() -> Iterator[RaftOpenBao]:
    """One restartable, sealable single-node raft server for a module's tests."""
    with raft_with_transit() as server:
        yield server


@pytest.fixture
def fault_provider(start_provider: Callable[..., Any]) -> Callable[..., Any]:
    """``start_provider`` with the matrix's probe intervals and OpenBao timeout."""

    def start(**options: Any) -> Any:
        options.setdefault("status", PROBES)
        options.setdefault("openbao_settings", OPENBAO)
        return start_provider(**options)

    return start


@pytest.fixture
def measure_fault(matrix: Matrix) -> MeasureFault:
    """Run a fault of the table against a running provider and record its figures."""

    def measure(name: str, client: Kms, provider: Any, **script: Any) -> tuple[Measured, Seen]:
        ready = provider.ops.addresses["/ready"]
        measured, seen = run_fault(FAULTS[name], client, ready, **script)
        matrix.record(name, measured)
        return measured, seen

    return measure
