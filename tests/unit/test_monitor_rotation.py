"""StatusMonitor with a RotationTracker: how a rotation looks from Status, Encrypt and Decrypt.

A scripted Transit and a manual clock (both the monitor's and the tracker's), so the rules are
checked step by step: Status never goes unhealthy for a rotation, switches key_id once and only
after a round trip at the new version, and a registry that cannot be trusted never yields a
definite NOT_FOUND.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from _support import SAFE_KEY, FakeClock
from bao_kms.errors import KeyIdNotChecked, KeyVersionWithdrawn, NotReady, OpenBaoUnavailable
from bao_kms.identity import Identity
from bao_kms.keys.registry import FileRegistry, registry_scope
from bao_kms.keys.rotation import RotationPolicy, retire
from bao_kms.keys.tracker import RotationTracker
from bao_kms.openbao import KeyMetadata
from bao_kms.reasons import Reason
from bao_kms.status import StatusMonitor

IDENTITY = Identity("provider", "cluster", "instance", "", "mount", "lineage")
T0 = 1_700_000_000
FAST = RotationPolicy(1, 0)


class Transit:
    """Transit as the probes see it: a key to read and a round trip that may fail."""

    def __init__(self) -> None:
        self.key: KeyMetadata = SAFE_KEY
        self.fail_version: int | None = None
        self.encrypted_versions: list[int] = []

    def read_key(self, *, deadline: float | None = None) -> KeyMetadata:
        return self.key

    def read_keys_config(self, *, deadline: float | None = None) -> bool:
        return True

    def encrypt(
        self, plaintext: bytes, key_version: int, associated_data: str, *, deadline=None
    ) -> bytes:
        self.encrypted_versions.append(key_version)
        if key_version == self.fail_version:
            raise OpenBaoUnavailable("down")
        return b"vault:v%d:" % key_version + plaintext.hex().encode()

    def decrypt(
        self, ciphertext: bytes, associated_data: str, *, deadline=None, arrived=None
    ) -> bytes:
        return bytes.fromhex(ciphertext.split(b":", 2)[2].decode())

    def rotate(self, latest: int, **changes: int) -> None:
        versions = {v: T0 + 100 * (v - 1) for v in range(1, latest + 1)}
        self.key = dataclasses.replace(
            SAFE_KEY, latest_version=latest, versions=versions, **changes
        )


def key_id(version: int) -> str:
    return IDENTITY.key_version(version, T0 + 100 * (version - 1)).key_id


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_100_000)


@pytest.fixture
def transit() -> Transit:
    return Transit()


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "key-registry.json"


@pytest.fixture
def make(transit: Transit, clock: FakeClock, state_path: Path):
    def make_monitor(policy: RotationPolicy = FAST) -> StatusMonitor:
        registry = FileRegistry(state_path, registry_scope(IDENTITY), clock)
        tracker = RotationTracker(registry, IDENTITY, policy, clock)
        return StatusMonitor(
            transit,
            IDENTITY,
            probe_interval=30,
            deep_probe_interval=300,
            max_staleness=120,
            clock=clock,
            tracker=tracker,
        )

    return make_monitor


def probe_round(monitor: StatusMonitor) -> None:
    """What the probe thread does in one round: metadata, then a deep probe if due."""
    if monitor.probe_metadata():
        monitor.probe_deep()


def test_status_switches_once_after_the_stable_observations_and_the_delay(make, transit, clock):
    monitor = make(RotationPolicy(3, 60))
    probe_round(monitor)
    monitor.probe_deep()
    seen = [monitor.health().key_id]
    transit.rotate(2)
    for _ in range(6):
        probe_round(monitor)
        health = monitor.health()
        assert health.ok  # a rotation never makes Status unhealthy
        if health.key_id != seen[-1]:
            seen.append(health.key_id)
        clock.advance(30)
    assert seen == [key_id(1), key_id(2)]
    assert monitor.encrypt_version().key_id == key_id(2)
    assert monitor.lookup(key_id(1)).version == 1


def test_a_pending_version_decrypts_before_it_is_active(make, transit):
    monitor = make(RotationPolicy(3, 600))
    probe_round(monitor)
    monitor.probe_deep()
    transit.rotate(2)
    probe_round(monitor)
    assert monitor.known(key_id(2)).version == 2  # another node may already write with it
    assert monitor.health().key_id == key_id(1) == monitor.encrypt_version().key_id
    assert monitor.key_versions.state.promotion.observations == 1


def test_a_failed_round_trip_at_the_new_version_defers_the_promotion(make, transit):
    monitor = make()
    probe_round(monitor)
    monitor.probe_deep()
    transit.rotate(2)
    transit.fail_version = 2
    probe_round(monitor)
    assert monitor.health().ok and monitor.health().key_id == key_id(1)
    transit.fail_version = None
    probe_round(monitor)
    assert monitor.health().key_id == key_id(2)


def test_a_restart_never_flips_status_back(make, transit):
    first = make()
    probe_round(first)
    first.probe_deep()
    transit.rotate(2)
    probe_round(first)
    assert first.health().key_id == key_id(2)
    second = make()
    probe_round(second)
    second.probe_deep()
    assert second.health().key_id == key_id(2)


def test_encryption_blocked_refuses_encrypt_and_serves_decrypt(make, transit):
    monitor = make(RotationPolicy(3, 600))
    probe_round(monitor)
    monitor.probe_deep()
    transit.rotate(2, min_encryption_version=2)
    probe_round(monitor)
    assert Reason.ENCRYPTION_BLOCKED in monitor.health().reasons
    with pytest.raises(NotReady):
        monitor.encrypt_version()
    assert monitor.lookup(key_id(1)).version == 1


def test_a_withdrawn_version_is_refused_the_same_way_after_a_restart(make, transit, state_path):
    monitor = make()
    probe_round(monitor)
    monitor.probe_deep()
    transit.rotate(2)
    probe_round(monitor)
    cli = FileRegistry(state_path, registry_scope(IDENTITY), float)
    stored = cli.read()
    cli.save(retire(stored.state, 2)[0], stored)
    transit.rotate(2, min_decryption_version=2)
    transit.key = dataclasses.replace(transit.key, versions={2: transit.key.versions[2]})
    for node in (monitor, make()):
        probe_round(node)
        assert node.known(key_id(1)) is None
        with pytest.raises(KeyVersionWithdrawn):
            node.lookup(key_id(1))


def test_a_rotated_key_without_registry_fails_closed_and_never_says_not_found(make, transit):
    transit.rotate(3)
    monitor = make()
    probe_round(monitor)
    monitor.probe_deep()
    health = monitor.health()
    assert not health.ok and Reason.STATE_MISSING in health.reasons
    with pytest.raises(NotReady):
        monitor.encrypt_version()
    assert monitor.lookup(key_id(2)).version == 2  # live metadata still serves Decrypt
    with pytest.raises(KeyIdNotChecked):  # unknown, but not established without a registry
        monitor.lookup(IDENTITY.key_version(9, 1).key_id)
