"""The metrics on a fresh injected registry: event counters, state read at scrape time, the
auth hook, bounded labels, and docs/metrics.md naming exactly what is exported."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import MappingProxyType

import grpc
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from bao_kms import errors
from bao_kms.identity import Identity
from bao_kms.logs import short_hash
from bao_kms.openbao.answers import Answer
from bao_kms.openbao.batcher import BatchStats
from bao_kms.ops import ProviderMetrics, StateCollector
from bao_kms.ops.metrics import AuthStatsView, decrypt_batching, malformed_requests
from bao_kms.reasons import Reason
from bao_kms.status import Health, Snapshot, evaluate

DOCS = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
V2 = Identity("provider", "cluster", "instance", "", "mount", "lineage").key_version(2, 7)
HEALTHY = Snapshot(
    active=V2,
    versions=MappingProxyType({V2.key_id: V2}),
    metadata_at=100.0,
    metadata_problems=(),
    deep_key_id=V2.key_id,
)


class Status:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def health(self) -> Health:
        return evaluate(self.snapshot, 104.0, 60)


class Stats:
    """The auth method's stats object, as the hook sees it."""

    method = "approle"

    def logins(self) -> dict[str, int]:
        return {"success": 2, "refused": 1}

    def renewals(self) -> dict[str, int]:
        return {"success": 5}

    def token_ttl(self) -> float | None:
        return 1234.5


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def breaker() -> list[str]:
    return ["closed"]


@pytest.fixture
def status() -> Status:
    return Status(HEALTHY)


@pytest.fixture
def metrics(registry: CollectorRegistry, status: Status, breaker: list[str]) -> ProviderMetrics:
    registry.register(
        StateCollector(
            status,
            breaker_state=lambda: breaker[0],
            stale_sockets_removed=lambda: 1,
            version="9.9.9",
            codec="python",
            auth_stats=Stats(),
            extra=[
                malformed_requests(lambda: {"Decrypt": 4}),
                decrypt_batching(lambda: BatchStats(1, 2, 9, 3, 0, 0, 1)),
            ],
        )
    )
    return ProviderMetrics(registry)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_calls_are_counted_by_method_and_code(metrics, registry):
    metrics.rpc_started("Decrypt")
    assert value(registry, "openbao_kms_grpc_in_flight", method="Decrypt") == 1
    metrics.rpc_finished("Decrypt", grpc.StatusCode.PERMISSION_DENIED, 0.003)
    metrics.rpc_started("Status")
    metrics.rpc_finished("Status", grpc.StatusCode.OK, 0.0001)
    assert value(registry, "openbao_kms_grpc_in_flight", method="Decrypt") == 0
    assert (
        value(
            registry, "openbao_kms_grpc_requests_total", method="Decrypt", code="PERMISSION_DENIED"
        )
        == 1
    )
    assert value(registry, "openbao_kms_grpc_duration_seconds_count", method="Status") == 1
    assert (
        value(registry, "openbao_kms_grpc_duration_seconds_bucket", method="Decrypt", le="0.005")
        == 1
    )


def test_openbao_requests_and_decrypt_rejections(metrics, registry):
    metrics.openbao_request("decrypt", "permission_denied", 0.01)
    metrics.openbao_request("decrypt", "ok", 0.002)
    metrics.rpc_failed("Decrypt", Answer.PERMISSION_DENIED.error_for("403"))
    metrics.rpc_failed("Decrypt", errors.MalformedKeyId("bad"))
    metrics.rpc_failed("Decrypt", ZeroDivisionError())
    metrics.rpc_failed("Encrypt", errors.NotReady("no"))  # not a Decrypt: not counted here
    requests = "openbao_kms_openbao_requests_total"
    assert value(registry, requests, operation="decrypt", status="permission_denied") == 1
    assert value(registry, requests, operation="decrypt", status="ok") == 1
    assert value(registry, "openbao_kms_openbao_duration_seconds_count", operation="decrypt") == 2
    rejections = "openbao_kms_decrypt_rejections_total"
    assert value(registry, rejections, reason="openbao_permission_denied") == 1
    assert value(registry, rejections, reason="malformed_key_id") == 1
    assert value(registry, rejections, reason="bug") == 1
    assert value(registry, rejections, reason="not_ready") is None


