"""The decrypt batcher on its own, in front of a fake Transit that the tests hold and release.

Single-flight, batching, per-item errors, deadlines, the bounded queue, and a lone request sent
at once from its caller's thread. The fake is typed against :class:`BatchTransit`, the protocol
the batcher depends on (mypy checks it where the fixture hands it over).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from _support import FakeClock, wait_for
from bao_kms.errors import (
    CiphertextAuthenticationFailed,
    DeadlineExceeded,
    KmsError,
    OpenBaoUnavailable,
    Overloaded,
)
from bao_kms.openbao.batcher import (
    ANSWER_WINDOW,
    GATHER_STEP,
    MAX_ANSWERS,
    OPENBAO_MAX_BATCH,
    DecryptBatcher,
)
from bao_kms.openbao.protocols import BatchTransit

pytestmark = pytest.mark.timeout(30)

AAD = "QUFE"


def ciphertext(n: int, *, tampered: bool = False) -> bytes:
    return f"vault:v1:{'BAD' if tampered else 'AAA'}{n:05d}=".encode()


def plaintext_of(value: bytes) -> bytes:
    return b"seed:" + value


class FakeTransit:
    """Answers each item from its bytes; every call can be held at a gate until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[bytes], int]] = []  # (kind, ciphertexts, thread)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)
        self.fail_whole: Exception | None = None
        self.fail_once: Exception | None = None  # the next call only
        self.delay = 0.0  # seconds each call takes, as a round trip to OpenBao would
        self._lock = threading.Lock()

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def _call(self, kind: str, ciphertexts: list[bytes]) -> None:
        with self._lock:
            self.calls.append((kind, ciphertexts, threading.get_ident()))
        self.entered.release()
        assert self.gate.wait(20)
        time.sleep(self.delay)
        if self.fail_whole is not None:
            raise self.fail_whole
        with self._lock:
            once, self.fail_once = self.fail_once, None
        if once is not None:
            raise once

    @staticmethod
    def _outcome(value: bytes) -> bytes | KmsError:
        if b":BAD" in value:
            return CiphertextAuthenticationFailed("ciphertext failed authentication")
        return plaintext_of(value)

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        self._call("encrypt", [plaintext])
        return b"vault:v%d:" % key_version + plaintext

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        self._call("single", [ciphertext])
        outcome = self._outcome(ciphertext)
        if isinstance(outcome, KmsError):
            raise outcome
        return outcome

    def decrypt_batch(
        self, items: Sequence[tuple[bytes, str]], *, deadline: float | None = None
    ) -> list[bytes | KmsError]:
        assert all(associated == AAD for _, associated in items)
        self._call("batch", [value for value, _ in items])
        return [self._outcome(value) for value, _ in items]

    def sent(self) -> list[bytes]:
        """Every ciphertext OpenBao saw, in order."""
        with self._lock:
            return [value for _, values, _ in self.calls for value in values]

    def kinds(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(kind, len(values)) for kind, values, _ in self.calls]


@pytest.fixture
def transit() -> FakeTransit:
    return FakeTransit()


@pytest.fixture
def make_batcher(transit: FakeTransit) -> Iterator[Callable[..., DecryptBatcher]]:
    made: list[DecryptBatcher] = []

    def make(**options: Any) -> DecryptBatcher:
        fake: BatchTransit = transit
        batcher = DecryptBatcher(fake, **options)
        made.append(batcher)
        return batcher

    yield make
    transit.release()
    for batcher in made:
        batcher.close()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(64) as executor:
        yield executor


def occupy(
    batcher: DecryptBatcher, transit: FakeTransit, pool: ThreadPoolExecutor, n: int = 0
) -> Future[bytes]:
    """One Decrypt held at OpenBao, so that the calls after it queue (max_in_flight=1)."""
    transit.hold()
    held = pool.submit(batcher.decrypt, ciphertext(n), AAD)
    assert transit.entered.acquire(timeout=5)
    return held


def queue_up(
    batcher: DecryptBatcher, pool: ThreadPoolExecutor, values: list[bytes], **kw: float
) -> list[Future[bytes]]:
    before = batcher.queued
    futures = [pool.submit(batcher.decrypt, value, AAD, **kw) for value in values]
    wait_for(lambda: batcher.queued >= before + len(set(values)), timeout=5, interval=0.005)
    return futures


def test_a_lone_request_goes_at_once_from_its_own_thread(make_batcher, transit):
    batcher = make_batcher()
    assert batcher.decrypt(ciphertext(1), AAD) == plaintext_of(ciphertext(1))
    assert transit.kinds() == [("single", 1)]
    assert transit.calls[0][2] == threading.get_ident()  # no hand-off to another thread
    assert not any(thread.name.startswith("bao-kms-batch") for thread in threading.enumerate())


def test_no_plaintext_is_kept_after_the_answer(make_batcher, transit):
    batcher = make_batcher()
    for _ in range(3):
        batcher.decrypt(ciphertext(1), AAD, arrived=time.monotonic())
    assert transit.sent() == [ciphertext(1)] * 3


def test_a_decrypt_that_arrived_before_the_answer_shares_it(make_batcher, transit):
    # Two calls sent together can reach the batcher milliseconds apart under load: the second
    # arrived (the servicer's clock) while OpenBao was answering the first, so it is concurrent
    # and shares that answer, as it would have shared the call had it come a moment sooner.
    clock = FakeClock()
    batcher = make_batcher(clock=clock)
    second_arrived = clock()
    clock.advance(0.002)
    assert batcher.decrypt(ciphertext(1), AAD, arrived=clock()) == plaintext_of(ciphertext(1))
    clock.advance(0.003)  # the second call reaches the batcher after the answer
    assert batcher.decrypt(ciphertext(1), AAD, arrived=second_arrived) == plaintext_of(
        ciphertext(1)
    )
    assert transit.sent() == [ciphertext(1)]
    assert batcher.stats().coalesced == 1


def test_a_decrypt_that_arrived_after_the_answer_asks_openbao_again(make_batcher, transit):
    clock = FakeClock()
    batcher = make_batcher(clock=clock)
    batcher.decrypt(ciphertext(1), AAD, arrived=clock())
    clock.advance(0.001)
    batcher.decrypt(ciphertext(1), AAD, arrived=clock())  # arrived after: not concurrent
    batcher.decrypt(ciphertext(1), AAD)  # arrival unknown: only a pending call is shared
    assert transit.sent() == [ciphertext(1)] * 3
    assert batcher.stats().coalesced == 0


def test_only_the_same_pair_and_only_a_success_is_shared_after_the_answer(make_batcher, transit):
    clock = FakeClock()
    batcher = make_batcher(clock=clock)
    arrived = clock() - 0.001
    batcher.decrypt(ciphertext(1), AAD)
    with pytest.raises(CiphertextAuthenticationFailed):
        batcher.decrypt(ciphertext(2, tampered=True), AAD)
    # another AAD is another pair (another key_id or annotations): never shared
    assert batcher.decrypt(ciphertext(1), "T1RIRVI=", arrived=arrived) == plaintext_of(
        ciphertext(1)
    )
    # a failure is not kept: the caller that arrived before it asks OpenBao itself
    with pytest.raises(CiphertextAuthenticationFailed):
        batcher.decrypt(ciphertext(2, tampered=True), AAD, arrived=arrived)
    assert transit.sent() == [ciphertext(1), ciphertext(2, tampered=True)] * 2


def test_answers_are_kept_for_the_window_and_bounded_in_number(make_batcher, transit):
    clock = FakeClock()
    batcher = make_batcher(clock=clock)
    arrived = clock()
    batcher.decrypt(ciphertext(1), AAD, arrived=arrived)
    batcher.decrypt(ciphertext(1), AAD, arrived=arrived)  # arrived with the answer, not before
    clock.advance(0.001)
    batcher.decrypt(ciphertext(1), AAD)
    clock.advance(ANSWER_WINDOW + 0.001)
    # arrived before the answer, but reaches the batcher past the window: OpenBao again, with
    # no other answer in between to sweep the old one out
    batcher.decrypt(ciphertext(1), AAD, arrived=arrived)
    assert transit.sent() == [ciphertext(1)] * 4
    for n in range(10, 10 + MAX_ANSWERS + 50):
        batcher.decrypt(ciphertext(n), AAD)
    before = len(transit.sent())
    batcher.decrypt(ciphertext(10), AAD, arrived=arrived)  # the oldest was dropped
    assert len(transit.sent()) == before + 1


def test_an_answer_given_again_is_kept_from_its_new_time_and_others_still_expire(
    make_batcher, transit
):
    clock = FakeClock()
    batcher = make_batcher(clock=clock)
    start = clock()
    clock.advance(0.001)
    batcher.decrypt(ciphertext(1), AAD)  # answered at start + 0.001
    clock.advance(0.1)
    batcher.decrypt(ciphertext(2), AAD)  # answered at start + 0.101
    clock.advance(0.3)
    batcher.decrypt(ciphertext(1), AAD)  # asked again (no arrival): answered at start + 0.401
    clock.advance(ANSWER_WINDOW - 0.2)  # now the second answer is past the window, the third not
    batcher.decrypt(ciphertext(2), AAD, arrived=start)  # expired: OpenBao again
    assert batcher.decrypt(ciphertext(1), AAD, arrived=start + 0.3) == plaintext_of(ciphertext(1))
    assert transit.sent() == [ciphertext(1), ciphertext(2), ciphertext(1), ciphertext(2)]
    assert batcher.stats().coalesced == 1


def test_an_idle_batcher_keeps_no_answer_past_the_window(make_batcher, transit):
    batcher = make_batcher()
    batcher.decrypt(ciphertext(1), AAD)
    assert batcher.answers_kept == 1
    wait_for(lambda: batcher.answers_kept == 0, timeout=ANSWER_WINDOW * 6, interval=0.02)
    batcher.close()  # the sweeper thread ends with the last answer (or at close)
    wait_for(
        lambda: not any(t.name == "bao-kms-answer-sweep" for t in threading.enumerate()),
        timeout=2,
        interval=0.02,
    )


def test_concurrent_duplicates_share_one_openbao_item(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1)
    held = occupy(batcher, transit, pool, n=7)
    # the same pair as the held call, and another pair queued many times over
    joined = [pool.submit(batcher.decrypt, ciphertext(7), AAD) for _ in range(10)]
    queued = queue_up(batcher, pool, [ciphertext(8)] * 10)
    transit.release()
    assert held.result(5) == plaintext_of(ciphertext(7))
    assert {future.result(5) for future in joined} == {plaintext_of(ciphertext(7))}
    assert {future.result(5) for future in queued} == {plaintext_of(ciphertext(8))}
    assert sorted(transit.sent()) == [ciphertext(7), ciphertext(8)]
    stats = batcher.stats()
    assert (stats.items, stats.coalesced, stats.single_requests) == (2, 19, 2)


def test_requests_that_arrive_while_one_is_out_go_in_one_batch(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1)
    held = occupy(batcher, transit, pool)
    values = [ciphertext(n) for n in range(1, 21)]
    futures = queue_up(batcher, pool, values)
    transit.release()
    assert [future.result(5) for future in futures] == [plaintext_of(v) for v in values]
    assert held.result(5) == plaintext_of(ciphertext(0))
    assert transit.kinds() == [("single", 1), ("batch", 20)]
    assert sorted(transit.calls[1][1]) == values  # each answer is its own (matched by position)


def test_batches_are_capped(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1, max_batch=8)
    occupy(batcher, transit, pool)
    futures = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 21)])
    transit.release()
    for future in futures:
        future.result(5)
    assert transit.kinds() == [("single", 1), ("batch", 8), ("batch", 8), ("batch", 4)]
    assert batcher.stats()[:3] == (1, 3, 21)


def test_a_tampered_item_fails_alone(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1)
    occupy(batcher, transit, pool)
    values = [ciphertext(n, tampered=n % 3 == 0) for n in range(1, 10)]
    futures = queue_up(batcher, pool, values)
    transit.release()
    for value, future in zip(values, futures, strict=True):
        if b":BAD" in value:
            assert isinstance(future.exception(5), CiphertextAuthenticationFailed)
        else:
            assert future.result(5) == plaintext_of(value)
    assert ("batch", 9) in transit.kinds()


def test_a_failed_request_fails_each_of_its_items_with_its_own_exception(
    make_batcher, transit, pool
):
    batcher = make_batcher(max_in_flight=1)
    occupy(batcher, transit, pool)
    futures = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 6)])
    joined = pool.submit(batcher.decrypt, ciphertext(1), AAD)
    transit.fail_whole = OpenBaoUnavailable("OpenBao failed to serve the request (HTTP 503)")
    transit.release()
    errors = [future.exception(5) for future in [*futures, joined]]
    assert all(isinstance(error, OpenBaoUnavailable) for error in errors)
    assert len({id(error) for error in errors}) == len(errors)  # no shared traceback


def test_a_bug_reaches_each_caller_and_the_sender_lives_on(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1)
    occupy(batcher, transit, pool)
    futures = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 4)])
    transit.fail_whole = ZeroDivisionError()
    transit.release()
    assert all(isinstance(future.exception(5), ZeroDivisionError) for future in futures)
    transit.fail_whole = None
    transit.hold()
    held = pool.submit(batcher.decrypt, ciphertext(50), AAD)
    assert transit.entered.acquire(timeout=5)
    later = queue_up(batcher, pool, [ciphertext(51), ciphertext(52)])
    transit.release()
    assert [f.result(5) for f in [held, *later]] == [
        plaintext_of(ciphertext(n)) for n in (50, 51, 52)
    ]


def test_an_item_whose_deadline_passes_in_the_queue_is_never_sent(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1)
    occupy(batcher, transit, pool)
    soon = time.monotonic() + 0.2
    late = queue_up(batcher, pool, [ciphertext(1)], deadline=soon)
    patient = queue_up(batcher, pool, [ciphertext(2)], deadline=time.monotonic() + 10)
    error = late[0].exception(5)
    assert isinstance(error, DeadlineExceeded)
    assert "in the queue" in str(error)
    assert batcher.queued == 1
    transit.release()
    assert patient[0].result(5) == plaintext_of(ciphertext(2))
    assert ciphertext(1) not in transit.sent()
    assert batcher.stats().expired == 1


def test_an_expired_item_is_dropped_when_the_batch_is_taken(
    transit: FakeTransit, pool: ThreadPoolExecutor
) -> None:
    """Deadlines are read on the batcher's clock when a batch is formed."""
    now = [100.0]
    fake: BatchTransit = transit
    batcher = DecryptBatcher(fake, max_in_flight=1, clock=lambda: now[0])
    try:
        occupy(batcher, transit, pool)
        # both wait up to 10 s of real time (the Event) but the clock says one has expired
        futures = queue_up(batcher, pool, [ciphertext(1)], deadline=now[0] + 5)
        futures += queue_up(batcher, pool, [ciphertext(2)], deadline=now[0] + 50)
        now[0] += 10
        transit.release()
        assert isinstance(futures[0].exception(5), DeadlineExceeded)
        assert futures[1].result(5) == plaintext_of(ciphertext(2))
        assert ciphertext(1) not in transit.sent()
    finally:
        transit.release()
        batcher.close()


def test_a_waiter_that_times_out_leaves_the_others_their_answer(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1)
    held = occupy(batcher, transit, pool, n=3)
    impatient = pool.submit(batcher.decrypt, ciphertext(3), AAD, deadline=time.monotonic() + 0.1)
    assert isinstance(impatient.exception(5), DeadlineExceeded)
    assert "for OpenBao" in str(impatient.exception())
    transit.release()
    assert held.result(5) == plaintext_of(ciphertext(3))


def test_a_joiner_with_more_time_does_not_inherit_the_leaders_deadline(make_batcher, transit, pool):
    """The leader's call ends DEADLINE_EXCEEDED on the leader's deadline; a caller that joined
    it with a later deadline asks again and gets its plaintext."""
    batcher = make_batcher(max_in_flight=1)
    leader = occupy(batcher, transit, pool, n=3)
    joiner = pool.submit(batcher.decrypt, ciphertext(3), AAD, deadline=time.monotonic() + 20)
    wait_for(lambda: batcher.stats().coalesced == 1, timeout=5, interval=0.005)
    transit.fail_once = DeadlineExceeded("deadline passed while waiting for OpenBao")
    transit.release()
    with pytest.raises(DeadlineExceeded):
        leader.result(5)
    assert joiner.result(5) == plaintext_of(ciphertext(3))
    assert transit.sent() == [ciphertext(3), ciphertext(3)]


def test_a_full_queue_refuses_at_once_and_only_new_items(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1, max_queued=3)
    occupy(batcher, transit, pool)
    queued = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 4)])
    started = time.monotonic()
    with pytest.raises(Overloaded):
        batcher.decrypt(ciphertext(9), AAD, deadline=time.monotonic() + 10)
    assert time.monotonic() - started < 1
    assert batcher.stats().refused == 1
    duplicate = pool.submit(batcher.decrypt, ciphertext(2), AAD)  # joins: no new item
    transit.release()
    assert [f.result(5) for f in [*queued, duplicate]] == [
        plaintext_of(ciphertext(n)) for n in (1, 2, 3, 2)
    ]


def test_below_the_bound_a_caller_waits_its_turn(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1, max_queued=100)
    occupy(batcher, transit, pool)
    futures = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 60)])
    time.sleep(0.05)
    assert not any(future.done() for future in futures)
    transit.release()
    assert all(future.result(5) for future in futures)


def test_encrypt_passes_straight_through(make_batcher, transit):
    batcher = make_batcher()
    assert batcher.encrypt(b"seed", 3, AAD) == b"vault:v3:seed"
    assert transit.kinds() == [("encrypt", 1)]


def test_close_sends_what_is_queued_then_decrypts_go_one_by_one(make_batcher, transit, pool):
    batcher = make_batcher(max_in_flight=1)
    occupy(batcher, transit, pool)
    futures = queue_up(batcher, pool, [ciphertext(1), ciphertext(2)])
    closing = pool.submit(batcher.close)
    transit.release()
    closing.result(5)
    assert [f.result(5) for f in futures] == [plaintext_of(ciphertext(n)) for n in (1, 2)]
    assert batcher.decrypt(ciphertext(3), AAD) == plaintext_of(ciphertext(3))
    assert transit.kinds()[-1] == ("single", 1)


@pytest.mark.parametrize("options", [{"max_batch": 0}, {"max_batch": OPENBAO_MAX_BATCH + 1}])
def test_a_batch_beyond_openbaos_limit_is_refused(transit, options):
    with pytest.raises(ValueError, match="max_batch"):
        DecryptBatcher(transit, **options)


def test_a_storm_is_answered_right_with_few_requests(make_batcher, transit, pool):
    """Many callers, duplicates among them, no gate: every answer right, in far fewer OpenBao
    requests than calls."""
    batcher = make_batcher()
    transit.delay = 0.002
    values = [ciphertext(n % 150) for n in range(600)]
    results = list(pool.map(lambda v: batcher.decrypt(v, AAD), values))
    assert results == [plaintext_of(v) for v in values]
    assert len(transit.calls) < len(values) / 4


class RecordingSleep:
    """The batcher's sleep, recorded (and skipped), so a test can see when a sender lingered."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def test_under_load_the_next_batch_lingers_to_gather_more(make_batcher, transit, pool):
    sleep = RecordingSleep()
    batcher = make_batcher(max_in_flight=1, max_batch=8, linger=0.004, sleep=sleep)
    occupy(batcher, transit, pool)
    first = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 4)])
    transit.delay = 0.3  # each request now takes a while at "OpenBao"
    transit.release()
    assert transit.entered.acquire(timeout=5)  # the 3-item batch is out
    second = queue_up(batcher, pool, [ciphertext(n) for n in range(10, 12)])
    for future in first + second:
        future.result(5)
    assert transit.kinds() == [("single", 1), ("batch", 3), ("batch", 2)]
    # the first batch went as soon as the slot was free; the second, queued while a 3-item
    # request was out, gathered one step, in which nothing more arrived, and went
    assert sleep.calls == [GATHER_STEP]


def gather_with_arrivals(
    make_batcher: Callable[..., DecryptBatcher],
    transit: FakeTransit,
    pool: ThreadPoolExecutor,
    *,
    step_takes: float,
) -> list[float]:
    """A 3-item request out, 2 Decrypts queued behind it, and one more arriving in every step
    of the gather that follows; each step takes *step_takes* times what was asked, on the
    batcher's clock. Returns the steps asked for (linger: 4 steps)."""
    clock = FakeClock()
    made: list[DecryptBatcher] = []
    arrivals = iter(range(100, 200))
    steps: list[float] = []
    late: list[Future[bytes]] = []

    def sleep(seconds: float) -> None:
        steps.append(seconds)
        clock.advance(step_takes * seconds)
        late.extend(queue_up(made[0], pool, [ciphertext(next(arrivals))]))

    batcher = make_batcher(
        max_in_flight=1, max_batch=64, linger=4 * GATHER_STEP, sleep=sleep, clock=clock
    )
    made.append(batcher)
    occupy(batcher, transit, pool)
    first = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 4)])
    transit.delay = 0.3
    transit.release()
    assert transit.entered.acquire(timeout=5)  # the 3-item batch is out
    second = queue_up(batcher, pool, [ciphertext(n) for n in range(10, 12)])
    for future in first + second:
        future.result(5)
    for future in late:
        future.result(5)
    return steps


def test_gathering_goes_on_while_decrypts_arrive_up_to_the_linger(make_batcher, transit, pool):
    steps = gather_with_arrivals(make_batcher, transit, pool, step_takes=1)
    assert steps == pytest.approx([GATHER_STEP] * 4)  # gathering while they came, no longer
    assert transit.kinds() == [("single", 1), ("batch", 3), ("batch", 6)]


