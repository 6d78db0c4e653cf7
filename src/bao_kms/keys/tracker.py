"""One node following its Transit key through rotations: the observer's rules, kept in the
version registry, turned into the :class:`~bao_kms.identity.KeyVersion` objects the request
path looks up.

The status monitor calls :meth:`RotationTracker.observe` from each metadata probe,
:meth:`~RotationTracker.promote` after a deep probe at the candidate version passed, and
:meth:`~RotationTracker.adopt` from the request path's unknown-key_id refresh. Every change is
written to the registry *before* it is returned, so nothing the process acts on (a pending
version decrypting, a promotion Status reports) can be forgotten by a restart.

When the registry cannot be used (missing after a rotation, damaged, not writable) the tracker
fails closed: the registry's reason is a problem (Status unhealthy, Encrypt refused), nothing
is promoted, and Decrypt is served only for the versions live metadata lists (their key_ids
include their creation times, so no key_id can name other key material), in a provisional
state that is never written. The files are the operator's to repair (:data:`.registry.RECOVERY`);
the tracker picks the repair up at the next probe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..identity import Identity, KeyVersion
from ..logs import short_hash
from ..openbao.key_metadata import KeyMetadata
from ..reasons import KEY_LINEAGE, Reason
from .registry import (
    RECOVERY,
    RegistryError,
    StateConflict,
    StateWriteFailed,
    StoredState,
    VersionRegistry,
)
from .rotation import (
    DECRYPTABLE,
    KeyState,
    PlanError,
    RotationPolicy,
    VersionState,
    adopt,
    bootstrap,
    guards,
    observe,
    promote,
    rebuild,
)

log = logging.getLogger("bao_kms.rotation")
_EMPTY: Mapping[str, KeyVersion] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class KeyVersions:
    """What the tracker holds now; replaced whole, safe to read without a lock."""

    #: the version Encrypt uses (None before the first usable observation)
    active: KeyVersion | None = None
    #: pending, active and retired versions by key_id: what Decrypt accepts
    decryptable: Mapping[str, KeyVersion] = field(default_factory=lambda: _EMPTY)
    #: withdrawn versions by key_id: known, and refused the same way in every process
    withdrawn: Mapping[str, KeyVersion] = field(default_factory=lambda: _EMPTY)
    #: a pending version ready to become active once a deep probe at it passes
    candidate: KeyVersion | None = None
    #: the guards and registry problems of the last observation (Status reasons)
    problems: tuple[Reason, ...] = ()
    state: KeyState | None = None
    #: False: the registry lives in memory and a restart forgets it
    persistent: bool = False
    #: False: the registry file is unusable and ``state`` is provisional (never written)
    trusted: bool = True
    generation: int | None = None
    state_hash: str | None = None

    def facts(self) -> dict[str, object]:
        """What ``/ready`` shows: persistence on or off, and where the rotation stands."""
        state = self.state
        return {
            "persistent": self.persistent,
            "trusted": self.trusted,
            "generation": self.generation,
            "active_version": None if self.active is None else self.active.version,
            "pending_versions": [] if state is None else state.numbers(VersionState.PENDING),
        }


class RotationTracker:
    """The rotation observer and the version registry for one provider; thread-safe."""

    def __init__(
        self,
        registry: VersionRegistry,
        identity: Identity,
        policy: RotationPolicy,
        wall_clock: Callable[[], float],
    ) -> None:
        self._registry = registry
        self._identity = identity
        self._policy = policy
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._stored: StoredState | None = None
        self._provisional: KeyState | None = None  # in use while the registry is unusable
        self._key: KeyMetadata | None = None  # the last metadata observed
        self._cache: dict[tuple[int, int], KeyVersion] = {}
        self._last_registry_error = ""
        self.current = KeyVersions(persistent=registry.persistent)

    @property
    def policy(self) -> RotationPolicy:
        return self._policy

    # --- the three entry points ------------------------------------------------------------

    def observe(self, key: KeyMetadata, *, settled: bool) -> KeyVersions:
        """One metadata probe's observation; *settled* is False when the key's profile has a
        problem (promotion then waits)."""
        with self._lock:
            self._key = key
            state, problem = self._load(key)
            if state is None:
                return self._publish(None, (problem,) if problem else (), None)
            observation = observe(state, key, self._wall_clock(), self._policy, settled=settled)
            problems = list(observation.problems)
            if problem is not None:
                # Unusable registry: follow live metadata for Decrypt, never promote.
                self._provisional = observation.state
                return self._publish(observation.state, (*problems, problem), None)
            written, write_problem = self._write(state, observation.state)
            if write_problem is not None:
                return self._publish(state, (*problems, write_problem), None)
            if written is not observation.state:
                return self._publish(written, tuple(problems), None)  # another writer won
            for version in observation.added:
                log.info(
                    "key version observed",
                    extra={
                        "event": "key_version_observed",
                        "version": version,
                        "state": written.versions[version].state.value,
                    },
                )
            return self._publish(written, tuple(problems), observation.candidate)

    def promote(self, version: int) -> KeyVersions:
        """*version* passed a deep probe: make it active, written before it is returned. A
        no-op when it is no longer the pending candidate (the state moved on meanwhile)."""
        with self._lock:
            current = self.current
            state = current.state
            if (
                not current.trusted
                or state is None
                or self._key is None
                or version not in state.numbers(VersionState.PENDING)
            ):
                return current
            try:
                promoted = promote(state, version)
            except PlanError:
                return current
            written, problem = self._write(state, promoted)
            if problem is not None:
                return self._publish(state, (*current.problems, problem), None)
            log.info(
                "key version promoted",
                extra={
                    "event": "key_version_promoted",
                    "version": version,
                    "previous_version": state.active,
                    "key_id_hash": short_hash(self._key_version(written, version).key_id),
                },
            )
            return self._publish(written, tuple(guards(written, self._key)), None)

    def adopt(self, key: KeyMetadata) -> tuple[KeyVersions, bool]:
        """The request path's refresh: new versions become decryptable (written first);
        returns the versions and whether any was added. Never promotes, never changes the
        problems Status reports: that is the probes' call. Raises :class:`StateWriteFailed`
        when new versions were read but could not be written (so they are not served): the
        caller must not take that for "no such version"."""
        with self._lock:
            if KEY_LINEAGE.intersection(self.current.problems):
                return self.current, False  # the probes judged the history rewritten: wait
            state, problem = self._load(key)
            if state is None:
                return self.current, False
            observation = adopt(state, key)
            if not observation.added:
                return self.current, False
            current = self.current
            if problem is not None:
                self._provisional = observation.state
                return self._publish(observation.state, current.problems, None), True
            written, write_problem = self._write(state, observation.state)
            if write_problem is not None or written is not observation.state:
                raise StateWriteFailed("new key versions could not be written to the registry")
            candidate = None if current.candidate is None else current.candidate.version
            return self._publish(written, current.problems, candidate), True

    # --- the registry ------------------------------------------------------------------------

    def _load(self, key: KeyMetadata) -> tuple[KeyState | None, Reason | None]:
        """The state to observe with, and the registry's problem if it cannot be used (the
        state is then provisional: rebuilt from live metadata and never written)."""
        try:
            stored = self._registry.load()
            if stored is None:
                stored = self._first_state(key)
        except RegistryError as error:
            self._registry_failed(error)
            return self._provisional_state(key), error.reason
        if stored is None:
            return None, None  # the key has no usable latest version yet: the profile says so
        if self._last_registry_error:
            log.info("key registry usable again", extra={"event": "key_registry_recovered"})
            self._last_registry_error = ""
        self._stored, self._provisional = stored, None
        return stored.state, None

    def _first_state(self, key: KeyMetadata) -> StoredState | None:
        """The first state of this registry: a fresh node with an unrotated key bootstraps;
        without persistence, live metadata is all there is; anything else fails closed."""
        if self._registry.persistent:
            initial = bootstrap(key)
            if initial is None:
                raise _MissingAfterRotation
        else:
            try:
                initial = rebuild(key)
            except PlanError:
                return None
        return self._registry.save(initial, None)

    def _write(self, old: KeyState, new: KeyState) -> tuple[KeyState, Reason | None]:
        if new == old:
            return old, None
        try:
            self._stored = self._registry.save(new, self._stored)
        except StateConflict:
            # Another writer (the CLI) got there first: its state is read at the next probe.
            return old, None
        except RegistryError as error:
            self._registry_failed(error)
            return old, error.reason
        return new, None

    def _provisional_state(self, key: KeyMetadata) -> KeyState | None:
        if self._provisional is None:
            try:
                self._provisional = rebuild(key)
            except PlanError:
                return None
        return self._provisional

    def _registry_failed(self, error: RegistryError) -> None:
        message = str(error)
        if message != self._last_registry_error:
            self._last_registry_error = message
            log.error(
                "key registry unusable",
                extra={"event": "key_registry_unusable", "reason": error.reason, "error": message},
            )

    # --- publishing ---------------------------------------------------------------------------

    def _publish(
        self, state: KeyState | None, problems: tuple[Reason, ...], candidate: int | None
    ) -> KeyVersions:
        trusted = self._provisional is None
        stored = self._stored if trusted else None
        if state is None:
            self.current = KeyVersions(
                problems=problems, persistent=self._registry.persistent, trusted=trusted
            )
            return self.current
        decryptable: dict[str, KeyVersion] = {}
        withdrawn: dict[str, KeyVersion] = {}
        for number, record in state.versions.items():
            version = self._key_version(state, number)
            target = decryptable if record.state in DECRYPTABLE else withdrawn
            target[version.key_id] = version
        self.current = KeyVersions(
            active=self._key_version(state, state.active),
            decryptable=MappingProxyType(decryptable),
            withdrawn=MappingProxyType(withdrawn),
            candidate=None if candidate is None else self._key_version(state, candidate),
            problems=tuple(dict.fromkeys(problems)),
            state=state,
            persistent=self._registry.persistent,
            trusted=trusted,
            generation=None if stored is None else stored.generation,
            state_hash=None if stored is None else stored.hash,
        )
        return self.current

    def _key_version(self, state: KeyState, number: int) -> KeyVersion:
        created = state.versions[number].created
        found = self._cache.get((number, created))
        if found is None:
            found = self._cache[(number, created)] = self._identity.key_version(number, created)
        return found


class _MissingAfterRotation(RegistryError):
    """No registry, and the key has been rotated: this node cannot know its history."""

    reason = Reason.STATE_MISSING

    def __init__(self) -> None:
        super().__init__(
            "the key registry is missing and the key has been rotated, so this node cannot "
            f"tell which versions it used and does not guess; {RECOVERY}"
        )
