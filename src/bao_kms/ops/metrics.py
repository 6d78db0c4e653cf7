"""The provider's Prometheus metrics, on one injected ``CollectorRegistry``.

Two kinds, kept apart as client_python intends:

* **events** (calls, OpenBao requests, rejections) are counted as they happen by
  :class:`ProviderMetrics`, which the gRPC interceptor, the transport's observer and the
  servicer's failure hook call;
* **state** (health, reasons, key version, cache age, breaker, build, auth) lives in the status
  snapshot and elsewhere and is read at scrape time by :class:`StateCollector`, never copied
  into gauges on every change.

Every label has a bounded set of values: method names, gRPC code names, operation words,
``error_class`` words, :class:`~bao_kms.reasons.Reason` members, or a 12-hex-digit hash. No
label ever holds a key_id, a key or mount name, a token or an identity label. The reference is
``docs/metrics.md``; a test checks the two list the same names.

**Extending**: anything with state to show passes a callable returning metric families as
``extra`` to :class:`StateCollector`; auth methods are wired through :class:`AuthStatsView`
(``openbao_kms_token_ttl_seconds``, ``openbao_kms_auth_login_total``,
``openbao_kms_auth_renewal_total``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..errors import KmsError
from ..logs import short_hash
from ..reasons import Reason
from ..status import Health, Snapshot

PREFIX = "openbao_kms_"
#: from a Status answered from memory (~0.1 ms) to an OpenBao call at its timeout
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
#: circuit breaker state -> openbao_kms_circuit_breaker_state value
BREAKER_STATES = {"closed": 0, "open": 1, "half_open": 2}
KMS_METHODS = ("Status", "Encrypt", "Decrypt")


class ProviderMetrics:
    """Event counters; thread-safe (client_python's children lock themselves)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.grpc_requests = Counter(
            PREFIX + "grpc_requests",
            "KMS v2 calls answered, by method and gRPC code",
            ["method", "code"],
            registry=registry,
        )
        self.grpc_duration = Histogram(
            PREFIX + "grpc_duration_seconds",
            "Time from a KMS v2 call entering the servicer to its answer",
            ["method"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.grpc_in_flight = Gauge(
            PREFIX + "grpc_in_flight",
            "KMS v2 calls being served right now",
            ["method"],
            registry=registry,
        )
        self.openbao_requests = Counter(
            PREFIX + "openbao_requests",
            "Requests to OpenBao by operation and outcome (ok or the answer's error_class)",
            ["operation", "status"],
            registry=registry,
        )
        self.openbao_duration = Histogram(
            PREFIX + "openbao_duration_seconds",
            "Time an OpenBao request took, failover and token retry included",
            ["operation"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.decrypt_rejections = Counter(
            PREFIX + "decrypt_rejections",
            "Decrypt calls refused, by reason (the error's stable reason word)",
            ["reason"],
            registry=registry,
        )
        # Children by label values, looked up once: labels() takes a lock on every call, and
        # these run twice per KMS call. Every method's series exist from the first scrape.
        self._in_flight = {m: self.grpc_in_flight.labels(m) for m in (*KMS_METHODS, "other")}
        self._duration = {m: self.grpc_duration.labels(m) for m in (*KMS_METHODS, "other")}
        self._requests: dict[tuple[str, grpc.StatusCode], Any] = {}

    # --- the gRPC interceptor's RpcObserver ---------------------------------------------------

    def rpc_started(self, method: str) -> None:
        self._in_flight[method].inc()

    def rpc_finished(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self._in_flight[method].dec()
        requests = self._requests.get((method, code))
        if requests is None:  # bounded: 4 methods x 17 codes
            requests = self._requests[method, code] = self.grpc_requests.labels(method, code.name)
        requests.inc()
        self._duration[method].observe(seconds)

    # --- the transport's RequestObserver ------------------------------------------------------

    def openbao_request(self, operation: str, outcome: str, seconds: float) -> None:
        self.openbao_requests.labels(operation, outcome).inc()
        self.openbao_duration.labels(operation).observe(seconds)

    # --- the servicer's failure hook ----------------------------------------------------------

    def rpc_failed(self, rpc: str, error: Exception) -> None:
        if rpc == "Decrypt":
            reason = error.reason if isinstance(error, KmsError) else "bug"
            self.decrypt_rejections.labels(reason).inc()


class StatusView(Protocol):
    """What the collector reads from the status monitor."""

    @property
    def snapshot(self) -> Snapshot: ...

    def health(self) -> Health: ...


@runtime_checkable
class AuthStatsView(Protocol):
    """The hook for auth methods (``bao_kms.openbao.auth.stats.AuthStats`` has this shape)."""

    method: str

    def logins(self) -> Mapping[Any, int]: ...

    def renewals(self) -> Mapping[Any, int]: ...

    def token_ttl(self) -> float | None: ...


#: a source of further families, read at each scrape (see the module docstring)
ExtraMetrics = Callable[[], Iterable[Metric]]


class StateCollector(Collector):
    """State read at scrape time: health, reasons, key, cache age, breaker, build, auth."""

    def __init__(
        self,
        status: StatusView,
        *,
        breaker_state: Callable[[], str],
        stale_sockets_removed: Callable[[], int],
        version: str,
        codec: str,
        auth_stats: AuthStatsView | None = None,
        extra: Iterable[ExtraMetrics] = (),
    ) -> None:
        self._status = status
        self._breaker_state = breaker_state
        self._stale_sockets_removed = stale_sockets_removed
        self._build = (version, codec)
        self._auth_stats = auth_stats
        self._extra = tuple(extra)

    def collect(self) -> Iterator[Metric]:
        snapshot = self._status.snapshot
        health = self._status.health()
        yield _gauge("status_healthy", "1 when Status answers ok, else 0", int(health.ok))
        reasons = GaugeMetricFamily(
            PREFIX + "status_reason",
            "1 for each reason Status gives now (every reason listed, 0 when absent)",
            labels=["reason"],
        )
        for reason in Reason:
            reasons.add_metric([reason.value], int(reason in health.reasons))
        yield reasons
        active = snapshot.active
        yield _gauge(
            "key_version",
            "Transit key version Encrypt uses (0: none yet)",
            active.version if active is not None else 0,
        )
        key_id = GaugeMetricFamily(
            PREFIX + "status_key_id_hash",
            "1 for a short hash of the key_id Status reports (no sample while not ok)",
            labels=["hash"],
        )
        if health.ok:
            key_id.add_metric([short_hash(health.key_id)], 1)
        yield key_id
        if health.snapshot_age is not None:
            yield _gauge(
                "status_cache_age_seconds",
                "Age of the last successful metadata probe",
                health.snapshot_age,
            )
        yield _gauge(
            "circuit_breaker_state",
            "OpenBao circuit breaker: 0 closed, 1 open, 2 half-open",
            BREAKER_STATES.get(self._breaker_state(), 1),
        )
        yield CounterMetricFamily(
            PREFIX + "socket_stale_removed",
            "Stale sockets (left by a crash, nobody listening) removed at start",
            value=self._stale_sockets_removed(),
        )
        build = GaugeMetricFamily(
            PREFIX + "build_info", "Version and hot-path codec (1)", labels=["version", "codec"]
        )
        build.add_metric(list(self._build), 1)
        yield build
        if self._auth_stats is not None:
            yield from _auth_metrics(self._auth_stats)
        for source in self._extra:
            yield from source()


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _auth_metrics(stats: AuthStatsView) -> Iterator[Metric]:
    ttl = stats.token_ttl()
    if ttl is not None:
        yield _gauge("token_ttl_seconds", "Seconds the current OpenBao token has left", ttl)
    logins = CounterMetricFamily(
        PREFIX + "auth_login",
        "Logins to OpenBao by method and outcome",
        labels=["method", "status"],
    )
    for status, count in stats.logins().items():
        logins.add_metric([stats.method, str(status)], count)
    yield logins
    renewals = CounterMetricFamily(
        PREFIX + "auth_renewal", "Token renewals by outcome", labels=["status"]
    )
    for status, count in stats.renewals().items():
        renewals.add_metric([str(status)], count)
    yield renewals


def malformed_requests(counts: Callable[[], Mapping[str, int]]) -> ExtraMetrics:
    """``openbao_kms_grpc_malformed_requests_total{method}`` from the servicer's counter of
    requests whose bytes were not a message (an ``extra`` source for :class:`StateCollector`)."""

    def collect() -> Iterator[Metric]:
        family = CounterMetricFamily(
            PREFIX + "grpc_malformed_requests",
            "KMS v2 calls refused because their bytes were not a request message",
            labels=["method"],
        )
        for method, count in counts().items():
            family.add_metric([method if method in KMS_METHODS else "other"], count)
        yield family

    return collect


class DecryptBatchStats(Protocol):
    """What the decrypt batcher counts (``bao_kms.openbao.batcher.BatchStats``), read-only."""

    @property
    def single_requests(self) -> int: ...
    @property
    def batch_requests(self) -> int: ...
    @property
    def items(self) -> int: ...
    @property
    def coalesced(self) -> int: ...
    @property
    def refused(self) -> int: ...
    @property
    def expired(self) -> int: ...
    @property
    def queued(self) -> int: ...


def decrypt_batching(stats: Callable[[], DecryptBatchStats]) -> ExtraMetrics:
    """The decrypt batcher's counts (an ``extra`` source for :class:`StateCollector`): how many
    OpenBao requests and items the Decrypts cost, and how many shared another's item."""

    def collect() -> Iterator[Metric]:
        now = stats()
        requests = CounterMetricFamily(
            PREFIX + "decrypt_batch_requests",
            "Transit decrypt requests the batcher sent, by kind (single, batch)",
            labels=["kind"],
        )
        requests.add_metric(["single"], now.single_requests)
        requests.add_metric(["batch"], now.batch_requests)
        yield requests
        for name, documentation, value in (
            ("decrypt_batch_items", "Decrypt items sent to OpenBao", now.items),
            ("decrypt_coalesced", "Decrypts that shared a concurrent one's item", now.coalesced),
            ("decrypt_queue_full", "Decrypts refused: the batch queue was full", now.refused),
            ("decrypt_queue_expired", "Queued Decrypts whose deadline passed", now.expired),
        ):
            yield CounterMetricFamily(PREFIX + name, documentation, value=value)
        yield _gauge("decrypt_queue_length", "Distinct Decrypts waiting for a batch", now.queued)

    return collect
