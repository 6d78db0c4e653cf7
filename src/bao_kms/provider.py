"""The composition root: builds the provider's parts from a :class:`~bao_kms.config.Config`.

Shared things (the OpenBao connection pool, the clock, the metrics registry) are created here
once and injected, so tests can hand in a counting pool, a fake clock or a fresh
``CollectorRegistry`` and production code never reaches for a global.

The wiring that makes health truthful lives here too: the transport reports every OpenBao
request to the metrics; the servicer's Transit calls go through a
:class:`~bao_kms.status.feedback.ReportingTransit`, so what a request meets wakes the probes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType

from prometheus_client import CollectorRegistry

from . import _codec
from ._version import __version__
from .api.interceptors import ArrivalInterceptor, RpcMetricsInterceptor
from .api.server import ProviderServer
from .api.service import KeyManagementServicer
from .config import Config
from .keys.registry import open_registry
from .keys.rotation import RotationPolicy
from .keys.tracker import RotationTracker
from .openbao import TransitClient, Transport, make_pool
from .openbao.auth.factory import build_auth
from .openbao.batcher import DecryptBatcher
from .openbao.connections import ConnectionPool
from .openbao.protocols import TransitCipher
from .ops import OpsEndpoints, ProviderMetrics, StateCollector
from .ops.metrics import AuthStatsView, decrypt_batching, malformed_requests
from .status import StatusMonitor
from .status.feedback import ReportingTransit

log = logging.getLogger("bao_kms.provider")


class Provider:
    """Every part of one running provider, started and stopped in the right order."""

    def __init__(
        self,
        config: Config,
        *,
        pool: ConnectionPool | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()  # private: never the global one
        self.metrics = ProviderMetrics(self.registry)
        ca_file = str(config.openbao.ca_file) if config.openbao.ca_file else None
        self.pool = pool or make_pool(
            ca_file=ca_file,
            client_cert=config.tls_client_certificate(),
            server_hostname=config.openbao.tls_server_name,
            maxsize=config.server.workers + 2,
        )
        self.auth = build_auth(config.auth, clock=clock)
        self.transport = Transport(
            config.openbao.addresses,
            self.auth,
            pool=self.pool,
            namespace=config.openbao.namespace,
            timeout=config.openbao.timeout,
            clock=clock,
            observer=self.metrics.openbao_request,
        )
        self.transit = TransitClient(
            self.transport, config.transit.mount_path, config.transit.key_name
        )
        # Same transport and breaker; the probes are exempt so Status sees OpenBao's real state
        # and a recovery closes the breaker at the next probe.
        self.probe_transit = TransitClient(
            self.transport,
            config.transit.mount_path,
            config.transit.key_name,
            exempt_from_breaker=True,
        )
        # The version registry (state.path, else memory) is opened, and locked, at start.
        self.key_registry = open_registry(config.state.path, config.provider_identity(), wall_clock)
        policy = RotationPolicy(
            config.rotation.stable_observations, config.rotation.activation_delay
        )
        self.monitor = StatusMonitor(
            self.probe_transit,
            config.provider_identity(),
            probe_interval=config.status.probe_interval,
            deep_probe_interval=config.status.deep_probe_interval,
            max_staleness=config.status.max_staleness,
            clock=clock,
            tracker=RotationTracker(
                self.key_registry, config.provider_identity(), policy, wall_clock
            ),
        )
        # Only Decrypt traffic is coalesced and batched; the probes keep the plain client.
        self.batcher: DecryptBatcher | None = None
        cipher: TransitCipher = self.transit
        if config.openbao.decrypt_batching:
            cipher = self.batcher = DecryptBatcher(
                self.transit,
                max_batch=config.openbao.decrypt_batch_max,
                max_queued=config.openbao.decrypt_queue_max,
                linger=config.openbao.decrypt_batch_linger,
                clock=clock,
            )
        self.servicer = KeyManagementServicer(
            self.monitor,
            ReportingTransit(cipher, self.monitor.notice),
            clock=clock,
            workers=config.server.workers,
            on_failure=self.metrics.rpc_failed,
        )
        # arrival first: its stamp is what single-flight goes by (the servicer's clock)
        self.interceptors = (ArrivalInterceptor(clock), RpcMetricsInterceptor(self.metrics))
        self.server = ProviderServer(self.servicer, config.server, interceptors=self.interceptors)
        stats = getattr(self.auth, "stats", None)
        self.registry.register(
            StateCollector(
                self.monitor,
                breaker_state=lambda: self.transport.breaker.state,
                stale_sockets_removed=lambda: self.server.stale_sockets_removed,
                version=__version__,
                codec=_codec.IMPLEMENTATION,
                auth_stats=stats if isinstance(stats, AuthStatsView) else None,
                extra=[
                    malformed_requests(self.servicer.rejections.counts),
                    *([decrypt_batching(self.batcher.stats)] if self.batcher else []),
                ],
            )
        )
        self.ops = OpsEndpoints(
            self.monitor,
            self.registry,
            health_address=config.server.health_address,
            metrics_address=config.server.metrics_address,
            key_registry=lambda: self.monitor.key_versions.facts(),
        )

    def start(self) -> None:
        # Socket first: binding briefly narrows the process-wide umask, which must happen
        # before any other thread exists. Status answers "not_probed_yet" for the moment
        # until the first probe, which starts right after. The registry's lock comes before
        # anything: a second provider on the same state file stops here (StateLocked).
        self.key_registry.open()
        if not self.key_registry.persistent:
            log.warning(
                "key registry persistence is off (state.path is not set): a restart forgets "
                "which key versions this node has seen",
                extra={"event": "key_registry_in_memory"},
            )
        try:
            self.server.start()
        except BaseException:
            self.key_registry.close()
            raise
        try:
            # a bad credential file is a ConfigError here (exit code 3); the first login runs
            # in the background, so an OpenBao that is down does not stop the start
            self.auth.start(self.transport)
            # /live answers from here on: the socket is served (a taken port: SocketError)
            self.ops.start()
            self.monitor.start()
        except BaseException:
            self.ops.stop()
            self.server.stop(0)
            self.auth.stop()
            self.key_registry.close()
            raise

    def stop(self, grace: float | None = None) -> None:
        self.ops.draining()  # /ready turns 503 before the socket stops taking calls
        try:
            self.server.stop(grace)
        finally:
            # the grace is over: abandon OpenBao requests still in flight (a hung or trickling
            # OpenBao must not hold the stop), then stop what would send new ones
            self.transport.close()
            if self.batcher is not None:
                self.batcher.close()  # what is still queued now fails fast
            self.monitor.stop()
            self.auth.stop()
            self.ops.stop()
            self.pool.clear()
            self.key_registry.close()  # after the probes: nothing writes the registry now

    def __enter__(self) -> Provider:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
