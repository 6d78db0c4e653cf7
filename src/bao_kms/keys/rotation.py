"""Observed rotation (DESIGN §4): which Transit key versions this node encrypts and decrypts with.

Operators rotate the key in OpenBao; the provider never does. Each metadata probe is an
*observation* fed to :func:`observe`, which returns the node's next :class:`KeyState`. A version
moves one way through these states, except where an operator moves it back::

    pending --promote--> active --promote a newer one--> retired <--retire/restore--> withdrawn

* **pending**: newer than the active version. Decryptable at once, because a node that promoted
  it earlier may already have written data with it; not yet used for Encrypt.
* **active**: the one version Encrypt uses and Status names. The newest pending version is
  promoted after ``stable_observations`` consecutive observations *and* ``activation_delay``,
  and only after a deep probe at it has passed (the caller's part, then :func:`promote`).
  The active version only ever moves up: Status never flips back.
* **retired**: an older version, and any version a promotion skipped. Decrypt only.
* **withdrawn**: a retired version the operator took out of Decrypt (``retire-versions``)
  before raising ``min_decryption_version``; ``restore-versions`` puts it back. Its key_id stays
  known, so a Decrypt naming it gets the same answer in every process, restarted or not.

The guards fail closed with a named :class:`~bao_kms.reasons.Reason`: the key's history
rewritten (``latest_version`` going back, a known version's creation time changing),
a version's metadata missing, ``min_decryption_version`` / ``min_available_version`` above a
version still kept for Decrypt, and ``min_encryption_version`` above the active version
(``encryption_blocked``: Encrypt refused, Decrypt served).

Pure: no I/O, no locks, no clock of its own (the caller passes ``now``, in Unix seconds, because
promotion progress is persisted and read back by other processes).
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ..openbao.key_metadata import KeyMetadata
from ..reasons import Reason
from .lineage import KeyLineage


class VersionState(StrEnum):
    """Where one key version stands on this node."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"
    WITHDRAWN = "withdrawn"


#: the states whose versions Decrypt accepts
DECRYPTABLE = frozenset({VersionState.PENDING, VersionState.ACTIVE, VersionState.RETIRED})


class PlanError(ValueError):
    """An operator's change to the key state that the rules do not allow."""


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One version as the registry keeps it: its creation time (hence its key_id) and state."""

    created: int
    state: VersionState


@dataclass(frozen=True, slots=True)
class Promotion:
    """Progress towards promoting *version*: consecutive observations since *first_observed*."""

    version: int
    observations: int
    first_observed: float  # Unix seconds


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When a pending version may become active (config ``rotation``)."""

    stable_observations: int = 3
    activation_delay: float = 120.0

    def ready(self, promotion: Promotion, now: float) -> bool:
        return (
            promotion.observations >= self.stable_observations
            and now - promotion.first_observed >= self.activation_delay
        )


@dataclass(frozen=True, slots=True)
class KeyState:
    """Every version this node has seen, the highest ``latest_version`` it has seen, and the
    progress of the next promotion. Immutable; every change makes a new one."""

    versions: Mapping[int, VersionRecord]
    highest_latest: int
    promotion: Promotion | None = None

    def __post_init__(self) -> None:
        # sorted and read-only, so equal states compare equal and serialise identically
        frozen = types.MappingProxyType(dict(sorted(self.versions.items())))
        object.__setattr__(self, "versions", frozen)

    @property
    def active(self) -> int:
        """The active version (a well-formed state has exactly one; see :func:`state_problems`)."""
        return next(v for v, r in self.versions.items() if r.state is VersionState.ACTIVE)

    def numbers(self, *states: VersionState) -> list[int]:
        """The versions in any of *states*, in ascending order."""
        return [v for v, record in self.versions.items() if record.state in states]

    def replace(self, changes: Mapping[int, VersionState]) -> KeyState:
        """This state with the versions in *changes* moved to their new states."""
        versions = {
            v: VersionRecord(r.created, changes.get(v, r.state)) for v, r in self.versions.items()
        }
        return KeyState(versions, self.highest_latest, self.promotion)


@dataclass(frozen=True, slots=True)
class Observation:
    """What one metadata observation made of the key state."""

    #: the next state (equal to the old one when nothing changed; persist it before use)
    state: KeyState
    #: the guards that failed: each makes Status unhealthy
    problems: tuple[Reason, ...] = ()
    #: a pending version ready to become active once a deep probe at it has passed
    candidate: int | None = None
    #: versions this observation added (pending or, below the active one, retired)
    added: tuple[int, ...] = field(default=())


