"""Decrypt coalescing and Transit micro-batching, for kube-apiserver's cold-start storms.

A restarting kube-apiserver sends thousands of concurrent Decrypts, many for the same DEK seed.
One Transit decrypt per HTTP request tops out near 1,000-1,300/s on a small machine; one
``batch_input`` request of 64-128 items does 20,000-40,000/s. :class:`DecryptBatcher` sits
between the servicer and :class:`~.transit.TransitClient` and is a ``TransitCipher`` itself:

* **Single-flight**: concurrent Decrypts of one (ciphertext, AAD) pair share one OpenBao item
  and its outcome. The servicer rebuilt the AAD from the validated key_id and annotations, so
  the pair stands for (ciphertext, key_id, annotations). Concurrent means in flight together:
  a Decrypt that had *arrived* (the servicer's clock) before OpenBao answered its pair shares
  that plaintext even if it reaches the batcher a moment later (two calls sent at once can be
  handled milliseconds apart under load). A Decrypt that arrives after the answer reaches
  OpenBao again: there is no plaintext cache. Answers are kept for that purpose only, for at
  most ``ANSWER_WINDOW`` seconds and ``MAX_ANSWERS`` pairs; failures are never kept.
* **Adaptive batching**: while no request is out, a Decrypt goes to OpenBao at once, from its
  own thread, as a plain single decrypt: no added latency at low load. Otherwise it queues,
  and a sender thread takes up to ``max_batch`` queued items into one Transit request as soon
  as a request slot frees (``max_in_flight``), so batches grow with the load and shrink with it.
  Under load (the previous request carried more than one item and Decrypts are queued) the
  sender first gathers: it waits in 0.5 ms steps while more arrive, for ``linger`` (5 ms) of
  its clock at most, and stops at the first step that brings none. Each request saved is
  ~0.4 ms of provider CPU (``benchmarks/http_clients.py``) and a share of OpenBao's, which on
  a small control-plane node is the same CPU.
* **Per-item outcomes**: a tampered item fails alone (INVALID_ARGUMENT), its neighbours decrypt;
  a failure of the request as a whole fails each of its items. Every item keeps its callers'
  deadline: one that passes while it waits ends that call with DEADLINE_EXCEEDED, and an item
  nobody waits for any more is never sent.
* **Bounded**: at most ``max_queued`` distinct items wait. Beyond that a Decrypt is refused at
  once (:class:`~bao_kms.errors.Overloaded`, RESOURCE_EXHAUSTED); below it, it waits within its
  deadline. Memory is bounded by that, by the gRPC server's own admission limit, and by
  ``MAX_ANSWERS`` kept answers, each dropped ``ANSWER_WINDOW`` after it came (a timer sweeps
  them when no traffic does, so an idle provider holds none).

Encrypt passes straight through: kube-apiserver sends one per start and per key change.
"""

from __future__ import annotations

import copy
import threading
import time
from _thread import LockType
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import NamedTuple

from ..errors import DeadlineExceeded, KmsError, Overloaded
from .protocols import BatchTransit

#: OpenBao 2.7 refuses a body with more than 1000 JSON strings ("refused JSON input due to high
#: complexity"). A batch item with AAD is four strings and ``batch_input`` one: 249 items at most.
OPENBAO_MAX_BATCH = 249
#: well below that limit, and where Transit batch throughput levels off here (64-128 items)
DEFAULT_MAX_BATCH = 128
DEFAULT_MAX_QUEUED = 1024
#: OpenBao requests out at once. One: while it is out the next batch fills, as large as the
#: load makes it. Measured on 2 cores: two or four in flight split the same items into smaller
#: batches, each costing a whole HTTP request of CPU, and ran slower.
DEFAULT_MAX_IN_FLIGHT = 1
#: the longest a sender gathers items under load before it sends; it stops sooner when a
#: step (0.5 ms) brings no new Decrypt. Measured on 2 cores, 6,000 fresh Decrypts a run: at 32
#: concurrent callers no gathering made 4.6 items a request at 1,185-1,322/s, gathering 5 ms
#: 9-12 items at 1,370-1,640/s, with the provider's CPU per Decrypt down ~20% and OpenBao's
#: ~40%; at 3 callers a fixed 5 ms wait cost throughput (499/s) where stopping early did not
#: (585/s). A lone Decrypt never waits; one queued behind a multi-item request waits one step.
DEFAULT_LINGER = 0.005
#: the gather checks for new arrivals this often; a step without one ends it early
GATHER_STEP = 0.0005
#: how long an answer stays shareable with Decrypts that arrived before it: the time from a
#: call's arrival to its reaching the batcher is validation (microseconds) plus scheduling
#: under load (milliseconds); a call slower than this (one that waited for a worker slot, say)
#: asks OpenBao itself
ANSWER_WINDOW = 0.5
#: at most this many answers kept for that (a 20,000-Decrypt storm holds ~1,000: 0.5 s of it)
MAX_ANSWERS = 4096