def test_state_is_read_at_scrape_time(metrics, registry, status, breaker):
    assert value(registry, "openbao_kms_status_healthy") == 1
    assert value(registry, "openbao_kms_key_version") == 2
    assert value(registry, "openbao_kms_status_key_id_hash", hash=short_hash(V2.key_id)) == 1
    assert value(registry, "openbao_kms_status_cache_age_seconds") == 4.0
    assert value(registry, "openbao_kms_status_reason", reason="openbao_sealed") == 0
    assert value(registry, "openbao_kms_circuit_breaker_state") == 0
    # nothing copied: the next scrape sees the new state
    status.snapshot = Snapshot(
        active=V2, metadata_at=100.0, metadata_problems=(Reason.OPENBAO_SEALED,)
    )
    breaker[0] = "half_open"
    assert value(registry, "openbao_kms_status_healthy") == 0
    assert value(registry, "openbao_kms_status_reason", reason="openbao_sealed") == 1
    assert value(registry, "openbao_kms_status_reason", reason="deep_probe_pending") == 1
    assert value(registry, "openbao_kms_status_key_id_hash", hash=short_hash(V2.key_id)) is None
    assert value(registry, "openbao_kms_circuit_breaker_state") == 2


def test_every_reason_has_a_series(metrics, registry):
    for reason in Reason:
        assert value(registry, "openbao_kms_status_reason", reason=reason.value) is not None


def test_process_build_and_auth_state(metrics, registry):
    assert value(registry, "openbao_kms_socket_stale_removed_total") == 1
    assert value(registry, "openbao_kms_build_info", version="9.9.9", codec="python") == 1
    assert value(registry, "openbao_kms_token_ttl_seconds") == 1234.5
    login = "openbao_kms_auth_login_total"
    assert value(registry, login, method="approle", status="success") == 2
    assert value(registry, "openbao_kms_auth_renewal_total", status="success") == 5
    assert value(registry, "openbao_kms_grpc_malformed_requests_total", method="Decrypt") == 4


def test_the_real_auth_stats_fit_the_hook():
    from bao_kms.openbao.auth.stats import AuthStats

    stats = AuthStats("token", clock=lambda: 0.0)
    assert isinstance(stats, AuthStatsView)
    assert isinstance(Stats(), AuthStatsView)


def test_before_any_probe(registry):
    registry.register(
        StateCollector(
            Status(Snapshot()),
            breaker_state=lambda: "closed",
            stale_sockets_removed=lambda: 0,
            version="1",
            codec="python",
        )
    )
    assert registry.get_sample_value("openbao_kms_status_cache_age_seconds") is None
    assert registry.get_sample_value("openbao_kms_key_version") == 0
    assert registry.get_sample_value("openbao_kms_token_ttl_seconds") is None


def exported_names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        names.add(family.name + suffix)
    return names


def test_docs_list_exactly_the_exported_metrics(metrics, registry):
    documented = set(re.findall(r"^\| `(openbao_kms_[a-z_]+)` \|", DOCS, re.MULTILINE))
    assert exported_names(registry) == documented


def test_no_label_value_is_unbounded_or_secret(metrics, registry):
    text = generate_latest(registry).decode()
    assert V2.key_id not in text
    for line in text.splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        labels = line[line.index("{") + 1 : line.index("}")]
        for pair in re.findall(r'(\w+)="([^"]*)"', labels):
            assert len(pair[1]) <= 64, line
    assert not math.isnan(registry.get_sample_value("openbao_kms_status_healthy") or 0)