def test_the_gather_is_bounded_by_the_clock_not_by_counting_steps(make_batcher, transit, pool):
    """A step can take far longer than asked (a busy machine, the GIL): the linger is time."""
    steps = gather_with_arrivals(make_batcher, transit, pool, step_takes=3)
    # 1.5 step-lengths passed after the first step, 3 after the second: the linger (4) is over
    assert steps == pytest.approx([GATHER_STEP, GATHER_STEP])
    assert transit.kinds() == [("single", 1), ("batch", 3), ("batch", 4)]


def test_close_during_a_gather_sends_what_is_queued(make_batcher, transit, pool):
    batcher: DecryptBatcher | None = None
    closing: list[threading.Thread] = []

    def sleep(seconds: float) -> None:  # the provider stops while the sender gathers
        made = batcher
        assert made is not None
        if not closing:
            closing.append(threading.Thread(target=made.close))
            closing[0].start()
            wait_for(lambda: made._closed, timeout=5)

    batcher = make_batcher(max_in_flight=1, max_batch=64, linger=0.05, sleep=sleep)
    occupy(batcher, transit, pool)
    first = queue_up(batcher, pool, [ciphertext(n) for n in range(1, 4)])
    transit.delay = 0.3
    transit.release()
    assert transit.entered.acquire(timeout=5)
    second = queue_up(batcher, pool, [ciphertext(n) for n in range(10, 12)])
    for future in first + second:
        future.result(5)
    closing[0].join(5)
    assert not closing[0].is_alive()
    assert transit.kinds() == [("single", 1), ("batch", 3), ("batch", 2)]


def test_after_close_the_queue_drains_while_lone_decrypts_hold_the_slots(
    make_batcher, transit, pool
):
    batcher = make_batcher(max_in_flight=1)
    held = occupy(batcher, transit, pool)  # holds the one request slot, at the gate
    queued = queue_up(batcher, pool, [ciphertext(1)])
    closing = threading.Thread(target=batcher.close)
    closing.start()
    # the queued Decrypt reaches OpenBao though the one slot is still held: only a closed
    # batcher sends without a free slot (so from here on the batcher is closed)
    assert transit.entered.acquire(timeout=5)
    # after close a Decrypt goes alone and takes a slot too; the queued one did not wait for a
    # free slot that lone Decrypts can keep taking
    alone = pool.submit(batcher.decrypt, ciphertext(2), AAD)
    assert transit.entered.acquire(timeout=5)  # both reached OpenBao with the gate still shut
    assert sorted(transit.sent()) == [ciphertext(0), ciphertext(1), ciphertext(2)]
    transit.release()
    assert [f.result(5) for f in (held, queued[0], alone)] == [
        plaintext_of(ciphertext(n)) for n in range(3)
    ]
    closing.join(5)
    assert not closing.is_alive()


def test_a_lone_request_and_a_full_batch_never_linger(make_batcher, transit, pool):
    sleep = RecordingSleep()
    batcher = make_batcher(max_in_flight=1, max_batch=4, linger=0.004, sleep=sleep)
    batcher.decrypt(ciphertext(1), AAD)  # at once, from its own thread
    occupy(batcher, transit, pool, n=2)
    futures = queue_up(batcher, pool, [ciphertext(n) for n in range(10, 22)])  # 3 full batches
    transit.release()
    for future in futures:
        future.result(5)
    assert transit.kinds()[2:] == [("batch", 4)] * 3
    assert sleep.calls == []  # each batch after the first found a full queue waiting


def test_linger_zero_sends_as_soon_as_openbao_answered(make_batcher, transit, pool):
    sleep = RecordingSleep()
    batcher = make_batcher(max_in_flight=1, linger=0, sleep=sleep)
    transit.delay = 0.002
    values = [ciphertext(n) for n in range(200)]
    assert list(pool.map(lambda v: batcher.decrypt(v, AAD), values)) == [
        plaintext_of(v) for v in values
    ]
    assert any(kind == "batch" and size > 1 for kind, size in transit.kinds())  # under load
    assert sleep.calls == []


@pytest.mark.parametrize("linger", [-0.001, 1.5])
def test_a_linger_out_of_range_is_refused(transit, linger):
    with pytest.raises(ValueError, match="linger"):
        DecryptBatcher(transit, linger=linger)
