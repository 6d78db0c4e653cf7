"""StatusMonitor with a scripted Transit and a manual clock: health rules, lineage, lookups.

The scripted Transit is typed against :class:`ProbeTransit`, the protocol the monitor depends
on: mypy checks the fake's signatures where the fixture hands it over, and a test checks it
at run time.
"""

from __future__ import annotations

import dataclasses
import threading

import pytest

from _support import SAFE_KEY, FakeClock
from _support.scripted_transit import IDENTITY, ScriptedTransit, monitor_on
from bao_kms.errors import (
    DeadlineExceeded,
    KeyIdNotChecked,
    NotReady,
    OpenBaoBadResponse,
    OpenBaoPermissionDenied,
    OpenBaoSealed,
    OpenBaoUnavailable,
    UnknownKeyId,
)
from bao_kms.openbao.protocols import ProbeTransit
from bao_kms.reasons import Reason
from bao_kms.status import StatusMonitor


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transit() -> ScriptedTransit:
    return ScriptedTransit()


@pytest.fixture
def monitor(transit: ScriptedTransit, clock: FakeClock) -> StatusMonitor:
    return monitor_on(transit, clock)


def test_the_scripted_transit_is_a_probe_transit(transit: ScriptedTransit) -> None:
    assert isinstance(transit, ProbeTransit)


def rotate(transit: ScriptedTransit, version: int, created: int) -> None:
    versions = dict(transit.key.versions)
    versions[version] = created
    transit.key = dataclasses.replace(transit.key, latest_version=version, versions=versions)


def test_unhealthy_until_both_probes_pass(monitor):
    assert monitor.health().healthz == "not_probed_yet"
    monitor.probe_metadata()
    assert monitor.health().healthz == "deep_probe_pending"
    assert monitor.health().key_id == ""
    monitor.probe_deep()
    health = monitor.health()
    assert health.ok and health.healthz == "ok"
    assert health.key_id == IDENTITY.key_version(1, 1_700_000_000).key_id


def test_staleness_is_judged_when_status_is_read(monitor, clock):
    monitor.probe_metadata()
    monitor.probe_deep()
    clock.now += 119
    assert monitor.health().ok
    clock.now += 2
    health = monitor.health()
    assert health.reasons == (Reason.STATUS_STALE,) and health.key_id == ""
    with pytest.raises(NotReady):
        monitor.encrypt_version()


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (OpenBaoSealed("sealed"), Reason.OPENBAO_SEALED),
        (OpenBaoUnavailable("down"), Reason.OPENBAO_UNAVAILABLE),
        (OpenBaoPermissionDenied("no"), Reason.OPENBAO_PERMISSION_DENIED),
        (OpenBaoBadResponse("junk"), Reason.METADATA_READ_FAILED),
    ],
)
def test_metadata_failure_reasons(monitor, transit, failure, reason):
    monitor.probe_metadata()
    monitor.probe_deep()
    transit.read_failure = failure
    monitor.probe_metadata()
    assert monitor.health().healthz == reason
    with pytest.raises(NotReady, match=reason):
        monitor.encrypt_version()


def test_reads_survive_a_metadata_outage(monitor, transit):
    monitor.probe_metadata()
    key_id = IDENTITY.key_version(1, 1_700_000_000).key_id
    transit.read_failure = OpenBaoUnavailable("down")
    monitor.probe_metadata()
    assert monitor.lookup(key_id).version == 1


def test_deep_probe_failure_is_unhealthy(monitor, transit):
    monitor.probe_metadata()
    transit.encrypt_failure = OpenBaoUnavailable("down")
    monitor.probe_deep()
    assert monitor.health().healthz == "openbao_unavailable"
    transit.encrypt_failure = None
    monitor.probe_deep()
    assert monitor.health().ok


def test_deep_probe_that_returns_other_bytes_is_unhealthy(monitor, transit):
    monitor.probe_metadata()
    transit.decrypt = lambda ciphertext, aad, deadline=None: b"other"
    monitor.probe_deep()
    assert not monitor.health().ok


def test_profile_problems_are_reasons(monitor, transit):
    transit.key = dataclasses.replace(SAFE_KEY, exportable=True, deletion_allowed=True)
    transit.disable_upsert = False
    monitor.probe_metadata()
    expected = {Reason.KEY_EXPORTABLE, Reason.KEY_DELETION_ALLOWED, Reason.MOUNT_UPSERT_ENABLED}
    assert expected <= set(monitor.health().reasons)


def test_rotation_switches_the_active_key_only_after_a_deep_probe_at_it(monitor, transit):
    monitor.probe_metadata()
    monitor.probe_deep()
    old = monitor.health().key_id
    rotate(transit, 2, 1_700_000_500)
    assert monitor.probe_metadata() is True  # a pending version to prove: deep probe now
    assert monitor.health().key_id == old  # still healthy, still the old key_id
    monitor.probe_deep()
    new = monitor.health().key_id
    assert new != old and monitor.encrypt_version().version == 2
    assert monitor.lookup(old).version == 1  # the old version still decrypts
    assert monitor.probe_metadata() is False


