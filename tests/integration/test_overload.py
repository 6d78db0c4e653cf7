"""Overload and deadlines against a real OpenBao that stops answering (SIGSTOP)."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from bao_kms.api.client import KmsClient
from bao_kms.embedded import EmbeddedOpenBao

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]


@pytest.fixture
def hung_openbao():
    """A dedicated dev server that the test freezes; always resumed and stopped."""
    with EmbeddedOpenBao() as server:
        server.setup_transit()
        frozen = threading.Event()

        def freeze() -> None:
            os.kill(server.pid, signal.SIGSTOP)
            frozen.set()

        try:
            yield server, freeze
        finally:
            if frozen.is_set():
                os.kill(server.pid, signal.SIGCONT)


def _decrypt_code(client: KmsClient, encrypted) -> grpc.StatusCode | None:
    try:
        client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations)
    except grpc.RpcError as error:
        return error.code()
    return None


def test_calls_beyond_the_bound_are_resource_exhausted(start_provider, hung_openbao):
    server, freeze = hung_openbao
    running = start_provider(server=server, server_settings={"maxConcurrentRequests": 2})
    encrypted = running.client.encrypt(os.urandom(32))
    freeze()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: _decrypt_code(running.client, encrypted), range(8)))
    # two calls are admitted and wait on the frozen OpenBao; the rest are refused at once
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 5
    assert set(codes) <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}


def test_a_hung_openbao_gives_unavailable_within_the_timeout(start_provider, hung_openbao):
    server, freeze = hung_openbao
    running = start_provider(server=server)  # openbao.timeout is 2s in the test config
    encrypted = running.client.encrypt(os.urandom(32))
    freeze()
    assert _decrypt_code(running.client, encrypted) is grpc.StatusCode.UNAVAILABLE


def test_the_callers_deadline_is_passed_to_openbao(start_provider, hung_openbao):
    server, freeze = hung_openbao
    running = start_provider(server=server)
    encrypted = running.client.encrypt(os.urandom(32))
    freeze()
    quick = KmsClient(running.socket_path, timeout=0.5)
    try:
        assert _decrypt_code(quick, encrypted) is grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        quick.close()
