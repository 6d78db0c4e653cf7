"""TokenFileAuth once started: the token it reads is looked up and renewed, a periodic token
lives forever, a dead one is reported as such until the file changes. File reading itself is
in test_auth.py."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from _support import FakeClock
from _support.fake_token_server import TokenServer
from _support.leaks import expect_error
from _support.log_records import records_of
from _support.pki import write_private
from bao_kms.errors import AuthCredentialInvalid
from bao_kms.openbao.auth import LoginStatus, RenewalStatus, TokenFileAuth
from bao_kms.openbao.auth.renewal import IDLE_WAKE

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(clock: FakeClock) -> TokenServer:
    return TokenServer(clock, ttl=30, max_ttl=90)


def replace_file(path: Path, token: str) -> None:
    temporary = write_private(path.with_suffix(".new"), token + "\n")
    os.replace(temporary, path)


def started(path: Path, server: TokenServer, clock: FakeClock) -> TokenFileAuth:
    auth = TokenFileAuth(path, clock=clock, rng=lambda: 1.0)
    auth.bind(server)  # the thread's work is driven by hand through maintain()
    return auth


def test_token_is_looked_up_then_renewed_at_two_thirds(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    token = server.issue()
    auth = started(write_private(tmp_path / "token", token), server, clock)
    assert auth.token() == token
    assert auth.maintain() == pytest.approx(20)
    assert server.count("lookup-self") == 1
    clock.advance(20)
    auth.maintain()
    assert server.count("renew-self") == 1
    assert auth.stats.renewals()[RenewalStatus.SUCCESS] == 1
    assert auth.stats.token_ttl() == pytest.approx(30)
    assert auth.stats.logins()[LoginStatus.SUCCESS] == 1  # one token adopted from the file


def test_periodic_token_is_renewed_forever(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    token = server.issue(ttl=30, period=30)
    auth = started(write_private(tmp_path / "token", token), server, clock)
    auth.token()
    for _ in range(500):  # about three hours of 20 s steps
        clock.advance(auth.maintain())
        assert server.valid(auth.token())
    assert auth.stats.renewals()[RenewalStatus.SUCCESS] >= 490


def test_max_ttl_is_announced_and_the_file_is_what_saves_it(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    path = write_private(tmp_path / "token", server.issue())
    auth = started(path, server, clock)
    auth.token()
    with records_of("bao_kms.openbao.auth", logging.WARNING) as records:
        for _ in range(10):
            clock.advance(auth.maintain())
            if auth.stats.renewals()[RenewalStatus.MAX_TTL]:
                break
    assert any("cannot be renewed further" in r.getMessage() for r in records)
    clock.advance(auth.maintain())  # sleeps until the token's end
    auth._checked_at = -1e9  # a second later the file is looked at again anyway
    expect_error(AuthCredentialInvalid, auth.token)  # dead: never sent
    replace_file(path, fresh := server.issue())
    clock.advance(1.0)
    assert auth.token() == fresh


def test_revoked_token_is_reported_until_the_file_changes(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    token = server.issue()
    path = write_private(tmp_path / "token", token)
    auth = started(path, server, clock)
    auth.token()
    auth.maintain()  # looked up once: OpenBao is known to accept it
    server.revoke(token)
    assert auth.refresh(token) is True  # the next token() differs: it raises
    error = expect_error(AuthCredentialInvalid, auth.token, secrets=(token,))
    assert str(error) == "the token in the OpenBao token file has expired or was revoked"
    assert error.reason == "auth_credential_invalid"
    assert auth.stats.token_ttl() is None
    replace_file(path, fresh := server.issue())
    assert auth.refresh(token) is True
    assert auth.token() == fresh


def test_a_policy_403_never_condemns_the_token(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    token = server.issue()
    auth = started(write_private(tmp_path / "token", token), server, clock)
    auth.token()
    auth.maintain()
    for _ in range(5):
        assert auth.refresh(token) is False
    assert auth.token() == token


def test_a_token_never_looked_up_is_never_judged(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    """lookup-self denied (a token without the default policy): it is still sent, unrenewed."""
    token = server.issue()
    server.denied_paths.add("auth/token/lookup-self")
    auth = started(write_private(tmp_path / "token", token), server, clock)
    auth.token()
    assert auth.maintain() == pytest.approx(0.5)  # retried with backoff
    assert auth.refresh(token) is False
    assert auth.token() == token


def test_new_file_token_restarts_the_cycle(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    path = write_private(tmp_path / "token", server.issue())
    auth = started(path, server, clock)
    auth.token()
    auth.maintain()
    replace_file(path, second := server.issue())
    clock.advance(1.0)
    assert auth.token() == second
    auth.maintain()
    assert server.calls[-1] == ("auth/token/lookup-self", second)


def test_without_a_token_the_thread_idles(tmp_path: Path, server: TokenServer) -> None:
    auth = started(tmp_path / "missing", server, FakeClock())
    assert auth.maintain() == IDLE_WAKE
    assert server.calls == []


def test_root_token_without_ttl_is_left_alone(
    tmp_path: Path, server: TokenServer, clock: FakeClock
) -> None:
    token = server.issue(ttl=0)
    server.tokens[token].expires_at = float("inf")
    auth = started(write_private(tmp_path / "token", token), server, clock)
    auth.token()
    assert auth.maintain() == IDLE_WAKE
    assert auth.stats.token_ttl() is None
    clock.advance(10_000)
    assert auth.maintain() == IDLE_WAKE
    assert server.count("renew-self") == 0
