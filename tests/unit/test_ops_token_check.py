"""Telling a dead token from a policy 403: ``lookup-self``, single-flight and rate-limited."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _support import FakeClock
from _support.fake_openbao import FakeBao, Reply, Seen, errors_body
from _support.leaks import TOKEN, expect_error
from bao_kms.errors import OpenBaoPermissionDenied, OpenBaoUnauthenticated
from bao_kms.openbao import TokenFileAuth, Transport, make_pool
from bao_kms.openbao.token_check import TokenCheck


class Lookups:
    """A scripted lookup-self: a verdict per token, counted, optionally slow."""

    def __init__(self, verdicts: dict[str, bool | None], delay: float = 0.0) -> None:
        self.verdicts = verdicts
        self.delay = delay
        self.calls: list[str] = []

    def __call__(self, token: str, deadline: float | None) -> bool | None:
        self.calls.append(token)
        time.sleep(self.delay)
        return self.verdicts.get(token)


def test_a_refused_token_stays_refused_a_valid_one_for_one_interval() -> None:
    clock = FakeClock()
    lookups = Lookups({"dead": False, "live": True})
    check = TokenCheck(lookups, clock=clock, interval=1.0)
    assert check.token_valid("dead") is False
    clock.advance(100)
    assert check.token_valid("dead") is False  # no new lookup: dead tokens do not come back
    assert lookups.calls == ["dead"]
    assert check.token_valid("live") is True
    assert check.token_valid("live") is True
    assert lookups.calls == ["dead", "live"]
    clock.advance(1.0)
    assert check.token_valid("live") is True  # a valid verdict is re-checked after a while
    assert lookups.calls == ["dead", "live", "live"]


def test_rate_limited_means_unknown_never_a_guess() -> None:
    clock = FakeClock()
    lookups = Lookups({"a": True, "b": False})
    check = TokenCheck(lookups, clock=clock, interval=1.0)
    assert check.token_valid("a") is True
    assert check.token_valid("b") is None  # within the interval: not looked up, not guessed
    assert lookups.calls == ["a"]
    clock.advance(1.0)
    assert check.token_valid("b") is False


def test_a_failed_lookup_is_unknown() -> None:
    check = TokenCheck(Lookups({}), clock=FakeClock())
    assert check.token_valid("anything") is None


def test_concurrent_403s_share_one_lookup() -> None:
    lookups = Lookups({"dead": False}, delay=0.2)
    check = TokenCheck(lookups)
    verdicts: list[bool | None] = []
    start = threading.Barrier(40)

    def ask() -> None:
        start.wait(5)
        verdicts.append(check.token_valid("dead", None))

    threads = [threading.Thread(target=ask) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert verdicts == [False] * 40
    assert lookups.calls == ["dead"]


# --- in front of a scripted server: a storm of 403s ----------------------------------------------


@pytest.fixture
def denying() -> Iterator[FakeBao]:
    """Every path 403; lookup-self as the test scripts it (default: the token is valid)."""
    with FakeBao() as fake:
        fake.lookup_status = 200  # type: ignore[attr-defined]

        def answer(seen: Seen) -> Reply:
            if seen.path.endswith("auth/token/lookup-self"):
                return Reply(fake.lookup_status, {"data": {"ttl": 60}})  # type: ignore[attr-defined]
            return Reply(403, errors_body("1 error occurred:\n\t* permission denied\n\n"))

        fake.reply_with(answer)
        yield fake


@pytest.fixture
def transport(denying: FakeBao, tmp_path: Path) -> Iterator[Transport]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    pool = make_pool(ca_file=None, maxsize=64)
    yield Transport([denying.address], TokenFileAuth(token_file), pool=pool)
    pool.clear()


def storm(call: Callable[[], object], threads: int, seconds: float) -> int:
    """Run *call* from *threads* threads for *seconds*; returns how many calls ended."""
    ended = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < stop:
            try:
                call()
            except Exception:  # noqa: BLE001 - every call is expected to fail
                pass
            with lock:
                ended[0] += 1

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 10)
    return ended[0]


def test_a_storm_of_policy_403s_costs_at_most_one_lookup_per_second(
    denying: FakeBao, transport: Transport
) -> None:
    error = expect_error(OpenBaoPermissionDenied, transport.request, "GET", "transit/keys/kms")
    assert error.error_class == "permission_denied"
    calls = storm(lambda: transport.request("GET", "transit/keys/kms"), threads=16, seconds=2.5)
    lookups = sum(seen.path.endswith("lookup-self") for seen in denying.requests)
    assert calls > 50  # a real storm
    assert lookups <= 1 + 3  # the first call's, then at most one per second of the storm


def test_a_dead_token_is_unauthenticated_and_looked_up_once(
    denying: FakeBao, transport: Transport
) -> None:
    denying.lookup_status = 403  # type: ignore[attr-defined]
    error = expect_error(OpenBaoUnauthenticated, transport.request, "GET", "transit/keys/kms")
    assert error.reason == "openbao_token_rejected" and "403" in str(error)
    storm(lambda: transport.request("GET", "transit/keys/kms"), threads=8, seconds=1.5)
    lookups = sum(seen.path.endswith("lookup-self") for seen in denying.requests)
    assert lookups == 1  # refused stays refused for this token: no lookup per 403
