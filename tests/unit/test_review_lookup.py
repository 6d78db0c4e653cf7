"""Review findings in the unknown-key_id lookup: NOT_FOUND is a definite answer, so it is given
only when a refresh *established* that no such version exists.

Two ways the lookup answered NOT_FOUND without that:

* the refresh read the new version from OpenBao, but the key registry could not record it
  (disk full, another writer): the version exists, it just could not be adopted yet;
* a caller waiting for another caller's refresh, when that refresh died of a bug: nothing was
  checked at all.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from _support import SAFE_KEY, FakeClock
from bao_kms.errors import KeyIdNotChecked, UnknownKeyId
from bao_kms.identity import Identity
from bao_kms.keys.registry import MemoryRegistry, StateWriteFailed, StoredState
from bao_kms.keys.rotation import KeyState, RotationPolicy
from bao_kms.keys.tracker import RotationTracker
from bao_kms.openbao import KeyMetadata
from bao_kms.status import StatusMonitor

pytestmark = pytest.mark.timeout(30)
IDENTITY = Identity("provider", "cluster", "instance", "", "mount", "lineage")


class Transit:
    """Enough of Transit for the monitor: a key to read, round trips that work."""

    def __init__(self) -> None:
        self.key = SAFE_KEY
        self.read_failure: BaseException | None = None
        self.gate: threading.Event | None = None
        self.reading = threading.Event()

    def read_key(self, *, deadline: float | None = None) -> KeyMetadata:
        self.reading.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.read_failure is not None:
            raise self.read_failure
        return self.key

    def read_keys_config(self, *, deadline: float | None = None) -> bool:
        return True

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        return b"vault:v%d:" % key_version + plaintext.hex().encode()

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        return bytes.fromhex(ciphertext.split(b":", 2)[2].decode())


class FailingWrites(MemoryRegistry):
    def __init__(self) -> None:
        super().__init__(time.time)
        self.fail = False

    def save(self, state: KeyState, expected: StoredState | None) -> StoredState:
        if self.fail:
            raise StateWriteFailed("cannot write the key registry: No space left on device")
        return super().save(state, expected)


def rotated(transit: Transit, version: int, created: int) -> str:
    versions = dict(transit.key.versions)
    versions[version] = created
    transit.key = dataclasses.replace(transit.key, latest_version=version, versions=versions)
    return IDENTITY.key_version(version, created).key_id


def build(transit: Transit, registry: MemoryRegistry, clock: FakeClock) -> StatusMonitor:
    tracker = RotationTracker(registry, IDENTITY, RotationPolicy(1, 0), time.time)
    monitor = StatusMonitor(
        transit,
        IDENTITY,
        probe_interval=30,
        deep_probe_interval=300,
        max_staleness=120,
        clock=clock,
        tracker=tracker,
    )
    monitor.probe_metadata()
    monitor.probe_deep()
    assert monitor.health().ok
    return monitor


def test_a_version_read_but_not_recorded_is_not_not_found() -> None:
    transit, registry, clock = Transit(), FailingWrites(), FakeClock()
    monitor = build(transit, registry, clock)
    registry.fail = True
    fresh = rotated(transit, 2, 1_700_000_900)
    # OpenBao has this version: "unknown" is not established, so retry (UNAVAILABLE)
    with pytest.raises(KeyIdNotChecked):
        monitor.lookup(fresh)
    with pytest.raises(KeyIdNotChecked):  # within the interval: still not established
        monitor.lookup(fresh)
    registry.fail = False
    clock.advance(31)
    assert monitor.lookup(fresh).version == 2


def test_waiters_on_a_refresh_that_died_of_a_bug_do_not_get_not_found() -> None:
    transit, clock = Transit(), FakeClock()
    monitor = build(transit, MemoryRegistry(time.time), clock)
    unknown = IDENTITY.key_version(9, 1).key_id
    transit.gate = threading.Event()
    transit.reading.clear()
    transit.read_failure = RuntimeError("a bug in the read")
    outcomes: dict[str, BaseException] = {}

    def look(name: str) -> None:
        try:
            monitor.lookup(unknown)
        except BaseException as error:  # noqa: BLE001 - recorded for the assertions
            outcomes[name] = error

    first = threading.Thread(target=look, args=("first",))
    first.start()
    assert transit.reading.wait(5)  # the first caller is inside its refresh
    waiter = threading.Thread(target=look, args=("waiter",))
    waiter.start()
    threading.Event().wait(0.2)  # let the waiter reach the refresh lock
    transit.gate.set()
    first.join(5)
    waiter.join(5)
    assert isinstance(outcomes["first"], RuntimeError)  # the bug itself: INTERNAL
    assert not isinstance(outcomes["waiter"], UnknownKeyId)
    assert isinstance(outcomes["waiter"], KeyIdNotChecked)
