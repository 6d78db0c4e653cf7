"""The circuit breaker: its state machine on a manual clock, and in front of a real transport."""

from __future__ import annotations

import pytest

from _support.fake_openbao import Reply
from bao_kms.errors import DeadlineExceeded, OpenBaoRejected, OpenBaoUnavailable
from bao_kms.openbao.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen


def test_opens_after_threshold_consecutive_failures(clock):
    breaker = CircuitBreaker(3, 5.0, clock=clock)
    for _ in range(2):
        breaker.before_request()
        breaker.record_failure()
    breaker.record_success()  # a success in between resets the count
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == CLOSED
    breaker.record_failure()
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_request()


def test_half_open_lets_exactly_one_trial_through(clock):
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.record_failure()
    clock.advance(4.9)
    with pytest.raises(CircuitOpen):
        breaker.before_request()
    clock.advance(0.1)
    breaker.before_request()  # the trial
    assert breaker.state == HALF_OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_request()  # everyone else still fails fast
    breaker.record_success()
    assert breaker.state == CLOSED
    breaker.before_request()


def test_failed_or_inconclusive_trial_reopens(clock):
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.record_failure()
    clock.advance(5)
    breaker.before_request()
    breaker.record_failure()
    assert breaker.state == OPEN
    clock.advance(5)
    breaker.before_request()
    breaker.record_inconclusive()  # the caller's deadline ended the trial
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen):
        breaker.before_request()


def test_circuit_open_is_unavailable():
    assert issubclass(CircuitOpen, OpenBaoUnavailable)


def test_transport_fails_fast_when_open_and_recovers(make_transport, fake, clock):
    breaker = CircuitBreaker(3, 5.0, clock=clock)
    transport = make_transport(fake.address, breaker=breaker, clock=clock)
    fake.reply(Reply(500))
    for _ in range(3):
        with pytest.raises(OpenBaoUnavailable):
            transport.request("GET", "transit/keys/kms")
    assert len(fake.requests) == 3
    with pytest.raises(CircuitOpen):
        transport.request("GET", "transit/keys/kms")
    assert len(fake.requests) == 3  # failed fast: nothing sent
    fake.reply(Reply(200, {"data": {}}))
    clock.advance(5)
    assert transport.request("GET", "transit/keys/kms") == b'{"data":{}}'
    assert breaker.state == CLOSED


def test_refusals_do_not_open_the_breaker(make_transport, fake, clock):
    breaker = CircuitBreaker(2, 5.0, clock=clock)
    transport = make_transport(fake.address, breaker=breaker, clock=clock)
    fake.reply(Reply(404))
    for _ in range(5):
        with pytest.raises(OpenBaoRejected):
            transport.request("GET", "transit/keys/kms")
    assert breaker.state == CLOSED


def test_deadline_does_not_count_as_a_failure(make_transport, fake, clock):
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    transport = make_transport(fake.address, breaker=breaker, clock=clock)
    with pytest.raises(DeadlineExceeded):
        transport.request("GET", "transit/keys/kms", deadline=clock() - 1)
    assert breaker.state == CLOSED


def test_a_trial_that_never_reports_back_is_replaced(clock):
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    breaker.record_failure()
    clock.advance(5)
    breaker.before_request()  # a trial whose outcome is lost
    with pytest.raises(CircuitOpen):
        breaker.before_request()
    clock.advance(breaker.trial_timeout)
    breaker.before_request()  # a new trial is allowed
    assert breaker.state == HALF_OPEN


def test_exempt_requests_pass_an_open_breaker_and_their_success_closes_it(
    make_transport, fake, clock
):
    breaker = CircuitBreaker(1, 60.0, clock=clock)
    transport = make_transport(fake.address, breaker=breaker, clock=clock)
    fake.reply(Reply(503, {"errors": ["Vault is sealed"]}))
    with pytest.raises(OpenBaoUnavailable):
        transport.request("GET", "transit/keys/kms")
    with pytest.raises(CircuitOpen):
        transport.request("GET", "transit/keys/kms")
    with pytest.raises(OpenBaoUnavailable) as info:  # the probe still sees the real state
        transport.request("GET", "transit/keys/kms", exempt_from_breaker=True)
    assert not isinstance(info.value, CircuitOpen)
    fake.reply(Reply(200, {"data": {}}))
    transport.request("GET", "transit/keys/kms", exempt_from_breaker=True)
    assert breaker.state == CLOSED  # recovery seen by a probe reopens the request path
    transport.request("GET", "transit/keys/kms")


def test_a_bug_during_a_trial_does_not_wedge_the_breaker(make_transport, fake, clock):
    breaker = CircuitBreaker(1, 5.0, clock=clock)
    transport = make_transport(fake.address, breaker=breaker, clock=clock)
    fake.reply(Reply(500))
    with pytest.raises(OpenBaoUnavailable):
        transport.request("GET", "transit/keys/kms")
    clock.advance(5)
    transport.auth.token = lambda: (_ for _ in ()).throw(ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):
        transport.request("GET", "transit/keys/kms")
    assert breaker.state == OPEN  # re-opened, and a later trial is allowed