# An item's life: waiting in the queue, then sent (or sent at once), then done.
_QUEUED, _SENT, _DONE = 0, 1, 2

Key = tuple[bytes, str]


class BatchStats(NamedTuple):
    """Counts since start, for ``/metrics`` and the benchmarks (read at scrape time)."""

    #: OpenBao decrypt requests sent: ``single`` (one item, the plain body) and ``batch``
    single_requests: int
    batch_requests: int
    #: items sent to OpenBao (each at most once); with ``coalesced``, the Decrypts served
    items: int
    #: Decrypts that shared another's item (single-flight): one still queued or at OpenBao, or
    #: one OpenBao answered after the Decrypt arrived
    coalesced: int
    #: Decrypts refused because the queue was full, and queued ones whose deadline passed
    refused: int
    expired: int
    #: distinct Decrypts waiting for a batch now
    queued: int


class _Item:
    """One distinct (ciphertext, AAD) pair: how many callers wait for it, and its outcome."""

    __slots__ = ("key", "deadline", "waiters", "state", "done", "plaintext", "error")

    def __init__(self, key: Key, deadline: float | None, state: int) -> None:
        self.key = key
        #: the latest of its callers' deadlines: past it, nobody can use the answer
        self.deadline = deadline
        self.waiters = 1
        self.state = state
        #: held until the outcome is in; made only when a caller has to wait (a caller that
        #: sends its own item needs none). A bare lock, not an Event: a third of the cost, and
        #: each waiter that acquires it releases it at once for the next (no notify_all).
        self.done: LockType | None = None
        self.plaintext = b""
        self.error: BaseException | None = None


def _held_lock() -> LockType:
    lock = threading.Lock()
    lock.acquire()
    return lock


def _later(first: float | None, second: float | None) -> float | None:
    """The later of two deadlines; None (no deadline) is the latest of all."""
    if first is None or second is None:
        return None
    return first if first > second else second


def _own_copy(error: BaseException) -> BaseException:
    """An exception for one waiting caller to raise: one object raised in several threads at
    once would collect every thread's frames in one shared traceback. A bug's exception (whose
    class may not copy) is raised as it is: it only becomes a generic INTERNAL."""
    return copy.copy(error) if isinstance(error, KmsError) else error


class DecryptBatcher:
    """Single-flight and micro-batching in front of one Transit key; thread-safe."""

    def __init__(
        self,
        transit: BatchTransit,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_queued: int = DEFAULT_MAX_QUEUED,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        linger: float = DEFAULT_LINGER,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not 1 <= max_batch <= OPENBAO_MAX_BATCH:
            raise ValueError(f"max_batch must be 1 to {OPENBAO_MAX_BATCH}")
        if max_queued < 1 or max_in_flight < 1:
            raise ValueError("max_queued and max_in_flight must be positive")
        if not 0 <= linger <= 1:
            raise ValueError("linger must be 0 to 1 seconds")
        self._transit = transit
        self.max_batch = max_batch
        self.max_queued = max_queued
        self.max_in_flight = max_in_flight
        self.linger = linger
        self._clock = clock  # the servicer's: deadlines are absolute on it
        self._sleep = sleep
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # queue non-empty and a slot free
        self._items: dict[Key, _Item] = {}  # queued or sent, by pair: the single-flight table
        # answered pairs, for Decrypts that arrived before the answer: pair -> (when, plaintext),
        # oldest answer first (an answer given again moves to the end)
        self._answers: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()
        self._sweeper: threading.Timer | None = None  # drops expired answers when idle
        self._queue: deque[_Item] = deque()
        self._in_flight = 0
        self._senders: list[threading.Thread] = []
        self._closed = False
        # counters behind stats(), changed under the lock they already hold
        self._single = self._batches = self._sent = 0
        self._coalesced = self._refused = self._expired = 0

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        return self._transit.encrypt(plaintext, key_version, associated_data, deadline=deadline)

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        """The plaintext, from a call shared with concurrent callers of the same pair.

        *arrived* is when the caller's request arrived, on this batcher's clock: an answer
        OpenBao gave for the pair after that moment (and within ``ANSWER_WINDOW``) is this
        caller's too. None: only a call still queued or at OpenBao is shared.
        """
        key = (ciphertext, associated_data)
        with self._lock:
            item = self._items.get(key)
            if item is None and arrived is not None and self._answers:
                self._forget_answers(self._clock())  # only answers within the window count
                answered = self._answers.get(key)
                # strictly after: a call that arrived with or after the answer asks OpenBao
                if answered is not None and answered[0] > arrived:
                    self._coalesced += 1  # it was in flight while OpenBao answered its pair
                    return answered[1]
            if item is not None:  # in the queue or at OpenBao already: wait for its outcome
                item.waiters += 1
                self._coalesced += 1
                item.deadline = _later(item.deadline, deadline)
                if item.done is None:
                    item.done = _held_lock()
            elif self._closed or not (self._in_flight or self._queue):
                item = self._items[key] = _Item(key, deadline, _SENT)
                self._in_flight += 1
                self._single += 1
                self._sent += 1
            elif len(self._queue) >= self.max_queued:
                self._refused += 1
                raise Overloaded("too many Decrypts are waiting for OpenBao")
            else:
                item = self._items[key] = _Item(key, deadline, _QUEUED)
                item.done = _held_lock()
                self._queue.append(item)
                self._start_senders()
                if self._in_flight < self.max_in_flight:
                    self._wakeup.notify()
        if item.done is None:
            return self._send_alone(item, deadline)
        return self._wait(item, deadline)

    @property
    def queued(self) -> int:
        """Distinct Decrypts waiting for a batch now."""
        return len(self._queue)

    @property
    def answers_kept(self) -> int:
        """Answered pairs kept now for Decrypts that arrived before their answer."""
        return len(self._answers)

    def stats(self) -> BatchStats:
        with self._lock:
            return BatchStats(
                self._single,
                self._batches,
                self._sent,
                self._coalesced,
                self._refused,
                self._expired,
                len(self._queue),
            )

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued, then stop the sender threads. Later Decrypts go one by one."""
        with self._lock:
            self._closed = True
            self._answers.clear()
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None
            self._wakeup.notify_all()
            senders, self._senders = self._senders, []
        for sender in senders:
            sender.join(timeout)

    # --- the calling thread ------------------------------------------------------------------

    def _send_alone(self, item: _Item, deadline: float | None) -> bytes:
        ciphertext, associated_data = item.key
        try:
            plaintext = self._transit.decrypt(ciphertext, associated_data, deadline=deadline)
        except BaseException as error:
            self._complete([item], [error])
            raise
        self._complete([item], [plaintext])
        return plaintext

    def _wait(self, item: _Item, deadline: float | None) -> bytes:
        assert item.done is not None
        if deadline is None:
            finished = item.done.acquire()
        else:
            timeout = deadline - self._clock()
            finished = item.done.acquire(True, timeout) if timeout > 0 else item.done.acquire(False)
        if finished:
            item.done.release()  # for the next caller waiting on the same item
        else:
            with self._lock:
                if item.state != _DONE:  # else it finished just now: take the outcome
                    item.waiters -= 1
                    queued = item.state == _QUEUED
                    if queued and not item.waiters:
                        self._queue.remove(item)  # nobody needs it: never sent
                        del self._items[item.key]
                        self._expired += 1
                    where = "in the queue" if queued else "for OpenBao"
                    raise DeadlineExceeded(f"deadline passed while the Decrypt waited {where}")
        if item.error is not None:
            if isinstance(item.error, DeadlineExceeded) and (
                deadline is None or self._clock() < deadline
            ):
                # The shared call ran on an earlier caller's (shorter) deadline; this caller
                # still has time, so it asks again rather than inherit someone else's timeout.
                return self.decrypt(*item.key, deadline=deadline)
            raise _own_copy(item.error)
        return item.plaintext

    # --- the sender threads ------------------------------------------------------------------

    def _start_senders(self) -> None:
        """Called with the lock held, when an item is queued."""
        while len(self._senders) < self.max_in_flight and not self._closed:
            sender = threading.Thread(
                target=self._serve, name=f"bao-kms-batch-{len(self._senders)}", daemon=True
            )
            self._senders.append(sender)
            sender.start()

    def _serve(self) -> None:
        previous = 0  # items in this sender's last request: more than one means load
        while True:
            if previous > 1 and self.linger:
                self._gather()
            with self._lock:
                # once closed, the queue drains without waiting for a slot: Decrypts after
                # close go alone and hold slots, and must not starve what was queued before
                while not (self._queue and (self._in_flight < self.max_in_flight or self._closed)):
                    if self._closed and not self._queue:
                        return
                    self._wakeup.wait()
                batch, expired = self._take()
                if batch:
                    self._in_flight += 1
                    self._sent += len(batch)
                    if len(batch) == 1:
                        self._single += 1
                    else:
                        self._batches += 1
                self._expired += len(expired)
                if self._queue and self._in_flight < self.max_in_flight:
                    self._wakeup.notify()  # more than one batch waits: another sender's turn
            for item in expired:
                assert item.done is not None
                item.done.release()
            previous = len(batch)
            if batch:
                self._send(batch)

    def _gather(self) -> None:
        """Under load (Decrypts queued while the last request was out, but not a full batch),
        let the next batch fill while Decrypts keep arriving, for ``linger`` seconds at most.
        An empty queue is not load: the next Decrypt goes at once, alone, from its own thread.
        """
        # bounded on the clock, not by counting steps: a step overshoots, and a sender that
        # waits for the GIL after each one would otherwise gather far longer than `linger`
        end = self._clock() + self.linger
        size = self._gathering()
        while size:
            left = end - self._clock()
            if left <= 0:
                return
            self._sleep(min(GATHER_STEP, left))
            grown = self._gathering()
            if grown <= size:  # nothing arrived in a step: the burst is in, send it
                return
            size = grown

    def _gathering(self) -> int:
        """Items queued if a batch may still grow (0 when empty, full or closing)."""
        with self._lock:
            size = len(self._queue)
            return size if not self._closed and size < self.max_batch else 0

    def _take(self) -> tuple[list[_Item], list[_Item]]:
        """Up to ``max_batch`` queued items to send, and those whose deadline passed (now done
        with DEADLINE_EXCEEDED, never sent). Called with the lock held."""
        now = self._clock()
        batch: list[_Item] = []
        expired: list[_Item] = []
        while self._queue and len(batch) < self.max_batch:
            item = self._queue.popleft()
            if item.deadline is not None and item.deadline <= now:
                item.error = DeadlineExceeded("deadline passed while the Decrypt waited")
                item.state = _DONE
                del self._items[item.key]
                expired.append(item)
            else:
                item.state = _SENT
                batch.append(item)
        return batch, expired

    def _send(self, batch: list[_Item]) -> None:
        """One OpenBao request for *batch*; every item gets its outcome, whatever happens."""
        deadline = batch[0].deadline
        for item in batch:
            deadline = _later(deadline, item.deadline)
        outcomes: list[bytes | BaseException]
        try:
            if len(batch) == 1:  # the plain call: the same answer, a simpler body
                ciphertext, associated_data = batch[0].key
                outcomes = [self._transit.decrypt(ciphertext, associated_data, deadline=deadline)]
            else:
                answers = self._transit.decrypt_batch([i.key for i in batch], deadline=deadline)
                if len(answers) != len(batch):  # a bug: never leave an item without an outcome
                    raise RuntimeError("the batch answer does not match the batch")
                outcomes = list(answers)
        except Exception as error:  # noqa: BLE001 - a bug reaches each caller; the sender lives
            outcomes = [error] * len(batch)
        self._complete(batch, outcomes)

    def _complete(self, items: list[_Item], outcomes: list[bytes | BaseException]) -> None:
        """Hand *items* their outcomes and free their request slot."""
        waiting: list[LockType] = []
        with self._lock:
            answered = self._clock()  # under the lock: the kept answers stay in time order
            for item, outcome in zip(items, outcomes, strict=True):
                if isinstance(outcome, bytes):
                    item.plaintext = outcome
                    if not self._closed:
                        self._answers[item.key] = (answered, outcome)
                        self._answers.move_to_end(item.key)
                else:
                    item.error = outcome
                item.state = _DONE
                del self._items[item.key]
                if item.done is not None:
                    waiting.append(item.done)
            self._in_flight -= 1
            if self._queue:
                self._wakeup.notify()
            self._forget_answers(answered)
            if self._answers and self._sweeper is None and not self._closed:
                self._arm_sweeper()
        for done in waiting:
            done.release()

    def _arm_sweeper(self) -> None:
        """Drop the kept answers once they expire, traffic or not. Called with the lock held."""
        sweeper = threading.Timer(ANSWER_WINDOW, self._sweep)
        sweeper.name, sweeper.daemon = "bao-kms-answer-sweep", True
        self._sweeper = sweeper
        sweeper.start()

    def _sweep(self) -> None:
        with self._lock:
            self._sweeper = None
            self._forget_answers(self._clock())
            if self._answers and not self._closed:
                self._arm_sweeper()

    def _forget_answers(self, now: float) -> None:
        """Drop answers older than the window, and the oldest past ``MAX_ANSWERS``. Called with
        the lock held."""
        answers, oldest = self._answers, now - ANSWER_WINDOW
        while answers and (len(answers) > MAX_ANSWERS or next(iter(answers.values()))[0] < oldest):
            answers.popitem(last=False)
