"""OpenBao stopped, sealed and back: health follows it, nothing restarts, nothing is lost."""

from __future__ import annotations

import os
import time

import grpc
import pytest

from _support import wait_for
from _support.openbao_servers import raft_with_transit

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def raft_openbao():
    """A restartable single-node raft server (dev servers forget their keys on restart)."""
    with raft_with_transit() as server:
        yield server


def _unhealthy(running):
    status = running.client.status()
    return status if status.healthz != "ok" else None


def test_openbao_stopped_then_back(start_provider, raft_openbao):
    running = start_provider(server=raft_openbao)
    seed = os.urandom(32)
    encrypted = running.client.encrypt(seed)

    raft_openbao.stop()
    try:
        status = wait_for(lambda: _unhealthy(running))
        assert status.key_id == ""
        assert "openbao_unavailable" in status.healthz
        with pytest.raises(grpc.RpcError) as info:
            running.client.encrypt(seed)
        assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as info:
            running.client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        raft_openbao.start()

    key_id = running.wait_healthy(timeout=30)
    assert key_id == encrypted.key_id
    again = running.client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations)
    assert again.plaintext == seed


def test_openbao_sealed_then_unsealed(start_provider, raft_openbao):
    running = start_provider(server=raft_openbao)
    seed = b"s" * 32
    encrypted = running.client.encrypt(seed)

    def decrypt():
        return running.client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations)

    raft_openbao.seal()
    try:
        status = wait_for(lambda: _unhealthy(running))
        assert "openbao_sealed" in status.healthz
        for _ in range(5):  # enough failures to open the circuit breaker
            with pytest.raises(grpc.RpcError) as info:
                decrypt()
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert running.provider.transport.breaker.state == "open"
        # the probes bypass the breaker: Status keeps naming the real cause, round after round
        for _ in range(15):
            reasons = running.client.status().healthz.split(",")
            assert reasons[0] == "openbao_sealed" and "openbao_circuit_open" not in reasons
            time.sleep(0.1)
    finally:
        raft_openbao.unseal()
    running.wait_healthy(timeout=30)
    assert decrypt().plaintext == seed  # a probe's success closed the breaker


def test_status_goes_stale_when_probes_stop(start_provider):
    """A wedged probe thread must not leave Status frozen at ok."""
    running = start_provider(
        status={"probeInterval": "200ms", "deepProbeInterval": "1m", "maxStaleness": "1s"}
    )
    running.provider.monitor.stop()
    status = wait_for(lambda: _unhealthy(running), timeout=10)
    assert status.healthz == "status_stale" and status.key_id == ""
    with pytest.raises(grpc.RpcError) as info:
        running.client.encrypt(b"k" * 32)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION
