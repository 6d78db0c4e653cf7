"""Request-path feedback, capability naming and transition logs of the status monitor.

The monitor runs against a scripted Transit (typed as :class:`ProbeTransit`); the real thing is
in ``tests/integration/test_health_feedback.py``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from _support import SAFE_KEY, FakeClock
from _support.scripted_transit import IDENTITY, ScriptedTransit, monitor_on
from bao_kms.errors import (
    CiphertextAuthenticationFailed,
    KeyIdNotChecked,
    NotReady,
    OpenBaoUnavailable,
    UnknownKeyId,
)
from bao_kms.openbao.answers import Answer
from bao_kms.reasons import Reason
from bao_kms.status import StatusMonitor
from bao_kms.status.feedback import ReportingTransit


@pytest.fixture
def transit() -> ScriptedTransit:
    return ScriptedTransit()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def monitor(transit: ScriptedTransit, clock: FakeClock) -> StatusMonitor:
    return monitor_on(transit, clock)


@pytest.fixture
def healthy(monitor: StatusMonitor) -> StatusMonitor:
    monitor.probe_metadata()
    monitor.probe_deep()
    assert monitor.health().ok
    monitor._wake.clear()
    return monitor


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def lines() -> Iterator[list[logging.LogRecord]]:
    """What the monitor logs (its own handler: the package logger may not propagate)."""
    logger = logging.getLogger("bao_kms.status")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def denied(status: str = "403") -> Exception:
    return Answer.PERMISSION_DENIED.error_for(f"OpenBao denied permission (HTTP {status})")


# --- what a request meets wakes the probes ----------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        denied(),
        Answer.TOKEN_REJECTED.error_for("403"),
        Answer.KEY_VERSION_REJECTED.error_for("400"),
        Answer.NOT_FOUND.error_for("404"),
        Answer.SEALED.error_for("503"),
        Answer.CONNECTION_FAILED.error_for("down"),
    ],
    ids=lambda error: error.error_class,
)
def test_failures_that_say_something_about_health_wake_the_probes(healthy, error):
    healthy.notice(error)
    assert healthy._wake.is_set()


@pytest.mark.parametrize(
    "error",
    [
        CiphertextAuthenticationFailed("tampered"),  # the caller's ciphertext, not our health
        Answer.RATE_LIMITED.error_for("429"),  # probing would add to the load
        UnknownKeyId("unknown"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_other_failures_do_not(healthy, error):
    healthy.notice(error)
    assert not healthy._wake.is_set()


def test_a_success_wakes_only_while_openbao_is_in_trouble(healthy, transit):
    healthy.notice(None)
    assert not healthy._wake.is_set()  # healthy: a success is no news
    transit.decrypt_failure = denied()
    healthy.probe_deep()
    transit.decrypt_failure = None
    healthy.notice(None)
    assert healthy._wake.is_set()  # the policy came back: confirm at once


def test_reporting_transit_reports_each_outcome(transit):
    seen: list[BaseException | None] = []
    reporting = ReportingTransit(transit, seen.append)
    ciphertext = reporting.encrypt(b"k" * 32, 1, "aad")
    transit.decrypt_failure = denied()
    with pytest.raises(type(transit.decrypt_failure)):
        reporting.decrypt(ciphertext, "aad")
    assert seen == [None, transit.decrypt_failure]


def test_a_storm_costs_at_most_one_probe_round_per_second(transit):
    monitor = StatusMonitor(
        transit, IDENTITY, probe_interval=30, deep_probe_interval=300, max_staleness=120
    )
    monitor.start()
    try:
        deadline = time.monotonic() + 5
        while not monitor.health().ok and time.monotonic() < deadline:
            time.sleep(0.01)
        assert monitor.health().ok
        before = transit.calls["read_key"]
        stop = time.monotonic() + 2.5
        while time.monotonic() < stop:  # thousands of failing requests
            monitor.notice(denied())
        rounds = transit.calls["read_key"] - before
        assert 1 <= rounds <= 4  # the first at once, then no more than one per second
    finally:
        monitor.stop()


# --- the deep probe names the capability that failed -------------------------------------------


def test_decrypt_revoked_names_decrypt(healthy, transit):
    transit.decrypt_failure = denied()
    healthy.probe_deep()
    health = healthy.health()
    assert health.healthz == "openbao_permission_denied,deep_probe_decrypt_failed"
    assert healthy.snapshot.error_class == "permission_denied"
    with pytest.raises(NotReady) as refused:
        healthy.encrypt_version()
    assert refused.value.reasons == health.reasons


def test_encrypt_refused_names_encrypt(healthy, transit):
    transit.encrypt_failure = Answer.KEY_VERSION_REJECTED.error_for("400")
    healthy.probe_deep()
    assert healthy.health().healthz == "deep_probe_encrypt_failed"
    assert healthy.snapshot.error_class == "key_version_rejected"


def test_round_trip_with_other_bytes_is_a_decrypt_failure(healthy, transit):
    transit.decrypt = lambda ciphertext, aad, deadline=None: b"other"  # type: ignore[method-assign]
    healthy.probe_deep()
    assert healthy.health().healthz == "deep_probe_decrypt_failed"


def test_an_active_version_below_min_encryption_version_is_unhealthy(healthy, transit):
    # v2 exists and min_encryption_version says 2, but the key breaks the profile, so v2 is
    # not promoted: Encrypt at v1 would be refused by Transit
    transit.key = dataclasses.replace(
        SAFE_KEY,
        latest_version=2,
        versions={1: 1_700_000_000, 2: 1_700_000_100},
        min_encryption_version=2,
        deletion_allowed=True,
    )
    healthy.probe_metadata()
    assert Reason.KEY_ACTIVE_VERSION_BELOW_MIN_ENCRYPTION in healthy.health().reasons


# --- lookups never answer NOT_FOUND for what they did not check ----------------------------------


def test_a_rate_limited_lookup_is_not_a_definite_answer(healthy, transit, clock):
    unknown = IDENTITY.key_version(7, 1).key_id
    with pytest.raises(UnknownKeyId):
        healthy.lookup(unknown)
    other = IDENTITY.key_version(8, 1).key_id
    with pytest.raises(KeyIdNotChecked):  # UNAVAILABLE: retry, never NOT_FOUND unchecked
        healthy.lookup(other)
    clock.advance(31)
    with pytest.raises(UnknownKeyId):
        healthy.lookup(other)


def test_a_failed_lookup_wakes_the_probes(healthy, transit):
    transit.read_failure = Answer.TOKEN_REJECTED.error_for("403")
    with pytest.raises(type(transit.read_failure)) as info:
        healthy.lookup(IDENTITY.key_version(7, 1).key_id)
    assert info.value.reason == "openbao_token_rejected"
    assert healthy._wake.is_set()


# --- every health transition is logged once ---------------------------------------------------


def test_transitions_are_logged_once_each(monitor, transit, lines):
    transit.read_failure = Answer.CONNECTION_FAILED.error_for("cannot connect to OpenBao")
    for _ in range(3):
        monitor.probe_metadata()  # the same failure, three rounds: one line
    transit.read_failure = None
    monitor.probe_metadata()
    monitor.probe_deep()
    monitor.probe_deep()
    events = [(record.levelname, record.__dict__.get("event")) for record in lines]
    assert events == [
        ("WARNING", "status_unhealthy"),
        ("INFO", "status_starting"),  # metadata back, the round trip still to run
        ("INFO", "status_healthy"),
    ]
    bad, _, good = lines
    assert bad.__dict__["reasons"] == ["openbao_unavailable"]
    assert bad.__dict__["error_class"] == "connection_failed"
    assert len(good.__dict__["key_id_hash"]) == 12 and "key_id" not in good.__dict__


def test_a_bug_in_a_probe_is_logged_as_a_transition(transit, lines):
    monitor = StatusMonitor(
        transit,
        IDENTITY,
        probe_interval=0.05,
        deep_probe_interval=0.1,
        max_staleness=60,
        retry_interval=0.05,
    )
    transit.read_failure = ZeroDivisionError("a bug")
    monitor.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if any(r.__dict__.get("event") == "status_unhealthy" for r in list(lines)):
                break
            threading.Event().wait(0.02)
    finally:
        monitor.stop()
    unhealthy = [r for r in lines if r.__dict__.get("event") == "status_unhealthy"]
    assert unhealthy and unhealthy[0].__dict__["reasons"][0] == "probe_failed"


def test_unavailable_refresh_is_reported_as_such(healthy, transit):
    transit.read_failure = OpenBaoUnavailable("down")
    with pytest.raises(OpenBaoUnavailable):
        healthy.lookup(IDENTITY.key_version(9, 1).key_id)
