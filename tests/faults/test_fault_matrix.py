"""The fault matrix, OpenBao's side: the server stopped, sealed, frozen, and the active node of a
raft cluster killed under load.

Each test writes objects, causes its fault, checks what kube-apiserver sees against
:data:`_support.fault_table.FAULTS`, clears the fault, times the recovery and reads every object
back (the script is :func:`_support.faults.run_fault`). The single-node server is shared by the
module's tests; each one leaves it running and unsealed.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _support import GOLDEN_IDENTITY
from _support.fault_table import FAULTS
from _support.faults import (
    PROBES,
    Matrix,
    Measured,
    MeasureFault,
    StatusWatch,
    read_back,
    ready,
    serving,
    write_objects,
)
from _support.openbao_servers import RaftOpenBao
from _support.openbao_tls import RaftCluster
from _support.provider_load import LoadedProvider, run_load
from bao_kms.manifests import openbao_policy

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(90)]


def test_openbao_stopped_then_started(
    raft: RaftOpenBao, fault_provider: Callable[..., Any], measure_fault: MeasureFault
) -> None:
    running = fault_provider(server=raft)
    measure_fault(
        "openbao_stopped",
        running.client,
        running.provider,
        cause=raft.stop,
        clear=raft.start,  # the same port and storage; unsealed by the helper
        cleared=serving(raft),
    )


def test_openbao_sealed_then_unsealed(
    raft: RaftOpenBao, fault_provider: Callable[..., Any], measure_fault: MeasureFault
) -> None:
    running = fault_provider(server=raft)
    measure_fault(
        "openbao_sealed",
        running.client,
        running.provider,
        cause=raft.seal,
        clear=raft.unseal,
        cleared=serving(raft),
    )


def test_openbao_frozen_then_resumed(
    raft: RaftOpenBao, fault_provider: Callable[..., Any], measure_fault: MeasureFault
) -> None:
    running = fault_provider(server=raft)
    pid = raft.pid
    assert pid is not None
    measure_fault(
        "openbao_frozen",
        running.client,
        running.provider,
        cause=lambda: os.kill(pid, signal.SIGSTOP),
        clear=lambda: os.kill(pid, signal.SIGCONT),
    )


# --- HA: the active node of a raft cluster killed under load ---------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RaftCluster]:
    with RaftCluster() as running:
        running.leader().setup_transit()
        yield running


@pytest.mark.slow
def test_raft_active_node_killed_under_load(
    cluster: RaftCluster, socket_dir: Path, matrix: Matrix
) -> None:
    expectation = FAULTS["raft_active_killed"]
    cluster.api("PUT", "sys/policies/acl/kms-ha", {"policy": openbao_policy("transit", "kms")})
    token = cluster.api("POST", "auth/token/create", {"policies": ["kms-ha"], "ttl": "1h"})
    token_file = socket_dir / "token-ha"
    token_file.write_text(token["auth"]["client_token"])
    token_file.chmod(0o600)
    provider = LoadedProvider(
        {
            "server": {"socketPath": str(socket_dir / "kms-ha.sock"), "gracePeriod": "5s"},
            # the default timeout: a call slowed by a loaded machine is not what this row tests
            "openbao": {"addresses": cluster.addresses, "allowInsecureHttp": True},
            "auth": {"method": "token", "token": {"file": str(token_file)}},
            "identity": GOLDEN_IDENTITY,
            "status": PROBES,
        }
    ).start()
    try:
        provider.wait_healthz("ok")
        stored = write_objects(provider.client)
        leader = cluster.leader()
        killed: list[float] = []

        def kill() -> None:
            cluster.kill(leader)
            killed.append(time.monotonic())

        with StatusWatch(provider.client) as watch:
            started = time.monotonic()
            result = run_load(provider.client, 8.0, workers=4, events=((2.5, kill),))
        killed_at = killed[0] - started  # on run_load's clock, which started with it
        assert cluster.leader() is not leader
        assert result.failed("decrypt") == [], result.failures[:5]
        assert result.calls["decrypt"] > 50
        # Encrypt may fail while no node is active; it must succeed again within seconds
        last_failure = max((f[0] for f in result.failures), default=killed_at)
        recovered = result.first_success_after(max(last_failure, killed_at)) + max(
            0.0, last_failure - killed_at
        )
        assert recovered < 5.0, result.failures[:5]
        read_back(provider.client, stored)
        assert provider.healthz() == "ok"
        assert ready(provider.provider.ops.addresses["/ready"])[0] == 200
        # the probes fail over with the requests: an election must not read as an outage
        assert watch.not_ok_seconds() < 3.0, watch.changes
        note = (
            f"{result.summary()}; {len(result.failed('encrypt'))} Encrypt failed; "
            f"Status not ok for {watch.not_ok_seconds():.2f} s"
        )
        matrix.record(expectation.name, Measured(None, recovered, note))
    finally:
        provider.stop()
