"""The plugin under test as the run sees it: three RPCs, each call timed.

:class:`~bao_kms.api.client.KmsClient` (one timeout per call, no retries, authority
``localhost``: how kube-apiserver dials) satisfies :class:`KmsPlugin`; tests may hand in any
object with the same three methods.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from .report import latency_summary

#: latency samples of answered calls are labelled: "serial" calls are judged against the
#: targets, "burst" calls (many in flight at once) are reported beside them
SERIAL = "serial"
BURST = "burst"
#: the refusal probes' calls: neither judged nor mixed into the serial figures
PROBE = "probe"


class KmsPlugin(Protocol):
    def status(self) -> Any: ...

    def encrypt(self, plaintext: bytes, uid: str = "") -> Any: ...

    def decrypt(
        self, ciphertext: bytes, key_id: str, annotations: Mapping[str, bytes], uid: str = ""
    ) -> Any: ...


class TimedPlugin:
    """Wraps a :class:`KmsPlugin`; records each call's duration by method and label."""

    def __init__(self, plugin: KmsPlugin, clock: Callable[[], float] = time.perf_counter) -> None:
        self._plugin = plugin
        self._clock = clock
        self._lock = threading.Lock()
        #: the label new samples get; the run switches it around its concurrent burst
        self.label = SERIAL
        self._samples: dict[tuple[str, str], list[float]] = {}
        self.calls: dict[str, int] = {"status": 0, "encrypt": 0, "decrypt": 0}

    def status(self) -> Any:
        return self._timed("status", self._plugin.status)

    def encrypt(self, plaintext: bytes, uid: str = "") -> Any:
        return self._timed("encrypt", lambda: self._plugin.encrypt(plaintext, uid))

    def decrypt(
        self, ciphertext: bytes, key_id: str, annotations: Mapping[str, bytes], uid: str = ""
    ) -> Any:
        return self._timed(
            "decrypt", lambda: self._plugin.decrypt(ciphertext, key_id, annotations, uid)
        )

    def samples(self, method: str, label: str = SERIAL) -> list[float]:
        with self._lock:
            return list(self._samples.get((method, label), ()))

    def figures(self) -> dict[str, Any]:
        """Per-method latency summaries by label, and call counts (for the JSON report)."""
        with self._lock:
            keys = sorted(self._samples)
            latency: dict[str, dict[str, Any]] = {}
            for method, label in keys:
                summary = latency_summary(self._samples[(method, label)])
                latency.setdefault(method, {})[label] = summary
            return {"rpc_calls": dict(self.calls), "latency_ms": latency}

    def _timed(self, method: str, call: Callable[[], Any]) -> Any:
        label = self.label
        started = self._clock()
        try:
            answer = call()
        except BaseException:
            # refusals are counted, not timed: the targets are for calls that do the work
            with self._lock:
                self.calls[method] += 1
            raise
        elapsed = self._clock() - started
        with self._lock:
            self.calls[method] += 1
            self._samples.setdefault((method, label), []).append(elapsed)
        return answer
