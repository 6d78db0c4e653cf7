"""/live and /ready over real HTTP while a real OpenBao goes away and comes back."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from _support import wait_for
from _support.openbao_servers import RaftOpenBao, raft_with_transit
from bao_kms.ops.http import split_address

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(180)]

#: shipped intervals, except a probe every 10 s: /ready must turn within 20 s with no traffic
INTERVALS = {"probeInterval": "10s", "deepProbeInterval": "5m", "maxStaleness": "2m"}


@pytest.fixture(scope="module")
def raft() -> Iterator[RaftOpenBao]:
    with raft_with_transit() as server:
        yield server


def get(address: str, path: str) -> tuple[int, dict[str, Any]]:
    host, port = split_address(address)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_live_stays_200_ready_follows_openbao(start_provider, raft):
    running = start_provider(server=raft, status=INTERVALS)
    address = running.provider.ops.addresses["/ready"]
    code, ready = get(address, "/ready")
    assert code == 200 and ready["ready"] and ready["healthz"] == "ok"
    assert ready["active_version"] == 1 and ready["last_error_class"] is None

    raft.stop()
    stopped = time.monotonic()
    try:

        def not_ready() -> dict[str, Any] | None:
            assert get(address, "/live")[0] == 200  # an OpenBao outage never restarts us
            code, body = get(address, "/ready")
            return body if code == 503 else None

        body = wait_for(not_ready, timeout=20, interval=0.25)
        took = time.monotonic() - stopped
        assert body["ready"] is False and "openbao_unavailable" in body["reasons"]
        assert body["last_error_class"] == "connection_failed"
        assert body["key_id_hash"] is None and body["snapshot_age_seconds"] >= 0
        print(f"/ready 503 {took:.2f} s after OpenBao stopped")
    finally:
        raft.start()
    back = time.monotonic()
    wait_for(lambda: get(address, "/ready")[0] == 200, timeout=20, interval=0.25)
    print(f"/ready 200 {time.monotonic() - back:.2f} s after OpenBao returned")
    assert get(address, "/live")[0] == 200


def test_ready_turns_503_before_the_socket_closes(start_provider, raft):
    running = start_provider(server=raft)
    address = running.provider.ops.addresses["/ready"]
    assert get(address, "/ready")[0] == 200
    running.provider.ops.draining()  # what Provider.stop does first on SIGTERM
    code, body = get(address, "/ready")
    assert code == 503 and body["draining"] is True
    assert running.client.status().healthz == "ok"  # the socket still answers meanwhile
