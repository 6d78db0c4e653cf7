"""Review finding in the ops listener: a client that resets its connection mid-request (a
kubelet probe or a Prometheus scrape timing out) made socketserver print a Python traceback to
stderr, which must carry JSON lines only."""

from __future__ import annotations

import socket
import struct
import time

import pytest
from prometheus_client import CollectorRegistry

from bao_kms.ops.http import OpsEndpoints
from bao_kms.status import Health, Snapshot

pytestmark = pytest.mark.timeout(30)


class Healthy:
    snapshot = Snapshot()

    def health(self) -> Health:
        return Health(True, (), "obk2.x", 0.0)


def test_a_reset_connection_prints_no_traceback(capfd: pytest.CaptureFixture[str]) -> None:
    ops = OpsEndpoints(
        Healthy(),
        CollectorRegistry(),
        health_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
    )
    ops.start()
    try:
        host, port = ops.addresses["/live"].rsplit(":", 1)
        client = socket.create_connection((host, int(port)))
        client.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n")  # headers not finished
        time.sleep(0.3)  # the handler is waiting for the rest
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST: the handler's read fails with ECONNRESET
        time.sleep(0.5)
        # the listener still serves
        with socket.create_connection((host, int(port))) as again:
            again.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert again.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        ops.stop()
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err
    assert "Exception occurred during processing" not in captured.err
