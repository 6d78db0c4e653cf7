"""Malformed requests against a real ``serve`` process and a real OpenBao (behind a counting
proxy): 20,000 of them leave the provider's memory flat and reach OpenBao not once.

grpcio's own deserializer path once leaked ~16.5 KB per malformed request (15,000 requests:
+240 MB, then SIGABRT under a memory limit); the provider now parses the bytes itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from _support import provider_document
from _support.fault_proxy import FaultProxy
from _support.serve_process import ServeProcess, rss_kb
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.manifests import openbao_policy

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(300)]

MALFORMED = {
    "Decrypt": [b"\x0a\xff\xff\xff", b"\x12\x02\xff\xfe", b"\x1a\x03\xc3\x28a", b"\x0f"],
    "Encrypt": [b"\x12\x02\xff\xfe", b"\x0a\x05ab"],
    "Status": [b"\x80"],
}
#: malformed requests sent, and how many in flight at once
TOTAL = 20_000
WINDOW = 64


@pytest.fixture
def running(
    openbao: EmbeddedOpenBao, socket_dir: Path
) -> Iterator[tuple[ServeProcess, FaultProxy]]:
    with FaultProxy(openbao.address) as proxy:
        token_file = socket_dir / "token"
        token_file.write_text(openbao.create_token(openbao_policy("transit", "kms"), "kms-rss"))
        token_file.chmod(0o600)
        settings = provider_document(openbao, token_file, socket_dir / "kms.sock")
        settings["openbao"]["addresses"] = [proxy.address]
        serve = ServeProcess(settings, socket_dir)
        try:
            serve.wait_healthy()
            yield serve, proxy
        finally:
            serve.stop()
        assert "Traceback" not in serve.stderr()


def _send(channel: grpc.Channel, count: int) -> dict[str, int]:
    calls = {
        method: channel.unary_unary(f"/v2.KeyManagementService/{method}") for method in MALFORMED
    }
    plan = [(method, raw) for method, raws in MALFORMED.items() for raw in raws]
    codes: dict[str, int] = {}
    for start in range(0, count, WINDOW):
        futures = [
            calls[plan[i % len(plan)][0]].future(plan[i % len(plan)][1], timeout=30)
            for i in range(start, min(start + WINDOW, count))
        ]
        for future in futures:
            try:
                future.result()
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
            codes[code] = codes.get(code, 0) + 1
    return codes


@pytest.mark.slow
def test_20000_malformed_requests_leave_memory_flat_and_never_reach_openbao(
    running: tuple[ServeProcess, FaultProxy],
) -> None:
    serve, proxy = running
    with grpc.insecure_channel(f"unix:{serve.socket_path}") as channel:
        _send(channel, 2_000)  # warm up: allocator arenas, grpcio's caches
        before = rss_kb(serve.process.pid)
        proxy.reset_counts()
        codes = _send(channel, TOTAL)
        after = rss_kb(serve.process.pid)
    assert codes == {"INVALID_ARGUMENT": TOTAL}
    assert proxy.count("transit/encrypt") == proxy.count("transit/decrypt") == 0
    print(f"\nRSS {before} KB before, {after} KB after {TOTAL} malformed requests")
    assert after - before < 5 * 1024, f"RSS grew from {before} KB to {after} KB"
    assert os.path.exists(serve.socket_path)