def state_problems(state: KeyState) -> list[str]:
    """How *state* breaks the rules no sequence of observations and commands can break
    (empty: it does not). The registry refuses such a file as damaged."""
    problems = []
    actives = state.numbers(VersionState.ACTIVE)
    if len(actives) != 1:
        return ["it must name exactly one active version"]
    active = actives[0]
    if any(v <= active for v in state.numbers(VersionState.PENDING)):
        problems.append("a pending version is not newer than the active one")
    if any(v >= active for v in state.numbers(VersionState.RETIRED, VersionState.WITHDRAWN)):
        problems.append("a retired or withdrawn version is not older than the active one")
    if any(v < 1 or r.created < 0 for v, r in state.versions.items()):
        problems.append("a version number or creation time is out of range")
    if state.highest_latest < max(state.versions):
        problems.append("highestLatestVersion is below a known version")
    promotion = state.promotion
    if promotion is not None and (
        promotion.version not in state.numbers(VersionState.PENDING) or promotion.observations < 1
    ):
        problems.append("the promotion in progress does not name a pending version")
    return problems


def bootstrap(key: KeyMetadata) -> KeyState | None:
    """The first state of a node whose key was never rotated (only version 1), or None: any
    other key has a history this node cannot know on its own (see :func:`rebuild`)."""
    if key.latest_version != 1 or list(key.versions) != [1]:
        return None
    return KeyState({1: VersionRecord(key.versions[1], VersionState.ACTIVE)}, highest_latest=1)


def rebuild(key: KeyMetadata) -> KeyState:
    """A state trusting live metadata alone: the latest version active, every other listed
    version retired. Versions below ``min_decryption_version`` are not listed by OpenBao, so
    they cannot be known. Used by ``rebuild-state`` and when persistence is off."""
    if key.latest_version not in key.versions:
        raise PlanError("the key lists no version at its latest_version")
    versions = {
        v: VersionRecord(
            created, VersionState.ACTIVE if v == key.latest_version else VersionState.RETIRED
        )
        for v, created in key.versions.items()
        if key.min_decryption_version <= v <= key.latest_version
    }
    return KeyState(versions, key.latest_version)


def observe(
    state: KeyState,
    key: KeyMetadata,
    now: float,
    policy: RotationPolicy,
    *,
    settled: bool = True,
) -> Observation:
    """One metadata probe's observation of *key*.

    *settled* is False when the key fails another check (its profile): promotion waits for a
    key that is fine in every respect, and the count of consecutive observations restarts.
    """
    lineage = KeyLineage(
        {v: r.created for v, r in state.versions.items()}, state.highest_latest
    ).problems(key)
    if lineage:
        # A rewritten history teaches nothing (its versions may be new key material) and
        # breaks the run of stable observations.
        return Observation(_with_promotion(state, None), tuple(lineage))
    adopted, added = _adopt(state, key)
    problems = guards(adopted, key)
    blocking = [reason for reason in problems if reason is not Reason.ENCRYPTION_BLOCKED]
    # encryption_blocked does not hold promotion back: promoting the newer version is what
    # lifts it, when the operator raised min_encryption_version ahead of the nodes.
    promotion = None
    if settled and not blocking and key.latest_version > adopted.active:
        previous = adopted.promotion
        if previous is not None and previous.version == key.latest_version:
            count = min(previous.observations + 1, policy.stable_observations)
            promotion = Promotion(previous.version, count, previous.first_observed)
        else:
            promotion = Promotion(key.latest_version, 1, now)
    state = _with_promotion(adopted, promotion)
    candidate = promotion.version if promotion and policy.ready(promotion, now) else None
    return Observation(state, tuple(problems), candidate, added)


def adopt(state: KeyState, key: KeyMetadata) -> Observation:
    """The request path's view of *key* (an unknown key_id's refresh): new versions become
    decryptable, nothing is promoted and the promotion count is left alone, because a burst
    of lookups is not a run of observations. A rewritten history adopts nothing."""
    lineage = KeyLineage(
        {v: r.created for v, r in state.versions.items()}, state.highest_latest
    ).problems(key)
    if lineage:
        return Observation(state, tuple(lineage))
    adopted, added = _adopt(state, key)
    return Observation(adopted, (), None, added)


