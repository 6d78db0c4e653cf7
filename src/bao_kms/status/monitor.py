"""Background probes of OpenBao and the snapshot that Status, Encrypt and Decrypt read.

Status is polled continually and must never wait on OpenBao, so all OpenBao traffic for health
happens here, on one background thread:

* the **metadata probe** (every ``probe_interval``) reads the Transit key and the mount's
  ``config/keys``, checks the key profile and the version lineage, and learns every version's
  creation time (hence its key_id);
* the **deep probe** (every ``deep_probe_interval`` and right after the active key changes)
  encrypts and decrypts 32 random bytes at the active version with its real AAD.

Results are published as one immutable :class:`Snapshot`, swapped atomically; readers never
lock. Health is evaluated at read time against the injected clock, so a probe thread that hangs
still turns Status unhealthy (``status_stale``) instead of freezing it at ``ok``.

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
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import (
    DeadlineExceeded,
    KmsError,
    NotReady,
    OpenBaoBadResponse,
    OpenBaoPermissionDenied,
    OpenBaoUnauthenticated,
    OpenBaoUnavailable,
    UnknownKeyId,
)
from ..identity import Identity, KeyVersion
from ..keys.profile import key_profile_problems
from ..openbao import KeyMetadata, TransitClient

log = logging.getLogger("bao_kms.status")

DEEP_PROBE_BYTES = 32
#: reasons that only mean "the first probes have not finished yet"
_STARTING = frozenset({"not_probed_yet", "deep_probe_pending"})


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
    metadata_problems: tuple[str, ...] = ("not_probed_yet",)
    #: the key_id the last successful deep probe covered ("" after a failure)
    deep_key_id: str = ""
    deep_problem: str = "deep_probe_pending"


@dataclass(frozen=True, slots=True)
class Health:
    """Status as kube-apiserver sees it, plus the reasons behind it."""

    ok: bool
    reasons: tuple[str, ...]
    key_id: str  # "" unless ok
    snapshot_age: float | None

    @property
    def healthz(self) -> str:
        return "ok" if self.ok else ",".join(self.reasons)


def failure_reason(error: BaseException, default: str) -> str:
    """A short reason word for a failed probe: OpenBao's state when we know it, else *default*."""
    if isinstance(error, OpenBaoBadResponse):
        return default  # OpenBao answered, but not with what the probe needs
    if isinstance(error, (OpenBaoUnavailable, OpenBaoUnauthenticated, OpenBaoPermissionDenied)):
        return error.reason  # openbao_sealed is a subclass's reason and survives here
    return default


class StatusMonitor:
    """Runs the probes, publishes snapshots, and answers health and key lookups from memory."""

    def __init__(
        self,
        transit: TransitClient,
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
        self._created: dict[int, int] = {}  # every version's creation time ever seen
        self._highest_latest = 0
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_healthz = ""

    # --- readers (request path: memory only) ---------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def health(self) -> Health:
        return self._evaluate(self._snapshot, self._clock())

    def _evaluate(self, snap: Snapshot, now: float) -> Health:
        reasons = list(snap.metadata_problems)
        if snap.active is not None and snap.deep_key_id != snap.active.key_id:
            reasons.append(snap.deep_problem)
        age = None if snap.metadata_at is None else now - snap.metadata_at
        if age is not None and age > self._max_staleness:
            reasons.append("status_stale")
        if snap.active is None and not reasons:
            reasons.append("no_active_key")
        if reasons or snap.active is None:
            return Health(False, tuple(dict.fromkeys(reasons)), "", age)
        return Health(True, (), snap.active.key_id, age)

    def encrypt_version(self) -> KeyVersion:
        """The version Encrypt must use; NotReady unless Status would say ``ok`` right now."""
        snap = self._snapshot
        health = self._evaluate(snap, self._clock())
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
        if self._merge_versions(key):
            self._wake.set()  # a new version: let the probes judge it (and maybe promote it)

    def _merge_versions(self, key: KeyMetadata) -> bool:
        """Add decryptable versions not yet known, if the lineage agrees; True if any.

        The same lineage rules as the metadata probe, so which path sees a version first never
        changes the verdict; while a lineage problem stands, nothing new is adopted.
        """
        with self._publish_lock:
            snap = self._snapshot
            if self._lineage_problems(key) or any(
                problem.startswith("key_lineage") for problem in snap.metadata_problems
            ):
                return False
            known = {version.version for version in snap.versions.values()}
            versions = dict(snap.versions)
            for version, created in key.versions.items():
                if version >= key.min_decryption_version and version not in known:
                    added = self._identity.key_version(version, created)
                    versions[added.key_id] = added
            if len(versions) == len(snap.versions):
                return False
            self._snapshot = dataclasses.replace(snap, versions=MappingProxyType(versions))
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
            self._publish(metadata_problems=(failure_reason(error, "metadata_read_failed"),))
            return False
        with self._publish_lock:
            problems = key_profile_problems(key, disable_upsert) + self._lineage_problems(key)
            snap = self._snapshot
            by_version = {known.version: known for known in snap.versions.values()}
            if not any(problem.startswith("key_lineage") for problem in problems):
                for version, created in key.versions.items():
                    if version >= key.min_decryption_version and version not in by_version:
                        by_version[version] = self._identity.key_version(version, created)
            active = snap.active
            if not problems:
                active = by_version.get(key.latest_version, active)
            changed = active is not None and (
                snap.active is None or snap.active.key_id != active.key_id
            )
            self._snapshot = dataclasses.replace(
                snap,
                active=active,
                versions=MappingProxyType({known.key_id: known for known in by_version.values()}),
                metadata_at=self._clock(),
                metadata_problems=tuple(problems),
            )
        self._log_health()
        return changed

    def _lineage_problems(self, key: KeyMetadata) -> list[str]:
        """Fail closed when history is rewritten: a key deleted and recreated under the same
        name gets new creation times and a lower latest_version; its old key_ids must not be
        re-pointed at new key material."""
        problems = []
        if key.latest_version < self._highest_latest:
            problems.append("key_lineage_latest_version_decreased")
        for version, created in key.versions.items():
            if self._created.setdefault(version, created) != created:
                problems.append("key_lineage_version_created_changed")
                break
        if not problems:
            self._highest_latest = max(self._highest_latest, key.latest_version)
        return problems

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
            self._publish(deep_key_id="", deep_problem=failure_reason(error, "deep_probe_failed"))
        else:
            self._publish(deep_key_id=active.key_id, deep_problem="deep_probe_pending")
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
            elif set(health.reasons) <= _STARTING:
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
                self._publish(metadata_problems=("probe_failed",), deep_key_id="")
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
