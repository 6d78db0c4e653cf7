"""Background probes of OpenBao and the snapshot that Status, Encrypt and Decrypt read.

Status is polled continually and must never wait on OpenBao, so all OpenBao traffic for health
happens here, on one background thread:

* the **metadata probe** (every ``probe_interval``) reads the Transit key and the mount's
  ``config/keys``, checks the key profile and the version lineage, and learns every version's
  creation time (hence its key_id);
* the **deep probe** (every ``deep_probe_interval`` and right after the active key changes)
  encrypts and decrypts 32 random bytes at the active version with its real AAD.

Results are published as one immutable :class:`~.snapshot.Snapshot`, swapped atomically;
readers never lock. Health is judged from it at read time (:func:`~.snapshot.evaluate`).

Until the rotation observer lands, the active version is Transit's ``latest_version`` as seen
by the last metadata probe. The request path never reads "latest" itself.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from ..errors import DeadlineExceeded, KmsError, NotReady, OpenBaoUnavailable, UnknownKeyId
from ..identity import Identity, KeyVersion
from ..keys.lineage import KeyLineage
from ..keys.profile import key_profile_problems
from ..openbao.key_metadata import KeyMetadata
from ..openbao.protocols import ProbeTransit
from ..reasons import KEY_LINEAGE, STARTING, Reason
from .snapshot import Health, Snapshot, evaluate, failure_reason

log = logging.getLogger("bao_kms.status")

DEEP_PROBE_BYTES = 32


def merge_versions(
    known: Mapping[str, KeyVersion], key: KeyMetadata, identity: Identity
) -> dict[int, KeyVersion]:
    """*known* by version number, plus every version of *key* that Decrypt may accept and is
    not known yet. A known version is never replaced: its key_id is already in etcd."""
    by_version = {version.version: version for version in known.values()}
    for version, created in key.versions.items():
        if version >= key.min_decryption_version and version not in by_version:
            by_version[version] = identity.key_version(version, created)
    return by_version


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
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._transit = transit
        self._identity = identity
        self._probe_interval = probe_interval
        self._deep_probe_interval = deep_probe_interval
        self._max_staleness = max_staleness
        self._retry_interval = min(retry_interval, probe_interval)
        self._clock = clock
        self._random_bytes = random_bytes
        self._snapshot = Snapshot()
        self._publish_lock = threading.Lock()  # probes and lookup refreshes both publish
        self._refresh_lock = threading.Lock()  # single flight for unknown-key_id refreshes
        self._last_unknown_refresh = -float("inf")
        self._refresh_error: KmsError | None = None
        self._probe_lock = threading.Lock()
        self._lineage = KeyLineage()  # read and extended under the publish lock only
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_healthz = ""

    # --- readers (request path: memory only) ---------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def health(self) -> Health:
        return evaluate(self._snapshot, self._clock(), self._max_staleness)

    def encrypt_version(self) -> KeyVersion:
        """The version Encrypt must use; NotReady unless Status would say ``ok`` right now."""
        snap = self._snapshot
        health = evaluate(snap, self._clock(), self._max_staleness)
        if not health.ok or snap.active is None:
            raise NotReady(f"the KMS provider is not healthy ({health.healthz})")
        return snap.active

    def known(self, key_id: str) -> KeyVersion | None:
        """The version *key_id* names, from memory only (None when unknown)."""
        return self._snapshot.versions.get(key_id)

    def lookup(self, key_id: str, *, deadline: float | None = None) -> KeyVersion:
        """The version a well-formed key_id names; UnknownKeyId after at most one refresh.

        An unknown key_id may be a version rotated in since the last probe (another
        control-plane node saw it first), so one metadata read is allowed per probe interval,
        shared by every caller that waits for it: a burst of bogus key_ids cannot become a
        burst of OpenBao reads. The read only *adds* versions for Decrypt; health and the
        active key stay the probe thread's to decide, which it is woken to do.
        """
        found = self._snapshot.versions.get(key_id)
        if found is not None:
            return found
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
            if now - self._last_unknown_refresh >= self._probe_interval:
                self._refresh_versions(now, deadline)
                found = self._snapshot.versions.get(key_id)
                if found is not None:
                    return found
            elif self._refresh_error is not None:
                # The last refresh could not reach OpenBao: "unknown" is not established.
                raise type(self._refresh_error)(str(self._refresh_error))
        finally:
            self._refresh_lock.release()
        raise UnknownKeyId("key_id does not name a key version this provider knows")

    def _refresh_versions(self, now: float, deadline: float | None) -> None:
        """Read the key once (caller holds the refresh lock) and merge new versions.

        The attempt uses up this interval's refresh whatever happens, so a slow OpenBao cannot
        be asked once per waiting caller; while the outcome is unknown, callers get the
        failure (UNAVAILABLE) rather than NOT_FOUND.
        """
        self._last_unknown_refresh = now
        try:
            key = self._transit.read_key(deadline=deadline)
        except DeadlineExceeded:
            self._refresh_error = OpenBaoUnavailable("OpenBao did not answer a key refresh in time")
            raise
        except KmsError as error:
            self._refresh_error = error
            raise
        self._refresh_error = None
        if self._adopt_versions(key):
            self._wake.set()  # a new version: let the probes judge it (and maybe promote it)

    def _adopt_versions(self, key: KeyMetadata) -> bool:
        """Add decryptable versions not yet known, if the lineage agrees; True if any.

        The same lineage as the metadata probe, so which path sees a version first never
        changes the verdict; while a lineage problem stands, nothing new is adopted.
        """
        with self._publish_lock:
            snap = self._snapshot
            if self._lineage.observe(key) or KEY_LINEAGE.intersection(snap.metadata_problems):
                return False
            by_version = merge_versions(snap.versions, key, self._identity)
            if len(by_version) == len(snap.versions):
                return False
            self._snapshot = dataclasses.replace(snap, versions=_by_key_id(by_version))
            return True

    # --- probes ---------------------------------------------------------------------------------

    def probe_metadata(self) -> bool:
        """Read key metadata and publish; True when the active key_id changed."""
        with self._probe_lock:  # one probe at a time, so results publish in the order read
            return self._probe_metadata()

    def _probe_metadata(self) -> bool:
        try:
            key = self._transit.read_key()
            disable_upsert = self._transit.read_keys_config()
        except KmsError as error:
            reason = failure_reason(error, Reason.METADATA_READ_FAILED)
            self._publish(metadata_problems=(reason,))
            return False
        with self._publish_lock:
            lineage_problems = self._lineage.observe(key)
            problems = key_profile_problems(key, disable_upsert) + lineage_problems
            snap = self._snapshot
            active, versions = snap.active, snap.versions
            if not lineage_problems:  # a rewritten history adopts nothing and promotes nothing
                by_version = merge_versions(versions, key, self._identity)
                versions = _by_key_id(by_version)
                if not problems:
                    active = by_version.get(key.latest_version, active)
            changed = active is not None and (
                snap.active is None or snap.active.key_id != active.key_id
            )
            self._snapshot = dataclasses.replace(
                snap,
                active=active,
                versions=versions,
                metadata_at=self._clock(),
                metadata_problems=tuple(problems),
            )
        self._log_health()
        return changed

    def probe_deep(self) -> None:
        """Round-trip random bytes through Transit at the active version with its AAD."""
        active = self._snapshot.active
        if active is None:
            return
        try:
            plaintext = self._random_bytes(DEEP_PROBE_BYTES)
            ciphertext = self._transit.encrypt(plaintext, active.version, active.associated_data)
            if self._transit.decrypt(ciphertext, active.associated_data) != plaintext:
                raise OpenBaoUnavailable("deep probe round trip returned other bytes")
        except KmsError as error:
            reason = failure_reason(error, Reason.DEEP_PROBE_FAILED)
            self._publish(deep_key_id="", deep_problem=reason)
        else:
            self._publish(deep_key_id=active.key_id, deep_problem=Reason.DEEP_PROBE_PENDING)
        self._log_health()

    def _publish(self, **changes: Any) -> None:
        with self._publish_lock:
            self._snapshot = dataclasses.replace(self._snapshot, **changes)

    def _log_health(self) -> None:
        health = self.health()
        if health.healthz != self._last_healthz:
            self._last_healthz = health.healthz
            if health.ok:
                log.info("status healthy", extra={"key_id": health.key_id})
            elif STARTING.issuperset(health.reasons):
                log.info("status starting", extra={"reasons": list(health.reasons)})
            else:
                log.warning("status unhealthy", extra={"reasons": list(health.reasons)})

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
                self._wake.clear()
                next_metadata = next_deep = now
            try:
                next_metadata, next_deep = self._tick(now, next_metadata, next_deep)
            except Exception as error:  # noqa: BLE001 - a bug must not end the probes
                # Fail closed at once (not only after maxStaleness) and keep probing: the next
                # round may well succeed, and a dead probe thread would never recover.
                log.error(
                    "probe failed with a bug",
                    extra={
                        "error_type": type(error).__name__,
                        "stack": "".join(traceback.format_tb(error.__traceback__)),
                    },
                )
                self._publish(metadata_problems=(Reason.PROBE_FAILED,), deep_key_id="")
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


def _by_key_id(by_version: Mapping[int, KeyVersion]) -> Mapping[str, KeyVersion]:
    return MappingProxyType({version.key_id: version for version in by_version.values()})