def promote(state: KeyState, version: int) -> KeyState:
    """*version* (pending) becomes active; the old active version and every pending version
    below *version* (skipped) become retired. Call it only after a deep probe at *version*."""
    record = state.versions.get(version)
    if record is None or record.state is not VersionState.PENDING:
        raise PlanError(f"version {version} is not pending")
    changes = {state.active: VersionState.RETIRED, version: VersionState.ACTIVE}
    changes |= {v: VersionState.RETIRED for v in state.numbers(VersionState.PENDING) if v < version}
    promotion = state.promotion
    if promotion is not None and promotion.version <= version:
        promotion = None
    return _with_promotion(state.replace(changes), promotion)


def retire(state: KeyState, before_version: int) -> tuple[KeyState, list[int]]:
    """Withdraw every retired version below *before_version* from Decrypt (``retire-versions``);
    returns the new state and the versions withdrawn. The active and pending versions are not
    retired this way: a rotation retires them."""
    if before_version > state.active:
        raise PlanError(
            f"--before-version may be at most the active version ({state.active}): "
            "the active and pending versions are still in use"
        )
    chosen = [v for v in state.numbers(VersionState.RETIRED) if v < before_version]
    return state.replace(dict.fromkeys(chosen, VersionState.WITHDRAWN)), chosen


def restore(state: KeyState, versions: Iterable[int]) -> tuple[KeyState, list[int]]:
    """Put withdrawn *versions* back into Decrypt (``restore-versions``); returns the new state
    and the versions restored. A version this node never saw cannot be restored: its creation
    time (hence its key_id) is unknown."""
    chosen = sorted(set(versions))
    unknown = [v for v in chosen if v not in state.versions]
    if unknown:
        raise PlanError(
            f"version(s) {_list(unknown)} are not in the registry: it never saw them "
            "(lower min_decryption_version so OpenBao lists them, then they are adopted)"
        )
    restored = [v for v in chosen if state.versions[v].state is VersionState.WITHDRAWN]
    return state.replace(dict.fromkeys(restored, VersionState.RETIRED)), restored


def promotion_due(
    promotion: Promotion | None, policy: RotationPolicy, now: float, probe_interval: float
) -> float | None:
    """The earliest Unix time the pending promotion can happen (None: none in progress):
    after the remaining observations, one per probe interval, and the activation delay."""
    if promotion is None:
        return None
    remaining = max(0, policy.stable_observations - promotion.observations)
    return max(promotion.first_observed + policy.activation_delay, now + remaining * probe_interval)


def guards(state: KeyState, key: KeyMetadata) -> list[Reason]:
    """The fail-closed checks of a key whose history is intact (:func:`observe` runs them)."""
    problems = []
    listed_from = max(key.min_decryption_version, 1)
    if any(v not in key.versions for v in range(listed_from, key.latest_version + 1)):
        # Skipped versions are kept for Decrypt, so their creation times must be known.
        problems.append(Reason.KEY_VERSION_METADATA_MISSING)
    active = state.active
    kept = state.numbers(*DECRYPTABLE)
    if active < key.min_decryption_version:
        problems.append(Reason.KEY_ACTIVE_VERSION_BELOW_MIN_DECRYPTION)
    if any(v < key.min_decryption_version for v in kept if v != active):
        problems.append(Reason.KEY_RETAINED_VERSION_BELOW_MIN_DECRYPTION)
    if any(v < key.min_available_version for v in kept):
        problems.append(Reason.KEY_RETAINED_VERSION_TRIMMED)
    if active < key.min_encryption_version:
        problems.append(Reason.ENCRYPTION_BLOCKED)
    return problems


# --- helpers ---------------------------------------------------------------------------------


def _adopt(state: KeyState, key: KeyMetadata) -> tuple[KeyState, tuple[int, ...]]:
    """*state* plus the versions of *key* it lacks that Transit still decrypts with."""
    active = state.active
    added = {
        v: VersionRecord(created, VersionState.PENDING if v > active else VersionState.RETIRED)
        for v, created in key.versions.items()
        if v not in state.versions and v >= key.min_decryption_version and v <= key.latest_version
    }
    highest = max(state.highest_latest, key.latest_version)
    if not added and highest == state.highest_latest:
        return state, ()
    versions = {**state.versions, **added}
    return KeyState(versions, highest, state.promotion), tuple(sorted(added))


def _with_promotion(state: KeyState, promotion: Promotion | None) -> KeyState:
    if promotion == state.promotion:
        return state
    return KeyState(state.versions, state.highest_latest, promotion)


def _list(versions: Iterable[int]) -> str:
    return ", ".join(str(v) for v in versions)
