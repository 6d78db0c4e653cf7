"""A hostile network between the transport and OpenBao (the fault proxy in front of a fake):
every request ends by its deadline, answers are bounded in size and never decompressed, and
closing the transport abandons what is in flight.

The bodies the proxy offers (1 GiB plain, 1 GiB gzip) are generated lazily; the test checks
with tracemalloc that the transport allocates almost none of them.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _support.fake_openbao import FakeBao, Reply
from _support.fault_proxy import FaultProxy
from _support.leaks import TOKEN, expect_error
from bao_kms.errors import DeadlineExceeded, OpenBaoBadResponse, OpenBaoUnavailable
from bao_kms.openbao import TokenFileAuth, Transport, make_pool
from bao_kms.openbao.connections import ConnectionPool
from bao_kms.openbao.transport import MAX_RESPONSE_BYTES

pytestmark = pytest.mark.timeout(60)
PATH = "transit/keys/kms"
#: a real answer is a few hundred bytes: a byte every 50 ms takes over ten seconds
ANSWER = {"data": {"type": "aes256-gcm96", "padding": "x" * 200}}


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    with FakeBao() as fake, FaultProxy(fake.address) as running:
        fake.reply(Reply(200, ANSWER))
        yield running


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    manager = make_pool(ca_file=None, maxsize=1)  # one connection: a leaked slot would show
    yield manager
    manager.clear()


@pytest.fixture
def transport(proxy: FaultProxy, pool: ConnectionPool, tmp_path: Path) -> Callable[..., Transport]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)

    def build(timeout: float = 0.5) -> Transport:
        return Transport([proxy.address], TokenFileAuth(token_file), pool=pool, timeout=timeout)

    return build


def timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    try:
        call()
    except Exception:  # noqa: BLE001 - only the time is measured here
        pass
    return time.monotonic() - started


def test_a_trickled_answer_ends_at_the_timeout_not_when_it_finishes(
    proxy: FaultProxy, transport: Callable[..., Transport]
) -> None:
    """Each byte arrives well within the read timeout; only a total deadline stops it."""
    proxy.mode = "trickle"
    bounded = transport(timeout=0.5)
    started = time.monotonic()
    error = expect_error(OpenBaoUnavailable, bounded.request, "GET", PATH, anonymous=True)
    assert time.monotonic() - started < 0.5 + 1.0
    assert "did not answer within 0.5 s" in str(error)


def test_a_trickled_answer_ends_at_the_callers_deadline(
    proxy: FaultProxy, transport: Callable[..., Transport]
) -> None:
    proxy.mode = "trickle"
    bounded = transport(timeout=10.0)
    deadline = time.monotonic() + 0.4
    expect_error(DeadlineExceeded, bounded.request, "GET", PATH, deadline=deadline, anonymous=True)
    assert time.monotonic() - deadline < 1.0


def test_a_stalled_answer_ends_at_the_timeout(
    proxy: FaultProxy, transport: Callable[..., Transport]
) -> None:
    proxy.mode = "stall"
    assert timed(lambda: transport(timeout=0.3).request("GET", PATH, anonymous=True)) < 1.3


def test_the_connection_comes_back_after_a_cut_request(
    proxy: FaultProxy, transport: Callable[..., Transport]
) -> None:
    bounded = transport(timeout=0.3)
    proxy.mode = "trickle"
    expect_error(OpenBaoUnavailable, bounded.request, "GET", PATH, anonymous=True)
    proxy.mode = "pass"
    assert b"aes256-gcm96" in bounded.request("GET", PATH, anonymous=True)


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_1_gib_answer_is_refused_without_being_held(
    proxy: FaultProxy, transport: Callable[..., Transport], declared: bool
) -> None:
    proxy.mode, proxy.huge_declared = "huge", declared
    bounded = transport(timeout=5.0)
    tracemalloc.start()
    try:
        error = expect_error(OpenBaoBadResponse, bounded.request, "GET", PATH, anonymous=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"larger than {MAX_RESPONSE_BYTES} bytes" in str(error)
    assert peak < 3 * MAX_RESPONSE_BYTES  # what was read before the cap, and its join
    proxy.mode = "pass"  # the pool slot was given back
    assert b"aes256-gcm96" in bounded.request("GET", PATH, anonymous=True)


def test_a_gzip_bomb_is_refused_unopened(
    proxy: FaultProxy, transport: Callable[..., Transport]
) -> None:
    proxy.mode = "gzip"
    bounded = transport(timeout=5.0)
    tracemalloc.start()
    try:
        error = expect_error(OpenBaoBadResponse, bounded.request, "GET", PATH, anonymous=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "compressed" in str(error)
    assert peak < 1024 * 1024
    proxy.mode = "pass"
    assert b"aes256-gcm96" in bounded.request("GET", PATH, anonymous=True)


def test_a_reset_connection_is_unavailable(
    proxy: FaultProxy, transport: Callable[..., Transport]
) -> None:
    proxy.mode = "reset"
    expect_error(OpenBaoUnavailable, transport().request, "GET", PATH, anonymous=True)


def test_close_abandons_requests_in_flight_and_refuses_new_ones(
    proxy: FaultProxy, transport: Callable[..., Transport]
) -> None:
    proxy.mode = "trickle"
    bounded = transport(timeout=30.0)
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            bounded.request("GET", PATH, anonymous=True)
        except Exception as error:  # noqa: BLE001 - recorded for the assertion below
            outcome.append(error)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(0.3)  # the request is in flight, receiving its answer a byte at a time
    closed_at = time.monotonic()
    bounded.close()
    sender.join(5)
    assert not sender.is_alive() and time.monotonic() - closed_at < 1.0
    assert isinstance(outcome[0], OpenBaoUnavailable) and "stopping" in str(outcome[0])
    started = time.monotonic()
    expect_error(OpenBaoUnavailable, bounded.request, "GET", PATH, anonymous=True)
    assert time.monotonic() - started < 0.5  # refused at once, not after the 30 s timeout
