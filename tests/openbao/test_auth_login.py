"""LoginAuth on a fake clock: single-flight login, renewal at 2/3, re-login at max TTL, 403s,
backoff, and the stats /metrics reads. The real ``bao`` runs the same story in
tests/integration/test_auth_methods.py."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _support import FakeClock
from _support.fake_token_server import TokenServer
from _support.leaks import expect_error
from _support.log_records import records_of
from _support.pki import write_private
from bao_kms.errors import (
    AuthCredentialInvalid,
    AuthLoginRefused,
    ConfigError,
    OpenBaoUnavailable,
)
from bao_kms.openbao.auth import LoginAuth, LoginStatus, RenewalStatus
from bao_kms.openbao.auth.approle import AppRoleLogin
from bao_kms.openbao.auth.base import OpenBaoRequests
from bao_kms.openbao.auth.renewal import IDLE_WAKE

pytestmark = pytest.mark.timeout(30)

ROLE_ID = "role-TOPSECRET-1"
SECRET_ID = "secret-TOPSECRET-2"


class StubMethod:
    """A login method with no files: what LoginAuth does is under test, not the method."""

    name = "approle"
    label = "AppRole"

    def check(self) -> None:
        pass

    def login_request(self, openbao: OpenBaoRequests) -> tuple[str, dict[str, Any]]:
        return "auth/approle/login", {"role_id": "r", "secret_id": "s"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> TokenServer:
    return TokenServer(clock, ttl=30, max_ttl=50)


@pytest.fixture
def auth(server: TokenServer, clock: FakeClock) -> LoginAuth:
    """Started by hand: the calls are wired, the thread is not (tests call maintain())."""
    login = LoginAuth(StubMethod(), clock=clock, rng=lambda: 1.0)
    login.bind(server)
    return login


def run_for(auth: LoginAuth, clock: FakeClock, seconds: float, server: TokenServer) -> int:
    """Let the background work run on the fake clock; every moment a usable token is checked
    against the server. Returns how many times maintain() ran."""
    end = clock.now + seconds
    steps = 0
    while clock.now < end:
        delay = auth.maintain()
        steps += 1
        assert server.valid(auth.token()), f"token() gave a dead token at {clock.now}"
        clock.advance(min(delay, end - clock.now) or 0.001)
    return steps


def test_first_token_logs_in_once(auth: LoginAuth, server: TokenServer) -> None:
    token = auth.token()
    assert server.valid(token)
    assert auth.token() == token
    assert server.count("login") == 1
    assert auth.stats.logins()[LoginStatus.SUCCESS] == 1
    assert auth.stats.token_ttl() == 30


def test_concurrent_callers_share_one_login(auth: LoginAuth, server: TokenServer) -> None:
    server.login_delay = 0.2
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda: tokens.append(auth.token())) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(tokens)) == 1 and len(tokens) == 16
    assert server.count("login") == 1


def test_renews_at_two_thirds_of_the_ttl(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    token = auth.token()
    assert auth.maintain() == pytest.approx(20)
    clock.advance(19.9)
    auth.maintain()
    assert server.count("renew-self") == 0
    clock.advance(0.1)
    assert auth.maintain() == pytest.approx(20)
    assert server.count("renew-self") == 1
    assert auth.token() == token
    assert auth.stats.token_ttl() == 30
    assert auth.stats.renewals()[RenewalStatus.SUCCESS] == 1


def test_logs_in_again_when_a_renewal_hits_the_max_ttl(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    first = auth.token()
    clock.advance(20)
    auth.maintain()  # renewed to 50, the max: not yet visible as capped
    clock.advance(20)
    auth.maintain()  # renewal grants 10 < 30: capped, so a login right away
    second = auth.token()
    assert second != first
    assert server.valid(first)  # the old token still had 10 s when it was replaced
    assert auth.stats.renewals()[RenewalStatus.MAX_TTL] == 1
    assert server.count("login") == 2


def test_hours_of_lifetimes_never_hand_out_a_dead_token(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    run_for(auth, clock, 3600, server)
    logins = auth.stats.logins()[LoginStatus.SUCCESS]
    renewals = auth.stats.renewals()
    # a 50 s max TTL: one login per ~40 s, a renewal or two between
    assert 80 <= logins <= 100
    assert renewals[RenewalStatus.SUCCESS] >= logins - 1
    assert renewals[RenewalStatus.REFUSED] == renewals[RenewalStatus.UNAVAILABLE] == 0


def test_non_renewable_token_is_replaced_by_a_login(clock: FakeClock) -> None:
    server = TokenServer(clock, ttl=30, max_ttl=30, renewable=False)
    auth = LoginAuth(StubMethod(), clock=clock)
    auth.bind(server)
    # login answers renewable=True in the fake; a token lookup-free method trusts the login
    run_for(auth, clock, 600, server)
    assert server.count("login") >= 20


def test_revoked_token_is_replaced_on_the_next_403(auth: LoginAuth, server: TokenServer) -> None:
    token = auth.token()
    server.revoke(token)
    assert auth.refresh(token) is True
    assert auth.token() != token and server.valid(auth.token())
    assert server.count("lookup-self") == 1
    assert server.count("login") == 2


def test_a_policy_403_costs_one_lookup_and_no_login(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    token = auth.token()
    for _ in range(50):
        assert auth.refresh(token) is False  # the token is fine: the policy said no
    assert server.count("lookup-self") == 1
    clock.advance(1.0)
    assert auth.refresh(token) is False
    assert server.count("lookup-self") == 2
    assert server.count("login") == 1


def test_refresh_for_a_token_already_replaced_does_nothing(
    auth: LoginAuth, server: TokenServer
) -> None:
    old = auth.token()
    server.revoke(old)
    assert auth.refresh(old) is True
    calls = len(server.calls)
    assert auth.refresh(old) is True  # a second request that was refused with the old one
    assert len(server.calls) == calls


def test_refused_login_backs_off_and_reports_why(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    server.refuse_logins = 400
    error = expect_error(AuthLoginRefused, auth.token)
    assert str(error) == "OpenBao refused the AppRole login (HTTP 400)"
    # within the backoff: the same answer at once, nothing sent
    for _ in range(10):
        expect_error(AuthLoginRefused, auth.token)
    assert server.count("login") == 1
    assert auth.maintain() == pytest.approx(0.5)  # rng 1.0: the full first delay
    clock.advance(0.5)
    expect_error(AuthLoginRefused, auth.token)
    assert server.count("login") == 2
    assert auth.maintain() == pytest.approx(1.0)  # doubled
    server.refuse_logins = None
    clock.advance(1.0)
    assert server.valid(auth.token())
    logins = auth.stats.logins()
    assert logins[LoginStatus.REFUSED] == 2 and logins[LoginStatus.SUCCESS] == 1


def test_backoff_is_capped_and_jittered(server: TokenServer, clock: FakeClock) -> None:
    draws = iter([0.0, 1.0] * 50)
    auth = LoginAuth(StubMethod(), clock=clock, rng=lambda: next(draws))
    auth.bind(server)
    server.down = True
    delays = []
    for _ in range(14):
        delays.append(auth.maintain())
        clock.advance(delays[-1])
    # half to all of 0.5 * 2**n, capped at 2 s while OpenBao cannot be reached
    assert delays[:4] == pytest.approx([0.25, 1.0, 1.0, 2.0])
    assert max(delays) == pytest.approx(2.0)
    assert auth.stats.logins()[LoginStatus.UNAVAILABLE] == 14
    server.down = False
    server.refuse_logins = 400  # a refusal waits longer: someone must fix the credential
    for _ in range(10):
        delays.append(auth.maintain())
        clock.advance(delays[-1])
    assert max(delays) == pytest.approx(30.0)


def test_unreachable_openbao_at_login(auth: LoginAuth, server: TokenServer) -> None:
    server.down = True
    expect_error(OpenBaoUnavailable, auth.token)
    assert auth.stats.logins()[LoginStatus.UNAVAILABLE] == 1
    assert auth.stats.token_ttl() is None


def test_old_token_serves_while_a_relogin_fails(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    first = auth.token()
    clock.advance(20)
    auth.maintain()
    server.refuse_logins = 400
    clock.advance(20)
    auth.maintain()  # capped; the login is refused
    assert auth.token() == first
    clock.advance(9)  # 1 s left: within the last tenth, no longer sent
    expect_error(AuthLoginRefused, auth.token)


def test_failed_renewal_is_retried_before_the_token_dies(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    server.max_ttl = 300
    token = auth.token()
    clock.advance(20)
    server.down = True
    assert auth.maintain() == pytest.approx(0.5)
    clock.advance(0.5)
    auth.maintain()
    server.down = False
    clock.advance(1.0)
    auth.maintain()
    assert auth.token() == token and auth.stats.token_ttl() == 30
    assert auth.stats.renewals()[RenewalStatus.UNAVAILABLE] == 2


def test_renewal_refused_means_a_new_login(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    token = auth.token()
    server.revoke(token)
    clock.advance(20)
    auth.maintain()
    assert auth.token() != token
    assert auth.stats.renewals()[RenewalStatus.REFUSED] == 1


def test_expired_token_is_never_sent(
    auth: LoginAuth, server: TokenServer, clock: FakeClock
) -> None:
    token = auth.token()
    clock.advance(29.5)  # no maintain ran (a stalled thread): token() logs in itself
    assert auth.token() != token


def test_stats_ttl_counts_down_on_the_clock(auth: LoginAuth, clock: FakeClock) -> None:
    auth.token()
    clock.advance(12)
    assert auth.stats.token_ttl() == pytest.approx(18)
    clock.advance(100)
    assert auth.stats.token_ttl() == 0


def test_idle_without_expiry(clock: FakeClock) -> None:
    server = TokenServer(clock, ttl=0, max_ttl=0)
    auth = LoginAuth(StubMethod(), clock=clock)
    auth.bind(server)
    auth.token()
    assert auth.maintain() == IDLE_WAKE
    assert auth.stats.token_ttl() is None  # a number would mislead an alert
    assert math.isinf(auth._lease.expires_at)  # type: ignore[union-attr]


# --- with AppRole files -------------------------------------------------------------------------


def approle_files(tmp_path: Path) -> AppRoleLogin:
    return AppRoleLogin(
        "approle",
        write_private(tmp_path / "role-id", ROLE_ID + "\n"),
        write_private(tmp_path / "secret-id", SECRET_ID + "\n"),
    )


def test_files_are_read_for_every_login(tmp_path: Path, server: TokenServer, clock: FakeClock):
    auth = LoginAuth(approle_files(tmp_path), clock=clock)
    auth.start(server)
    try:
        auth.token()
        write_private(tmp_path / "secret-id", "secret-rotated-3\n")
        server.revoke(auth.token())
        auth.refresh(auth.token())
        auth.token()
    finally:
        auth.stop()
    assert [body["secret_id"] for body in server.login_bodies][-1] == "secret-rotated-3"
    assert server.login_bodies[0] == {"role_id": ROLE_ID, "secret_id": SECRET_ID}


def test_bad_file_at_start_is_a_config_error_naming_key_and_path(
    tmp_path: Path, server: TokenServer
) -> None:
    method = approle_files(tmp_path)
    (tmp_path / "secret-id").chmod(0o644)
    with pytest.raises(ConfigError) as info:
        LoginAuth(method).start(server)
    message = str(info.value)
    assert message.startswith(f"auth.approle.secretIdFile {tmp_path / 'secret-id'}: ")
    assert "readable or writable by other users (mode 0644)" in message
    assert SECRET_ID not in message


def test_bad_file_at_run_time_is_a_status_reason_without_the_path(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    auth = LoginAuth(approle_files(tmp_path), clock=clock)
    auth.bind(server)
    (tmp_path / "role-id").unlink()
    with records_of("bao_kms.openbao.auth") as records:
        error = expect_error(AuthCredentialInvalid, auth.token, secrets=(SECRET_ID, str(tmp_path)))
    assert str(error) == "AppRole role ID file does not exist"
    assert error.reason == "auth_credential_invalid"
    assert auth.stats.logins()[LoginStatus.INVALID_CREDENTIAL] == 1
    paths = [getattr(record, "path", None) for record in records]
    assert str(tmp_path / "role-id") in paths  # the operator learns which file
    assert server.count("login") == 0


def test_thread_keeps_the_token_alive_in_real_time(tmp_path: Path, clock: FakeClock) -> None:
    """start() runs maintain() on a thread; with a 1 s TTL it renews and re-logs in."""
    server = TokenServer(time.monotonic, ttl=1.0, max_ttl=2.5)
    auth = LoginAuth(approle_files(tmp_path))
    auth.start(server)
    try:
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            assert server.valid(auth.token())
            time.sleep(0.01)
    finally:
        auth.stop()
    # a re-login every ~2 s (the 2.5 s max TTL), renewals at 2/3 of each 1 s grant between
    assert server.count("renew-self") >= 3
    assert auth.stats.logins()[LoginStatus.SUCCESS] >= 2
