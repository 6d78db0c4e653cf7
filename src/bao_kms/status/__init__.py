"""Health: the published snapshot (pure) and the monitor thread that probes OpenBao."""

from __future__ import annotations

from .monitor import Health, Snapshot, StatusMonitor

__all__ = ["Health", "Snapshot", "StatusMonitor"]
