"""Every change of Status, logged once: a warning with its reasons going bad, info coming back.

The monitor calls :meth:`TransitionLog.record` after each publish; only a change of ``healthz``
writes a line, so a probe that fails the same way every round logs once, and the line an
operator reads last always says what Status says now (``event``: ``status_unhealthy``,
``status_starting``, ``status_healthy``). The key_id appears only as its short hash.
"""

from __future__ import annotations

import logging
import threading

from ..logs import short_hash
from ..reasons import STARTING
from .snapshot import Health, Snapshot


class TransitionLog:
    """Thread-safe; remembers the last ``healthz`` it logged."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._last = ""

    def record(self, snapshot: Snapshot, health: Health) -> None:
        with self._lock:
            if health.healthz == self._last:
                return
            previous, self._last = self._last, health.healthz
        fields: dict[str, object] = {
            "reason": health.healthz,
            "reasons": list(health.reasons),
            "active_version": snapshot.active.version if snapshot.active is not None else None,
        }
        if health.ok:
            fields |= {"key_id_hash": short_hash(health.key_id), "previous": previous}
            self._log.info("status healthy", extra={"event": "status_healthy", **fields})
        elif STARTING.issuperset(health.reasons):
            self._log.info("status starting", extra={"event": "status_starting", **fields})
        else:
            fields["error_class"] = snapshot.error_class or "none"
            self._log.warning("status unhealthy", extra={"event": "status_unhealthy", **fields})
