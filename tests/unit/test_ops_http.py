"""/live, /ready and /metrics on the stdlib server: routes, methods, listeners, draining."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from types import MappingProxyType

import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from bao_kms.errors import SocketError
from bao_kms.identity import Identity
from bao_kms.ops import OpsEndpoints
from bao_kms.ops.http import split_address
from bao_kms.reasons import Reason
from bao_kms.status import Health, Snapshot, evaluate

V1 = Identity("provider", "cluster", "instance", "", "mount", "lineage").key_version(3, 1)
HEALTHY = Snapshot(
    active=V1,
    versions=MappingProxyType({V1.key_id: V1}),
    metadata_at=100.0,
    metadata_problems=(),
    deep_key_id=V1.key_id,
)
SEALED = Snapshot(
    active=V1,
    metadata_at=100.0,
    metadata_problems=(Reason.OPENBAO_SEALED,),
    metadata_error_class="sealed",
)


class Status:
    """A StatusView with a snapshot the test sets."""

    def __init__(self) -> None:
        self.snapshot = HEALTHY

    def health(self) -> Health:
        return evaluate(self.snapshot, 101.5, 60)


@pytest.fixture
def status() -> Status:
    return Status()


@pytest.fixture
def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("openbao_kms_test_events", "a test counter", registry=registry).inc(3)
    return registry


@pytest.fixture
def endpoints(status: Status, registry: CollectorRegistry) -> Iterator[OpsEndpoints]:
    ops = OpsEndpoints(
        status, registry, health_address="127.0.0.1:0", metrics_address="127.0.0.1:0"
    )
    ops.start()
    yield ops
    ops.stop()


def fetch(address: str, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, port = split_address(address)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_one_listener_when_both_addresses_are_the_same(endpoints: OpsEndpoints) -> None:
    assert len(set(endpoints.addresses.values())) == 1
    address = endpoints.addresses["/live"]
    assert fetch(address, "/live")[0] == 200
    assert fetch(address, "/metrics")[0] == 200


def test_live_never_looks_at_health(endpoints: OpsEndpoints, status: Status) -> None:
    status.snapshot = SEALED
    code, headers, body = fetch(endpoints.addresses["/live"], "/live")
    assert code == 200 and json.loads(body) == {"live": True}
    assert headers["Content-Type"] == "application/json"


def test_ready_says_why(endpoints: OpsEndpoints, status: Status) -> None:
    code, _, body = fetch(endpoints.addresses["/ready"], "/ready")
    ready = json.loads(body)
    assert code == 200 and ready["ready"] is True and ready["healthz"] == "ok"
    assert ready["active_version"] == 3 and len(ready["key_id_hash"]) == 12
    assert ready["snapshot_age_seconds"] == 1.5 and ready["last_error_class"] is None
    status.snapshot = SEALED
    code, _, body = fetch(endpoints.addresses["/ready"], "/ready?verbose=1")
    ready = json.loads(body)
    assert code == 503 and ready["ready"] is False
    assert ready["reasons"] == ["openbao_sealed", "deep_probe_pending"]
    assert ready["last_error_class"] == "sealed" and ready["key_id_hash"] is None
    assert V1.key_id not in body.decode()


def test_draining_turns_ready_503(endpoints: OpsEndpoints) -> None:
    endpoints.draining()
    code, _, body = fetch(endpoints.addresses["/ready"], "/ready")
    assert code == 503 and json.loads(body)["draining"] is True
    assert fetch(endpoints.addresses["/live"], "/live")[0] == 200


def test_metrics_is_the_prometheus_text_of_the_injected_registry(endpoints: OpsEndpoints) -> None:
    code, headers, body = fetch(endpoints.addresses["/metrics"], "/metrics")
    assert code == 200 and headers["Content-Type"] == CONTENT_TYPE_LATEST
    assert b"openbao_kms_test_events_total 3.0" in body


@pytest.mark.parametrize("path", ["/live", "/ready", "/metrics", "/nowhere"])
def test_head_has_the_headers_and_no_body(endpoints: OpsEndpoints, path: str) -> None:
    get = fetch(endpoints.addresses["/live"], path)
    head = fetch(endpoints.addresses["/live"], path, "HEAD")
    assert head[0] == get[0] and head[2] == b""
    assert head[1]["Content-Length"] == get[1]["Content-Length"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
def test_every_other_method_is_405(endpoints: OpsEndpoints, method: str) -> None:
    for path in ("/live", "/ready", "/metrics", "/nowhere"):
        code, headers, _ = fetch(endpoints.addresses["/live"], path, method)
        assert code == 405 and headers["Allow"] == "GET, HEAD", (method, path)


def test_unknown_paths_are_404(endpoints: OpsEndpoints) -> None:
    assert fetch(endpoints.addresses["/live"], "/")[0] == 404
    assert fetch(endpoints.addresses["/live"], "/live/x")[0] == 404


def test_two_addresses_split_the_routes(status: Status, registry: CollectorRegistry) -> None:
    ops = (
        OpsEndpoints(status, registry, health_address="127.0.0.1:0", metrics_address="[::1]:0")
        if _has_ipv6()
        else OpsEndpoints(
            status, registry, health_address="127.0.0.1:0", metrics_address="127.0.0.2:0"
        )
    )
    ops.start()
    try:
        health, metrics = ops.addresses["/live"], ops.addresses["/metrics"]
        assert health != metrics and ops.addresses["/ready"] == health
        assert fetch(health, "/ready")[0] == 200 and fetch(health, "/metrics")[0] == 404
        assert fetch(metrics, "/metrics")[0] == 200 and fetch(metrics, "/live")[0] == 404
    finally:
        ops.stop()


def test_a_taken_port_is_a_start_up_error(status: Status, registry: CollectorRegistry) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        ops = OpsEndpoints(status, registry, health_address=address, metrics_address=address)
        with pytest.raises(SocketError, match="cannot listen on"):
            ops.start()
        ops.stop()


def test_a_bug_answers_500_and_the_listener_lives_on(
    endpoints: OpsEndpoints, status: Status
) -> None:
    status.snapshot = None  # type: ignore[assignment]
    assert fetch(endpoints.addresses["/ready"], "/ready")[0] == 500
    status.snapshot = HEALTHY
    assert fetch(endpoints.addresses["/ready"], "/ready")[0] == 200


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False
