"""The operations surface: Prometheus metrics and the /live, /ready, /metrics endpoints."""

from __future__ import annotations

from .http import OpsEndpoints
from .metrics import ProviderMetrics, StateCollector

__all__ = ["OpsEndpoints", "ProviderMetrics", "StateCollector"]
