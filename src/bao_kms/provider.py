"""The composition root: builds the provider's parts from a :class:`~bao_kms.config.Config`.

Shared things (the urllib3 pool, the clock) are created here once and injected, so tests can
hand in a counting pool or a fake clock and production code never reaches for a global.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

import urllib3

from .api.server import ProviderServer
from .api.service import KeyManagementServicer
from .config import Config
from .openbao import TransitClient, Transport, make_pool
from .openbao.auth.factory import build_auth
from .status import StatusMonitor


class Provider:
    """Every part of one running provider, started and stopped in the right order."""

    def __init__(
        self,
        config: Config,
        *,
        pool: urllib3.PoolManager | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        ca_file = str(config.openbao.ca_file) if config.openbao.ca_file else None
        self.pool = pool or make_pool(ca_file=ca_file, maxsize=config.server.workers + 2)
        self.transport = Transport(
            config.openbao.addresses,
            build_auth(config.auth, clock=clock),
            pool=self.pool,
            namespace=config.openbao.namespace,
            timeout=config.openbao.timeout,
            clock=clock,
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
        self.monitor = StatusMonitor(
            self.probe_transit,
            config.provider_identity(),
            probe_interval=config.status.probe_interval,
            deep_probe_interval=config.status.deep_probe_interval,
            max_staleness=config.status.max_staleness,
            clock=clock,
        )
        self.servicer = KeyManagementServicer(self.monitor, self.transit, clock=clock)
        self.server = ProviderServer(self.servicer, config.server)

    def start(self) -> None:
        # Socket first: binding briefly narrows the process-wide umask, which must happen
        # before any other thread exists. Status answers "not_probed_yet" for the moment
        # until the first probe, which starts right after.
        self.server.start()
        try:
            self.monitor.start()
        except BaseException:
            self.server.stop(0)
            raise

    def stop(self, grace: float | None = None) -> None:
        try:
            self.server.stop(grace)
        finally:
            self.monitor.stop()
            self.pool.clear()

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
