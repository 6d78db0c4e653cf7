"""RotationTracker: the observer's rules kept in a registry, on a file and in memory.

The registry is a fixture (``file`` and ``memory``) wherever the rule is the same for both;
restarts are a second tracker over the same file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from _support import SAFE_KEY, FakeClock
from bao_kms.identity import Identity
from bao_kms.keys.registry import (
    FileRegistry,
    MemoryRegistry,
    StateWriteFailed,
    StoredState,
    registry_scope,
)
from bao_kms.keys.rotation import KeyState, RotationPolicy, VersionState, retire
from bao_kms.keys.tracker import RotationTracker
from bao_kms.openbao import KeyMetadata
from bao_kms.reasons import Reason

IDENTITY = Identity("provider", "cluster", "instance", "", "mount", "lineage")
T0 = 1_700_000_000
NOW = FakeClock(1_700_100_000)
FAST = RotationPolicy(1, 0)


def rotated(latest: int, **changes: int) -> KeyMetadata:
    low = changes.get("min_decryption_version", 1)  # OpenBao lists no version below it
    versions = {v: T0 + 100 * v for v in range(low, latest + 1)}
    return dataclasses.replace(SAFE_KEY, latest_version=latest, versions=versions, **changes)


def key_id(version: int) -> str:
    return IDENTITY.key_version(version, T0 + 100 * version).key_id


V1 = rotated(1)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "key-registry.json"


@pytest.fixture(params=["file", "memory"])
def registry(request: pytest.FixtureRequest, path: Path):
    if request.param == "memory":
        yield MemoryRegistry(NOW)
        return
    registry = FileRegistry(path, registry_scope(IDENTITY), NOW)
    registry.open()
    yield registry
    registry.close()


def tracker_on(registry, policy: RotationPolicy = FAST) -> RotationTracker:
    return RotationTracker(registry, IDENTITY, policy, NOW)


def restarted(path: Path, policy: RotationPolicy = FAST) -> RotationTracker:
    return tracker_on(FileRegistry(path, registry_scope(IDENTITY), NOW), policy)


def test_an_unrotated_key_bootstraps(registry):
    tracker = tracker_on(registry)
    view = tracker.observe(V1, settled=True)
    assert view.problems == () and view.trusted and view.generation == 1
    assert view.active.key_id == key_id(1) and list(view.decryptable) == [key_id(1)]
    assert view.persistent is registry.persistent


def test_a_rotation_is_pending_then_promoted_and_written_first(registry):
    tracker = tracker_on(registry)
    tracker.observe(V1, settled=True)
    view = tracker.observe(rotated(2), settled=True)
    assert view.active.key_id == key_id(1)  # Status keeps the old key_id for now
    assert key_id(2) in view.decryptable  # but the new version decrypts at once
    assert view.candidate.key_id == key_id(2)
    assert registry.load().state.versions[2].state is VersionState.PENDING
    promoted = tracker.promote(2)
    assert promoted.active.key_id == key_id(2) and promoted.candidate is None
    assert set(promoted.decryptable) == {key_id(1), key_id(2)}
    assert registry.load().state.active == 2
    assert tracker.promote(2) is promoted  # not pending any more: nothing happens


def test_an_unsettled_key_is_not_promoted(registry):
    tracker = tracker_on(registry)
    tracker.observe(V1, settled=True)
    assert tracker.observe(rotated(2), settled=False).candidate is None


def test_a_restart_during_pending_keeps_the_active_version(path):
    slow = RotationPolicy(3, 600)
    with_file = FileRegistry(path, registry_scope(IDENTITY), NOW)
    tracker = tracker_on(with_file, slow)
    tracker.observe(V1, settled=True)
    tracker.observe(rotated(2), settled=True)
    after = restarted(path, slow).observe(rotated(2), settled=True)
    assert after.active.key_id == key_id(1) and key_id(2) in after.decryptable
    assert after.state.promotion.observations == 2  # the count went on across the restart


def test_a_restart_after_promotion_keeps_the_new_version(path):
    tracker = restarted(path)
    tracker.observe(V1, settled=True)
    tracker.observe(rotated(2), settled=True)
    tracker.promote(2)
    again = restarted(path).observe(rotated(2), settled=True)
    assert again.active.key_id == key_id(2) and again.candidate is None


def test_a_rotated_key_without_a_registry_fails_closed_but_decrypts(path):
    view = restarted(path).observe(rotated(3), settled=True)
    assert view.problems == (Reason.STATE_MISSING,) and not view.trusted
    assert set(view.decryptable) == {key_id(1), key_id(2), key_id(3)}
    assert view.candidate is None and not path.exists()  # nothing guessed, nothing written


def test_memory_registry_trusts_live_metadata_at_start():
    view = tracker_on(MemoryRegistry(NOW)).observe(rotated(3), settled=True)
    assert view.problems == () and view.active.key_id == key_id(3) and not view.persistent


def test_a_deleted_registry_fails_closed_until_it_is_restored(path):
    tracker = restarted(path)
    tracker.observe(V1, settled=True)
    tracker.observe(rotated(2), settled=True)
    tracker.promote(2)
    saved = {p.name: p.read_bytes() for p in path.parent.iterdir() if "lock" not in p.name}
    path.unlink()
    view = tracker.observe(rotated(2), settled=True)
    assert Reason.STATE_MISSING in view.problems and not view.trusted
    assert key_id(1) in view.decryptable  # live metadata still lists v1
    for name, data in saved.items():  # copied back, as from a healthy peer
        (path.parent / name).write_bytes(data)
    back = tracker.observe(rotated(2), settled=True)
    assert back.problems == () and back.trusted and back.active.key_id == key_id(2)


def test_a_recreated_key_is_caught_after_a_restart(path):
    restarted(path).observe(V1, settled=True)
    recreated = dataclasses.replace(V1, versions={1: T0 + 5000})
    view = restarted(path).observe(recreated, settled=True)
    assert view.problems == (Reason.KEY_LINEAGE_VERSION_CREATED_CHANGED,)
    assert list(view.decryptable) == [key_id(1)]  # the old key_id, the old creation time


def test_a_rollback_is_caught_after_a_restart(path):
    tracker = restarted(path)
    tracker.observe(V1, settled=True)
    tracker.observe(rotated(2), settled=True)
    view = restarted(path).observe(V1, settled=True)
    assert view.problems == (Reason.KEY_LINEAGE_LATEST_VERSION_DECREASED,)


def test_withdrawn_versions_are_known_everywhere(path):
    tracker = restarted(path)
    tracker.observe(V1, settled=True)
    tracker.observe(rotated(2), settled=True)
    tracker.promote(2)
    cli = FileRegistry(path, registry_scope(IDENTITY), NOW)
    stored = cli.read()
    cli.save(retire(stored.state, 2)[0], stored)
    trimmed = rotated(2, min_decryption_version=2)
    after_restart = restarted(path).observe(trimmed, settled=True)
    for view in (tracker.observe(trimmed, settled=True), after_restart):
        assert view.problems == ()
        assert key_id(1) in view.withdrawn and key_id(1) not in view.decryptable


def test_a_lookup_adopts_and_writes_without_promoting(registry):
    tracker = tracker_on(registry, RotationPolicy(3, 600))
    tracker.observe(V1, settled=True)
    view, added = tracker.adopt(rotated(2))
    assert added and key_id(2) in view.decryptable and view.active.key_id == key_id(1)
    assert registry.load().state.versions[2].state is VersionState.PENDING
    assert registry.load().state.promotion is None
    assert tracker.adopt(rotated(2))[1] is False


class FailingWrites(MemoryRegistry):
    def __init__(self) -> None:
        super().__init__(NOW)
        self.fail = False

    def save(self, state: KeyState, expected: StoredState | None) -> StoredState:
        if self.fail:
            raise StateWriteFailed("cannot write the key registry: No space left on device")
        return super().save(state, expected)


def test_a_failed_write_adopts_and_promotes_nothing():
    registry = FailingWrites()
    tracker = tracker_on(registry)
    tracker.observe(V1, settled=True)
    registry.fail = True
    view = tracker.observe(rotated(2), settled=True)
    assert view.problems == (Reason.STATE_WRITE_FAILED,)
    assert key_id(2) not in view.decryptable and view.candidate is None
    registry.fail = False
    assert tracker.observe(rotated(2), settled=True).candidate is not None
