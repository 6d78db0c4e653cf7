"""Health: the published snapshot and its evaluation (pure) and the monitor thread that probes
OpenBao."""

from __future__ import annotations

from .monitor import StatusMonitor
from .snapshot import Health, Snapshot, evaluate, failure_reason

__all__ = ["Health", "Snapshot", "StatusMonitor", "evaluate", "failure_reason"]
