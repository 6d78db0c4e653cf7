"""What the probes last established (:class:`Snapshot`) and what Status makes of it (pure).

The monitor thread publishes one immutable :class:`Snapshot` at a time; :func:`evaluate` turns
it into :class:`Health` against a clock reading taken by the caller. Health is judged at read
time, never stored, so a probe thread that hangs still turns Status unhealthy
(``status_stale``) instead of freezing it at ``ok``. Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import (
    OpenBaoBadResponse,
    OpenBaoPermissionDenied,
    OpenBaoUnauthenticated,
    OpenBaoUnavailable,
)
from ..identity import KeyVersion
from ..reasons import Reason


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the probes last established; replaced whole, never mutated."""

    #: the version Encrypt uses, from the last good metadata probe
    active: KeyVersion | None = None
    #: every version Decrypt accepts, by key_id; only ever grows while the process lives
    versions: Mapping[str, KeyVersion] = field(default_factory=lambda: MappingProxyType({}))
    #: clock time of the last metadata probe that succeeded (None: never)
    metadata_at: float | None = None
    #: why the last metadata probe failed or what it found wrong; empty when all was well
    metadata_problems: tuple[Reason, ...] = (Reason.NOT_PROBED_YET,)
    #: the key_id the last successful deep probe covered ("" after a failure)
    deep_key_id: str = ""
    deep_problem: Reason = Reason.DEEP_PROBE_PENDING


@dataclass(frozen=True, slots=True)
class Health:
    """Status as kube-apiserver sees it, plus the reasons behind it."""

    ok: bool
    reasons: tuple[Reason, ...]
    key_id: str  # "" unless ok
    snapshot_age: float | None

    @property
    def healthz(self) -> str:
        return "ok" if self.ok else ",".join(self.reasons)


def evaluate(snapshot: Snapshot, now: float, max_staleness: float) -> Health:
    """Health of *snapshot* at clock time *now*: ``ok`` only when both probes passed for the
    active key and the last good metadata probe is at most *max_staleness* old."""
    reasons = list(snapshot.metadata_problems)
    active = snapshot.active
    if active is not None and snapshot.deep_key_id != active.key_id:
        reasons.append(snapshot.deep_problem)
    age = None if snapshot.metadata_at is None else now - snapshot.metadata_at
    if age is not None and age > max_staleness:
        reasons.append(Reason.STATUS_STALE)
    if active is None and not reasons:
        reasons.append(Reason.NO_ACTIVE_KEY)
    if reasons or active is None:
        return Health(False, tuple(dict.fromkeys(reasons)), "", age)
    return Health(True, (), active.key_id, age)


def failure_reason(error: BaseException, default: Reason) -> Reason:
    """The reason for a failed probe: OpenBao's state when the error names it, else *default*."""
    if isinstance(error, OpenBaoBadResponse):
        return default  # OpenBao answered, but not with what the probe needs
    if isinstance(error, (OpenBaoUnavailable, OpenBaoUnauthenticated, OpenBaoPermissionDenied)):
        # openbao_sealed and openbao_circuit_open are subclasses' reasons and survive here
        if isinstance(error.reason, Reason):
            return error.reason
    return default