def test_recreated_key_fails_closed(monitor, transit):
    """Same name, new key material: version 1 now has another creation time."""
    monitor.probe_metadata()
    monitor.probe_deep()
    old_id = monitor.health().key_id
    transit.key = dataclasses.replace(SAFE_KEY, versions={1: 1_800_000_000})
    monitor.probe_metadata()
    health = monitor.health()
    assert Reason.KEY_LINEAGE_VERSION_CREATED_CHANGED in health.reasons
    assert health.key_id == ""
    new_id = IDENTITY.key_version(1, 1_800_000_000).key_id
    with pytest.raises(UnknownKeyId):
        monitor.lookup(new_id)
    assert monitor.lookup(old_id).created_unix == 1_700_000_000


def test_latest_version_going_backwards_fails_closed(monitor, transit):
    rotate(transit, 2, 1_700_000_500)
    monitor.probe_metadata()
    transit.key = SAFE_KEY
    monitor.probe_metadata()
    assert Reason.KEY_LINEAGE_LATEST_VERSION_DECREASED in monitor.health().reasons


def test_versions_below_min_decryption_are_not_accepted(monitor, transit):
    transit.key = dataclasses.replace(
        SAFE_KEY,
        latest_version=3,
        min_decryption_version=2,
        versions={1: 1_700_000_000, 2: 1_700_000_100, 3: 1_700_000_200},
    )
    monitor.probe_metadata()
    assert sorted(v.version for v in monitor.snapshot.versions.values()) == [2, 3]


def test_unknown_key_id_refreshes_once_per_probe_interval(monitor, transit, clock):
    monitor.probe_metadata()
    transit.calls.clear()
    unknown = IDENTITY.key_version(7, 1).key_id
    with pytest.raises(UnknownKeyId):  # a read that began after the call looked: definite
        monitor.lookup(unknown)
    for _ in range(4):
        # rate-limited: nothing looked for this call, so no definite NOT_FOUND (UNAVAILABLE)
        with pytest.raises(KeyIdNotChecked):
            monitor.lookup(unknown)
    assert transit.calls["read_key"] == 1
    clock.now += 31
    with pytest.raises(UnknownKeyId):
        monitor.lookup(unknown)
    assert transit.calls["read_key"] == 2


def test_unknown_key_id_refresh_finds_a_fresh_rotation(monitor, transit):
    monitor.probe_metadata()
    rotate(transit, 2, 1_700_000_900)
    fresh = IDENTITY.key_version(2, 1_700_000_900).key_id
    assert monitor.lookup(fresh).version == 2


def test_concurrent_unknown_lookups_share_one_refresh(monitor, transit):
    monitor.probe_metadata()
    transit.calls.clear()
    transit.gate = threading.Event()
    unknown = IDENTITY.key_version(9, 1).key_id
    outcomes = []
    arrived = threading.Barrier(21)

    def look() -> None:
        arrived.wait(5)
        try:
            monitor.lookup(unknown)
        except UnknownKeyId:
            outcomes.append("not_found")

    threads = [threading.Thread(target=look) for _ in range(20)]
    for thread in threads:
        thread.start()
    arrived.wait(5)
    # every caller is at (or inside) lookup before OpenBao "answers"
    for _ in range(100):
        if transit.calls["read_key"]:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)
    transit.gate.set()
    for thread in threads:
        thread.join(5)
    assert outcomes == ["not_found"] * 20
    assert transit.calls["read_key"] == 1


def test_rotation_learned_through_a_lookup_keeps_status_and_wakes_the_probes(monitor, transit):
    monitor.probe_metadata()
    monitor.probe_deep()
    old = monitor.health().key_id
    rotate(transit, 2, 1_700_000_900)
    fresh = IDENTITY.key_version(2, 1_700_000_900).key_id
    assert monitor.lookup(fresh).version == 2  # decryptable at once
    health = monitor.health()
    assert health.ok and health.key_id == old  # Status/Encrypt unchanged until the probes run
    assert monitor._wake.is_set()
    assert monitor.probe_metadata() is True
    monitor.probe_deep()
    assert monitor.health().key_id == fresh


def test_a_failed_refresh_is_unavailable_not_not_found(monitor, transit, clock):
    monitor.probe_metadata()
    monitor.probe_deep()
    transit.read_failure = OpenBaoUnavailable("down")
    unknown = IDENTITY.key_version(7, 1).key_id
    with pytest.raises(OpenBaoUnavailable):
        monitor.lookup(unknown)
    with pytest.raises(OpenBaoUnavailable):  # within the interval: still not established
        monitor.lookup(unknown)
    assert transit.calls["read_key"] == 2  # the probe's, and one refresh
    assert monitor.health().ok  # a request-path refresh never flips Status
    transit.read_failure = None
    clock.now += 31
    with pytest.raises(UnknownKeyId):
        monitor.lookup(unknown)


