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

from ..errors import KmsError, OpenBaoBadResponse, OpenBaoUnauthenticated, OpenBaoUnavailable
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
    #: why the active key has no passed deep probe: pending, or the cause and the capability
    deep_problems: tuple[Reason, ...] = (Reason.DEEP_PROBE_PENDING,)
    #: ``error_class`` of the error behind metadata_problems / deep_problems ("" when none)
    metadata_error_class: str = ""
    deep_error_class: str = ""

    @property
    def error_class(self) -> str:
        """The class of OpenBao answer behind the current problems, for /ready and logs."""
        return self.metadata_error_class or self.deep_error_class


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
        reasons.extend(snapshot.deep_problems)
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
    if isinstance(error, KmsError) and isinstance(error.reason, Reason):
        # the answer table sets reasons per answer (openbao_sealed, openbao_not_found, ...)
        return error.reason
    return default


def deep_failure_reasons(error: BaseException, capability: Reason) -> tuple[Reason, ...]:
    """A failed deep probe's reasons: the cause, and the *capability* (encrypt or decrypt)
    unless the cause is OpenBao-wide (unreachable, sealed, the token), where naming the call
    would only add noise."""
    cause = failure_reason(error, capability)
    openbao_wide = isinstance(error, OpenBaoUnavailable | OpenBaoUnauthenticated)
    if cause is capability or (openbao_wide and not isinstance(error, OpenBaoBadResponse)):
        return (cause,)
    return (cause, capability)
