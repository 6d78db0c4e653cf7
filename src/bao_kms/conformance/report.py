"""What a conformance run found: one result per :class:`~.checks.Check`, text and JSON forms.

Observations arrive in any order from every phase of the run (:class:`Recorder`); each check's
outcome is decided once, at the end:

* **FAIL** when any observation broke the rule;
* **SKIP** when the rule could not be judged: never exercised (no rotation seen), or every
  attempt was blocked by another check's failure (nothing is written once Encrypt's answer
  was refused, so the read checks skip and only the root cause fails);
* **WARN** for a soft check (a latency target) that missed, unless the run is strict;
* **PASS** otherwise.
"""

from __future__ import annotations

import collections
import statistics
import threading
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .checks import Check


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"
    WARN = "WARN"


@dataclass(frozen=True)
class CheckResult:
    check: Check
    outcome: Outcome
    detail: str

    def line(self) -> str:
        return f"{self.outcome} {self.check}: {self.detail}"

    def as_dict(self) -> dict[str, str]:
        return {
            "name": str(self.check),
            "outcome": str(self.outcome),
            "detail": self.detail,
            "rule": self.check.rule,
        }


@dataclass
class _Tally:
    passes: int = 0
    notes: list[str] = field(default_factory=list)
    failures: collections.Counter[str] = field(default_factory=collections.Counter)
    misses: list[str] = field(default_factory=list)  # soft checks: a target missed
    blocked_by: set[str] = field(default_factory=set)
    skip_reason: str = ""


class Recorder:
    """Collects observations per check from any thread; :meth:`results` decides outcomes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies = {check: _Tally() for check in Check}

    def passed(self, check: Check, note: str = "") -> None:
        """One observation that kept the rule; the latest *note* is the PASS detail."""
        with self._lock:
            tally = self._tallies[check]
            tally.passes += 1
            if note:
                tally.notes.append(note)

    def failed(self, check: Check, problem: str) -> None:
        with self._lock:
            self._tallies[check].failures[problem] += 1

    def missed(self, check: Check, detail: str) -> None:
        """A soft check missed its target: WARN, or FAIL on a strict run."""
        with self._lock:
            self._tallies[check].misses.append(detail)

    def blocked(self, check: Check, by: Check | str) -> None:
        """*check* could not be judged because of *by* (another check's failure, or a reason)."""
        with self._lock:
            self._tallies[check].blocked_by.add(str(by))

    def skipped(self, check: Check, reason: str) -> None:
        with self._lock:
            self._tallies[check].skip_reason = reason

    def observed(self, check: Check) -> bool:
        """Anything at all was recorded for *check*."""
        with self._lock:
            tally = self._tallies[check]
            return bool(
                tally.passes
                or tally.failures
                or tally.misses
                or tally.blocked_by
                or tally.skip_reason
            )

    def has_failed(self, check: Check) -> bool:
        with self._lock:
            return bool(self._tallies[check].failures)

    def results(self, *, strict_latency: bool = False) -> list[CheckResult]:
        with self._lock:
            return [
                self._result(check, tally, strict_latency) for check, tally in self._tallies.items()
            ]

    @staticmethod
    def _result(check: Check, tally: _Tally, strict_latency: bool) -> CheckResult:
        if tally.failures:
            (first, count), *others = tally.failures.most_common()
            detail = first if count == 1 else f"{first} (x{count})"
            if others:
                detail += f"; and {len(others)} other problem(s)"
            return CheckResult(check, Outcome.FAIL, detail)
        if tally.misses:
            outcome = Outcome.FAIL if strict_latency else Outcome.WARN
            return CheckResult(check, outcome, tally.misses[-1])
        if tally.blocked_by:
            blockers = ", ".join(sorted(tally.blocked_by))
            return CheckResult(check, Outcome.SKIP, f"not judged: blocked by {blockers}")
        if tally.skip_reason or not tally.passes:
            return CheckResult(check, Outcome.SKIP, tally.skip_reason or "not exercised")
        detail = tally.notes[-1] if tally.notes else f"{tally.passes} observation(s)"
        return CheckResult(check, Outcome.PASS, detail)


# --- latency figures ------------------------------------------------------------------------
def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (what Prometheus-free tools report)."""
    rank = max(1, min(len(ordered), int(len(ordered) * fraction + 0.999999)))
    return ordered[rank - 1]


def latency_summary(samples: list[float]) -> dict[str, float]:
    """count, p50, p99 and max of *samples* (seconds) in milliseconds."""
    ordered = sorted(samples)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p99": round(percentile(ordered, 0.99) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


# --- the report ------------------------------------------------------------------------------
@dataclass
class ConformanceReport:
    results: list[CheckResult]
    #: what the run did: RPC counts, objects, seeds, latency figures, duration
    figures: dict[str, Any] = field(default_factory=dict)

    def count(self, outcome: Outcome) -> int:
        return sum(result.outcome is outcome for result in self.results)

    @property
    def ok(self) -> bool:
        """Nothing failed (skips and warnings do not fail a run)."""
        return self.count(Outcome.FAIL) == 0

    def outcome_of(self, check: Check) -> Outcome:
        return next(result.outcome for result in self.results if result.check is check)

    def failed_checks(self) -> set[Check]:
        return {result.check for result in self.results if result.outcome is Outcome.FAIL}

    def summary(self) -> str:
        return (
            f"{self.count(Outcome.PASS)} passed, {self.count(Outcome.FAIL)} failed, "
            f"{self.count(Outcome.SKIP)} skipped, {self.count(Outcome.WARN)} warned"
        )

    def text(self) -> str:
        return "".join(result.line() + "\n" for result in self.results) + self.summary() + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "summary": {
                "passed": self.count(Outcome.PASS),
                "failed": self.count(Outcome.FAIL),
                "skipped": self.count(Outcome.SKIP),
                "warned": self.count(Outcome.WARN),
            },
            "checks": [result.as_dict() for result in self.results],
            **self.figures,
        }
