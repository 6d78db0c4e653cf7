"""A hostile network between the provider and a real OpenBao (the fault proxy in between).

- A trickling OpenBao: every call ends by its own deadline (UNAVAILABLE at ``openbao.timeout``,
  DEADLINE_EXCEEDED at the caller's), and frees its worker then, not when the trickle ends.
- SIGTERM with a 3 s grace against a trickling OpenBao exits within grace + 1 s.
- A 1 GiB answer (announced or not) and a gzip bomb are refused; the provider's RSS grows by
  less than 20 MB.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from _support import provider_document, wait_for
from _support.fault_proxy import FaultProxy
from _support.serve_process import ServeProcess, rss_kb
from bao_kms._proto import api_pb2
from bao_kms._proto.api_pb2_grpc import KeyManagementServiceStub
from bao_kms.api.client import KmsClient
from bao_kms.config import parse_config
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.manifests import openbao_policy
from bao_kms.provider import Provider

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]
Code = grpc.StatusCode


@pytest.fixture
def proxy(openbao: EmbeddedOpenBao) -> Iterator[FaultProxy]:
    with FaultProxy(openbao.address) as running:
        yield running


def document(
    openbao: EmbeddedOpenBao, proxy: FaultProxy, socket_dir: Path, **openbao_settings: Any
) -> dict[str, Any]:
    token_file = socket_dir / "token"
    token_file.write_text(openbao.create_token(openbao_policy("transit", "kms"), "kms-hostile"))
    token_file.chmod(0o600)
    settings = provider_document(openbao, token_file, socket_dir / "kms.sock")
    settings["openbao"].update(addresses=[proxy.address], **openbao_settings)
    # the monitor keeps its first verdict for the test's length: calls, not probes, meet faults
    settings["status"] = {"probeInterval": "30s", "deepProbeInterval": "5m", "maxStaleness": "1m"}
    return settings


@pytest.fixture
def serve(openbao: EmbeddedOpenBao, proxy: FaultProxy, socket_dir: Path) -> Iterator[Any]:
    started: list[ServeProcess] = []

    def start(**settings: Any) -> ServeProcess:
        server_settings = settings.pop("server", {})
        config = document(openbao, proxy, socket_dir, **settings)
        config["server"].update(server_settings)
        running = ServeProcess(config, socket_dir)
        started.append(running)
        running.wait_healthy()
        return running

    yield start
    for running in started:
        running.stop()
        assert "Traceback" not in running.stderr()


def _decrypt_code(socket_path: Path, encrypted: Any, timeout: float) -> tuple[Code, float]:
    """The code a Decrypt with this *timeout* (the caller's deadline) ends with, and when."""
    request = api_pb2.DecryptRequest(
        ciphertext=encrypted.ciphertext,
        key_id=encrypted.key_id,
        annotations=dict(encrypted.annotations),
    )
    started = time.monotonic()
    try:
        with grpc.insecure_channel(f"unix:{socket_path}") as channel:
            KeyManagementServiceStub(channel).Decrypt(request, timeout=timeout)
        code = Code.OK
    except grpc.RpcError as error:
        code = error.code()
    return code, time.monotonic() - started


def test_trickling_openbao_calls_end_by_their_deadline_and_free_their_worker(
    openbao: EmbeddedOpenBao, proxy: FaultProxy, socket_dir: Path
) -> None:
    settings = document(openbao, proxy, socket_dir, timeout="2s")
    settings["server"]["workers"] = 2
    provider = Provider(parse_config(settings))
    provider.start()
    path = socket_dir / "kms.sock"
    client = KmsClient(path, timeout=10)
    try:
        wait_for(lambda: client.status().healthz == "ok", timeout=30)
        # two different seeds: concurrent Decrypts of one ciphertext would share one request
        long_seed, short_seed = client.encrypt(os.urandom(32)), client.encrypt(os.urandom(32))
        proxy.mode = "trickle"  # a byte every 50 ms: an answer takes ~15 s
        results: dict[str, tuple[Code, float]] = {}
        calls = [
            threading.Thread(
                target=lambda: results.update(long=_decrypt_code(path, long_seed, 30.0))
            ),
            threading.Thread(
                target=lambda: results.update(short=_decrypt_code(path, short_seed, 1.0))
            ),
        ]
        for call in calls:
            call.start()
        for call in calls:
            call.join(20)
        (long_code, long_took), (short_code, short_took) = results["long"], results["short"]
        print(
            f"\ntrickle: 30 s deadline -> {long_code.name} after {long_took:.2f} s, "
            f"1 s deadline -> {short_code.name} after {short_took:.2f} s"
        )
        # openbao.timeout (2 s) bounds the whole answer, not each read of it; the long call may
        # first wait for the request slot the short one holds (1 s at most)
        assert long_code is Code.UNAVAILABLE and long_took < 2.0 + 1.0 + 1.5, results
        assert short_code is Code.DEADLINE_EXCEEDED and short_took < 1.0 + 1.0, results
        # both workers are free again: a call on a healthy network is served at once
        proxy.mode = "pass"
        provider.transport.breaker.record_success()  # the trickle opened the breaker
        code, took = _decrypt_code(path, long_seed, 5.0)
        assert code is Code.OK and took < 2.0
    finally:
        client.close()
        provider.stop(grace=1.0)


def test_sigterm_with_a_trickling_openbao_exits_within_the_grace(
    serve: Any, proxy: FaultProxy
) -> None:
    running = serve(timeout="30s", server={"gracePeriod": "3s"})
    encrypted = running.client.encrypt(os.urandom(32))
    proxy.mode = "trickle"
    outcome: list[tuple[Code, float]] = []
    caller = threading.Thread(
        target=lambda: outcome.append(_decrypt_code(running.socket_path, encrypted, 60.0))
    )
    caller.start()
    time.sleep(0.5)  # the Decrypt is in flight, its answer trickling in
    sent = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    assert running.process.wait(10) == 0
    took = time.monotonic() - sent
    print(f"\nSIGTERM with a 3 s grace, OpenBao trickling: exited after {took:.2f} s")
    assert took < 3.0 + 1.0, f"exit took {took:.2f} s"
    caller.join(10)
    assert outcome and outcome[0][0] in (Code.UNAVAILABLE, Code.CANCELLED)
    assert not running.socket_path.exists()


def test_a_1_gib_answer_and_a_gzip_bomb_are_refused_in_bounded_memory(
    serve: Any, proxy: FaultProxy
) -> None:
    running = serve(timeout="5s")
    encrypted = running.client.encrypt(os.urandom(32))
    for _ in range(5):  # warm the request path before measuring
        assert _decrypt_code(running.socket_path, encrypted, 5.0)[0] is Code.OK
    before = rss_kb(running.process.pid)
    for mode, declared in (("huge", True), ("huge", False), ("gzip", True)):
        proxy.mode, proxy.huge_declared = mode, declared
        for _ in range(3):
            code, took = _decrypt_code(running.socket_path, encrypted, 10.0)
            assert code is Code.UNAVAILABLE and took < 5.0, (mode, declared, code, took)
    after = rss_kb(running.process.pid)
    assert proxy.count("decrypt") >= 5 + 3  # the faults reached the provider (until the breaker)
    assert after - before < 20 * 1024, f"RSS grew from {before} KB to {after} KB"
    print(f"\nRSS {before} KB -> {after} KB across 1 GiB bodies and gzip bombs")
