"""Background probes of OpenBao and the snapshot that Status, Encrypt and Decrypt read.

Status is polled continually and must never wait on OpenBao, so all OpenBao traffic for health
happens here, on one background thread:

* the **metadata probe** (every ``probe_interval``) reads the Transit key and the mount's
  ``config/keys``, checks the key profile and the version lineage, and learns every version's
  creation time (hence its key_id);
* the **deep probe** (every ``deep_probe_interval`` and right after the active key changes)
  encrypts and decrypts 32 random bytes at the active version with its real AAD; a failure
  names the capability (``deep_probe_encrypt_failed`` / ``deep_probe_decrypt_failed``).

Results are published as one immutable :class:`~.snapshot.Snapshot`, swapped atomically;
readers never lock. Health is judged from it at read time (:func:`~.snapshot.evaluate`).

**Request-path feedback**: the probes' schedule alone would let Status say ``ok`` for up to
``deepProbeInterval`` while every Decrypt is refused. So a request that meets an answer saying
something about health (the answer table's "wakes probes": 401/403, a version restriction,
sealed, unreachable, ...) calls :meth:`StatusMonitor.notice`, which wakes the probe thread at
once; a success while the snapshot holds an OpenBao problem wakes it too, to confirm the
recovery. The thread is the single flight, and it starts a woken round at most once per
``feedback_interval`` (1 s), so a storm of failures costs one probe round per second.

Every change of ``healthz`` is logged once from here: a warning with the reasons and the
``error_class`` going bad, info coming back.

**Rotation** (:mod:`bao_kms.keys.tracker`): each metadata probe is an observation; a newer
Transit version is decryptable at once (*pending*) and becomes active after the configured
stable observations and delay, and only after a round trip at it passed: then one publish
switches Status's key_id and records that passed deep probe together, so Status never names an
unproven key_id, never goes unhealthy for a rotation, and never flips back. The request path
never reads "latest" itself.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from ..errors import (
    DeadlineExceeded,
    KeyIdNotChecked,
    KeyVersionWithdrawn,
    KmsError,
    NotReady,
    OpenBaoBadResponse,
    UnknownKeyId,
)
from ..identity import Identity, KeyVersion
from ..keys.profile import key_profile_problems
from ..keys.registry import MemoryRegistry, RegistryError
from ..keys.rotation import RotationPolicy
from ..keys.tracker import KeyVersions, RotationTracker
from ..openbao.answers import Answer, error_class, wakes_probes
from ..openbao.key_metadata import KeyMetadata
from ..openbao.protocols import ProbeTransit
from ..reasons import Reason
from .snapshot import Health, Snapshot, deep_failure_reasons, evaluate, failure_reason
from .transitions import TransitionLog

log = logging.getLogger("bao_kms.status")

DEEP_PROBE_BYTES = 32
#: a woken probe round starts at most this often, however many requests fail
FEEDBACK_INTERVAL = 1.0


class StatusMonitor:
    """Runs the probes, publishes snapshots, and answers health and key lookups from memory."""

    def __init__(
        self,
        transit: ProbeTransit,
        identity: Identity,
        *,
        probe_interval: float,
        deep_probe_interval: float,
        max_staleness: float,
        retry_interval: float = 5.0,
        feedback_interval: float = FEEDBACK_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        tracker: RotationTracker | None = None,
    ) -> None:
        self._transit = transit
        self._identity = identity
        self._probe_interval = probe_interval
        self._deep_probe_interval = deep_probe_interval
        self._max_staleness = max_staleness
        self._retry_interval = min(retry_interval, probe_interval)
        self._feedback_interval = feedback_interval
        self._clock = clock
        self._random_bytes = random_bytes
        self._snapshot = Snapshot()
        self._publish_lock = threading.Lock()  # probes and lookup refreshes both publish
        self._refresh_lock = threading.Lock()  # single flight for unknown-key_id refreshes
        self._last_unknown_refresh = -float("inf")
        self._refresh_error: KmsError | None = None
        self._refreshes_done = 0  # completed refreshes: a waiter shares one that ends after it
        self._probe_lock = threading.Lock()
        # without one (tests): the registry in memory, and a new version promoted at once
        self._tracker = tracker or RotationTracker(
            MemoryRegistry(time.time), identity, RotationPolicy(1, 0), time.time
        )
        self._profile_problems: list[Reason] = []  # of the last metadata read that worked
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._round_started = -float("inf")  # when the last probe round began
        #: the snapshot holds a problem OpenBao caused: a request-path success then means news
        self._openbao_trouble = False
        self._transitions = TransitionLog(log)  # every change of healthz, logged once
        #: woken probe rounds, for tests and logs: a storm must not raise it beyond 1/s
        self.feedback_rounds = 0

    # --- readers (request path: memory only) ---------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def key_versions(self) -> KeyVersions:
        """The rotation state: versions, promotion, registry generation, ``persistent``."""
        return self._tracker.current

    def health(self) -> Health:
        return evaluate(self._snapshot, self._clock(), self._max_staleness)

    def encrypt_version(self) -> KeyVersion:
        """The version Encrypt must use; NotReady unless Status would say ``ok`` right now."""
        snap = self._snapshot
        health = evaluate(snap, self._clock(), self._max_staleness)
        if not health.ok or snap.active is None:
            error = NotReady(f"the KMS provider is not healthy ({health.healthz})")
            error.reasons = tuple(health.reasons)  # the log line names the cause
            raise error
        return snap.active

    def known(self, key_id: str) -> KeyVersion | None:
        """The version *key_id* names, from memory only (None when unknown)."""
        return self._snapshot.versions.get(key_id)

    def lookup(self, key_id: str, *, deadline: float | None = None) -> KeyVersion:
        """The version a well-formed key_id names; UnknownKeyId only after a read has looked.

        An unknown key_id may be a version rotated in since the last probe (another
        control-plane node saw it first), so one metadata read is allowed per probe interval,
        shared by every caller that waits for it: a burst of bogus key_ids cannot become a
        burst of OpenBao reads. NOT_FOUND is a definite answer, so it is given only when a
        read that ended after this call arrived did not find the key_id; a call the rate
        limit keeps from reading gets KeyIdNotChecked (UNAVAILABLE, retry), and a failed read
        its failure. The read only *adds* versions for Decrypt; health and the active key stay
        the probe thread's to decide, which it is woken to do.
        """
        found = self._snapshot.versions.get(key_id)
        if found is not None:
            return found
        if key_id in self._tracker.current.withdrawn:  # the registry's answer, after restarts too
            raise KeyVersionWithdrawn("key_id names a key version withdrawn from Decrypt")
        done_before = self._refreshes_done
        wait = -1.0 if deadline is None else deadline - self._clock()
        if deadline is not None and wait <= 0:
            raise DeadlineExceeded("deadline passed before the key_id could be looked up")
        if not self._refresh_lock.acquire(timeout=wait):
            raise DeadlineExceeded("deadline passed while waiting for a key refresh")
        try:
            found = self._snapshot.versions.get(key_id)
            if found is not None:
                return found
            now = self._clock()
            shared = self._refreshes_done > done_before  # one ended while this call waited
            if not shared and now - self._last_unknown_refresh >= self._probe_interval:
                self._refresh_versions(now, deadline)
                found = self._snapshot.versions.get(key_id)
                if found is not None:
                    return found
            elif self._refresh_error is not None:
                # The last refresh could not reach OpenBao: "unknown" is not established.
                raise copy.copy(self._refresh_error)
            elif not shared:
                raise KeyIdNotChecked(
                    "key_id is unknown and was not checked: key lookups are rate-limited; retry"
                )
        finally:
            self._refresh_lock.release()
        if not self._tracker.current.trusted:
            raise KeyIdNotChecked("key_id is unknown and the key registry is unusable; retry")
        raise UnknownKeyId("key_id does not name a key version this provider knows")

    def _refresh_versions(self, now: float, deadline: float | None) -> None:
        """Read the key once (caller holds the refresh lock) and merge new versions.

        The attempt uses up this interval's refresh whatever happens, so a slow OpenBao cannot
        be asked once per waiting caller; while the outcome is unknown, callers get the
        failure (UNAVAILABLE) rather than NOT_FOUND.
        """
        self._last_unknown_refresh = now
        # Until the read and the merge have both worked (a bug in either included), callers
        # sharing this refresh get this, never NOT_FOUND: nothing was established.
        self._refresh_error = KeyIdNotChecked(
            "key_id is unknown and the key refresh did not complete; retry"
        )
        try:
            key = self._transit.read_key(deadline=deadline)
        except DeadlineExceeded:
            self._refresh_error = Answer.TIMEOUT.error_for(
                "OpenBao did not answer a key refresh in time"
            )
            raise
        except KmsError as error:
            self._refresh_error = error
            self.notice(error)  # a request-path read: what it met may be news for Status
            raise
        finally:
            self._refreshes_done += 1
        try:
            added = self._adopt_versions(key)
        except RegistryError:
            # read, but not written (so not served): OpenBao may well have the version
            self._wake.set()  # the probes report the registry's problem
            raise copy.copy(self._refresh_error) from None
        self._refresh_error = None
        if added:
            self._wake.set()  # a new version: let the probes judge it (and maybe promote it)

    def _adopt_versions(self, key: KeyMetadata) -> bool:
        """Add decryptable versions not yet known (written to the registry first); True if
        any. The tracker judges the lineage as for the probes, so which path sees a version
        first never changes the verdict; a rewritten history adopts nothing."""
        with self._publish_lock:
            view, added = self._tracker.adopt(key)
            if added:
                self._snapshot = dataclasses.replace(self._snapshot, versions=view.decryptable)
            return added

    # --- probes ---------------------------------------------------------------------------------

    def probe_metadata(self) -> bool:
        """Read key metadata and publish; True when a deep probe is due at once (the active
        key_id changed, or a pending version is ready to be proven and promoted)."""
        with self._probe_lock:  # one probe at a time, so results publish in the order read
            return self._probe_metadata()

    def _probe_metadata(self) -> bool:
        try:
            key = self._transit.read_key()
            disable_upsert = self._transit.read_keys_config()
        except KmsError as error:
            reason = failure_reason(error, Reason.METADATA_READ_FAILED)
            self._publish(metadata_problems=(reason,), metadata_error_class=error_class(error))
            self._log_health()
            return False
        with self._publish_lock:
            self._profile_problems = key_profile_problems(key, disable_upsert)
            view = self._tracker.observe(key, settled=not self._profile_problems)
            problems = self._profile_problems + list(view.problems)
            snap = self._snapshot
            active = snap.active if view.active is None else view.active
            versions = snap.versions if view.state is None else view.decryptable
            changed = view.candidate is not None or (
                active is not None and (snap.active is None or snap.active.key_id != active.key_id)
            )
            self._snapshot = dataclasses.replace(
                snap,
                active=active,
                versions=versions,
                metadata_at=self._clock(),
                metadata_problems=tuple(problems),
                metadata_error_class="",
            )
            self._openbao_trouble = bool(self._snapshot.error_class)
        self._log_health()
        return changed

    def probe_deep(self) -> None:
        """Round-trip random bytes through Transit at the active version with its AAD; a
        failure names the call that failed (encrypt or decrypt) beside its cause. A pending
        version ready for promotion goes first: if it passes, it becomes the active one."""
        candidate = self._tracker.current.candidate
        if candidate is not None and not self._snapshot.error_class and self._promote(candidate):
            return
        active = self._snapshot.active
        if active is None:
            return
        failure = self._round_trip(active)
        if failure is not None:
            error, capability = failure
            self._publish(
                deep_key_id="",
                deep_problems=deep_failure_reasons(error, capability),
                deep_error_class=error_class(error),
            )
        else:
            self._publish(
                deep_key_id=active.key_id,
                deep_problems=(Reason.DEEP_PROBE_PENDING,),
                deep_error_class="",
            )
        self._log_health()

    def _round_trip(self, version: KeyVersion) -> tuple[KmsError, Reason] | None:
        """None if random bytes survive Transit at *version*, else the error and the call."""
        plaintext = self._random_bytes(DEEP_PROBE_BYTES)
        capability = Reason.DEEP_PROBE_ENCRYPT_FAILED
        try:
            ciphertext = self._transit.encrypt(plaintext, version.version, version.associated_data)
            capability = Reason.DEEP_PROBE_DECRYPT_FAILED
            if self._transit.decrypt(ciphertext, version.associated_data) != plaintext:
                raise OpenBaoBadResponse("deep probe round trip returned other bytes")
        except KmsError as error:
            return error, capability
        return None

    def _promote(self, candidate: KeyVersion) -> bool:
        """Prove *candidate*, write it active, then switch Status in one publish; True if so.
        A failed round trip leaves the old version active (and healthy): the next probe
        round tries again."""
        failure = self._round_trip(candidate)
        if failure is not None:
            log.warning(
                "promotion deferred: the round trip at the new version failed",
                extra={
                    "event": "promotion_deferred",
                    "version": candidate.version,
                    "error_class": error_class(failure[0]),
                },
            )
            return False
        with self._publish_lock:
            old = self._tracker.current.problems
            view = self._tracker.promote(candidate.version)
            snap = self._snapshot
            problems = [r for r in snap.metadata_problems if r not in old] + list(view.problems)
            promoted = view.active is not None and view.active.key_id == candidate.key_id
            changes: dict[str, Any] = {"metadata_problems": tuple(dict.fromkeys(problems))}
            if promoted:
                changes |= {
                    "active": view.active,
                    "versions": view.decryptable,
                    "deep_key_id": candidate.key_id,
                    "deep_problems": (Reason.DEEP_PROBE_PENDING,),
                    "deep_error_class": "",
                }
            self._snapshot = dataclasses.replace(snap, **changes)
        self._log_health()
        return promoted

    def _publish(self, **changes: Any) -> None:
        with self._publish_lock:
            self._snapshot = dataclasses.replace(self._snapshot, **changes)
            self._openbao_trouble = bool(self._snapshot.error_class)

    def _log_health(self) -> None:
        snap = self._snapshot
        self._transitions.record(snap, evaluate(snap, self._clock(), self._max_staleness))

    # --- request-path feedback ------------------------------------------------------------------

    def notice(self, error: BaseException | None) -> None:
        """A request-path outcome: *error*, or None for a success. Wakes the probes when it
        may change what Status says; cheap enough for every call (the thread rate-limits)."""
        if error is None:
            if self._openbao_trouble and not self._wake.is_set():
                self._wake.set()
        elif wakes_probes(error) and not self._wake.is_set():
            self._wake.set()

    # --- background thread ----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the status monitor is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bao-kms-probes", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        next_metadata = next_deep = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if self._wake.is_set():
                # A woken round (a request failed, a lookup found a version) starts at most
                # once per feedback_interval after the last round began: single flight here,
                # and a storm of failures costs one round per second, not one per failure.
                not_before = self._round_started + self._feedback_interval
                if now < not_before:
                    self._stop.wait(not_before - now)
                    continue
                self._wake.clear()
                self.feedback_rounds += 1
                next_metadata = next_deep = now
            if now >= min(next_metadata, next_deep):
                self._round_started = now
            try:
                next_metadata, next_deep = self._tick(now, next_metadata, next_deep)
            except Exception as error:  # noqa: BLE001 - a bug must not end the probes
                # Fail closed at once (not only after maxStaleness) and keep probing: the next
                # round may well succeed, and a dead probe thread would never recover.
                log.error(
                    "probe failed with a bug",
                    extra={
                        "event": "probe_bug",
                        "error_type": type(error).__name__,
                        "stack": "".join(traceback.format_tb(error.__traceback__)),
                    },
                )
                self._publish(metadata_problems=(Reason.PROBE_FAILED,), deep_key_id="")
                self._log_health()
                next_metadata = next_deep = now + self._retry_interval
            self._wake.wait(max(0.0, min(next_metadata, next_deep) - self._clock()))

    def _tick(self, now: float, next_metadata: float, next_deep: float) -> tuple[float, float]:
        """Run whichever probes are due; return when each is due next."""
        if now >= next_metadata:
            if self.probe_metadata():
                next_deep = now  # a new active key is proven before Status reports it
            snap = self._snapshot
            failed = snap.metadata_at is None or bool(snap.metadata_problems)
            next_metadata = now + (self._retry_interval if failed else self._probe_interval)
        if now >= next_deep and self._snapshot.active is not None:
            self.probe_deep()
            deep_failed = not self._snapshot.deep_key_id
            next_deep = now + (self._retry_interval if deep_failed else self._deep_probe_interval)
        elif now >= next_deep:
            next_deep = next_metadata
        return next_metadata, next_deep