def test_refresh_uses_the_callers_deadline(monitor, transit, clock):
    monitor.probe_metadata()
    seen = []
    original = transit.read_key

    def read_key(*, deadline=None):
        seen.append(deadline)
        return original(deadline=deadline)

    transit.read_key = read_key
    with pytest.raises(UnknownKeyId):
        monitor.lookup(IDENTITY.key_version(7, 1).key_id, deadline=clock.now + 2.5)
    assert seen == [clock.now + 2.5]
    with pytest.raises(DeadlineExceeded):
        monitor.lookup(IDENTITY.key_version(8, 1).key_id, deadline=clock.now - 1)


def test_refresh_never_adopts_recreated_key_material(monitor, transit, clock):
    """Deleted and re-created under the same name: v1 has a new creation time and a new v2
    appears. Neither may be adopted through a lookup, even though v2 is a new number."""
    monitor.probe_metadata()
    transit.key = dataclasses.replace(
        SAFE_KEY, latest_version=2, versions={1: 1_800_000_000, 2: 1_800_000_100}
    )
    new_v2 = IDENTITY.key_version(2, 1_800_000_100).key_id
    with pytest.raises(UnknownKeyId):
        monitor.lookup(new_v2)


def test_a_rollback_after_a_lookup_learned_a_version_fails_closed(monitor, transit, clock):
    """Whichever path sees v2 first, latest_version going back to 1 is a lineage problem."""
    monitor.probe_metadata()
    monitor.probe_deep()
    rotate(transit, 2, 1_700_000_500)
    monitor.lookup(IDENTITY.key_version(2, 1_700_000_500).key_id)  # learned via Decrypt
    transit.key = SAFE_KEY  # restored to an older state
    monitor.probe_metadata()
    assert Reason.KEY_LINEAGE_LATEST_VERSION_DECREASED in monitor.health().reasons


def test_nothing_is_adopted_while_a_lineage_problem_stands(monitor, transit, clock):
    monitor.probe_metadata()
    transit.key = dataclasses.replace(SAFE_KEY, versions={1: 1_800_000_000})
    monitor.probe_metadata()  # flags key_lineage_version_created_changed
    transit.key = dataclasses.replace(
        SAFE_KEY, latest_version=2, versions={1: 1_700_000_000, 2: 1_700_000_100}
    )
    with pytest.raises(UnknownKeyId):
        monitor.lookup(IDENTITY.key_version(2, 1_700_000_100).key_id)


def test_a_refresh_that_times_out_still_uses_up_the_interval(monitor, transit, clock):
    monitor.probe_metadata()
    transit.calls.clear()
    transit.read_failure = DeadlineExceeded("slow")
    with pytest.raises(DeadlineExceeded):
        monitor.lookup(IDENTITY.key_version(7, 1).key_id, deadline=clock.now + 1)
    with pytest.raises(OpenBaoUnavailable):  # not NOT_FOUND: unknown is not established
        monitor.lookup(IDENTITY.key_version(8, 1).key_id, deadline=clock.now + 1)
    assert transit.calls["read_key"] == 1


def test_reasons_are_not_repeated(monitor, transit):
    monitor.probe_metadata()
    transit.read_failure = OpenBaoUnavailable("down")
    transit.encrypt_failure = OpenBaoUnavailable("down")
    monitor.probe_deep()
    monitor.probe_metadata()
    assert monitor.health().healthz == "openbao_unavailable"


def test_background_thread_probes_and_stops(transit):
    monitor = StatusMonitor(
        transit, IDENTITY, probe_interval=0.05, deep_probe_interval=0.1, max_staleness=5
    )
    monitor.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if monitor.health().ok:
                break
            deadline.wait(0.02)
        assert monitor.health().ok
    finally:
        monitor.stop()
    calls = transit.calls["read_key"]
    threading.Event().wait(0.2)
    assert transit.calls["read_key"] == calls  # stopped means stopped


def test_a_bug_in_a_probe_fails_closed_and_probing_goes_on(transit):
    monitor = StatusMonitor(
        transit,
        IDENTITY,
        probe_interval=0.05,
        deep_probe_interval=0.1,
        max_staleness=60,
        retry_interval=0.05,
    )
    monitor.start()
    try:
        for _ in range(200):
            if monitor.health().ok:
                break
            threading.Event().wait(0.01)
        assert monitor.health().ok
        transit.read_failure = ZeroDivisionError("a bug, not an OpenBao error")
        for _ in range(200):
            if Reason.PROBE_FAILED in monitor.health().reasons:
                break
            threading.Event().wait(0.01)
        assert monitor.health().reasons[0] == Reason.PROBE_FAILED
        assert monitor.health().key_id == ""
        transit.read_failure = None
        for _ in range(200):
            if monitor.health().ok:
                break
            threading.Event().wait(0.01)
        assert monitor.health().ok  # the thread survived and recovered
    finally:
        monitor.stop()
