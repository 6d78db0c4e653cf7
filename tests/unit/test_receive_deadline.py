"""ReceiveDeadline on its own, with a fake request iterator and call context.

What grpcio does is pinned in ``test_hostile_requests.py`` against the real server; here each
path of a stream that ends without a message is driven deterministically: the client
half-closed it (the servicer's to refuse), or grpcio refused the message and is cancelling the
call (grpcio's own error must end the handler, nothing else).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import grpc
import pytest

from bao_kms.api import receive
from bao_kms.api.receive import ReceiveDeadline

pytestmark = pytest.mark.timeout(30)


class GrpcioCancelled(grpc.RpcError):
    """Stands for the error grpcio's request iterator raises on a cancelled call."""


class FakeCall:
    """The request stream and the context of one call; :meth:`end` is grpcio ending it."""

    def __init__(self, *, messages: list[bytes], ends_after: float | None) -> None:
        self._messages = list(messages)
        self._active = True
        self._cancelled = False
        self._callbacks: list[Callable[[], None]] = []
        self.cancel_calls = 0
        if ends_after is not None:  # grpcio marks the call cancelled a moment later
            threading.Timer(ends_after, self.end).start()

    def end(self) -> None:
        self._active, self._cancelled = False, True
        for callback in self._callbacks:
            callback()

    def requests(self) -> Iterator[bytes]:
        return self

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        # like grpcio's request iterator (not a generator): asked again after the end, it
        # raises for a cancelled call
        if self._cancelled:
            raise GrpcioCancelled()
        if not self._messages:
            raise StopIteration
        return self._messages.pop(0)

    # --- the grpc.ServicerContext methods ReceiveDeadline uses ---------------------------------

    def add_callback(self, callback: Callable[[], None]) -> bool:
        if not self._active:
            return False
        self._callbacks.append(callback)
        return True

    def is_active(self) -> bool:
        return self._active

    def cancel(self) -> None:
        self.cancel_calls += 1
        self.end()


@pytest.fixture
def receiver() -> Iterator[ReceiveDeadline]:
    deadline = ReceiveDeadline(timeout=10)
    deadline.start()
    yield deadline
    deadline.stop()


def test_a_message_is_returned(receiver: ReceiveDeadline) -> None:
    call = FakeCall(messages=[b"raw"], ends_after=None)
    assert receiver.receive(call.requests(), call) == b"raw"  # type: ignore[arg-type]


def test_a_stream_the_client_closed_without_a_message_is_the_servicers_to_refuse(
    receiver: ReceiveDeadline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(receive, "END_GRACE", 0.05)
    call = FakeCall(messages=[], ends_after=None)
    assert receiver.receive(call.requests(), call) is None  # type: ignore[arg-type]


def test_a_stream_grpcio_is_cancelling_ends_with_grpcios_error(
    receiver: ReceiveDeadline,
) -> None:
    # grpcio ended the stream (message too large) and marks the call cancelled 50 ms later
    call = FakeCall(messages=[], ends_after=0.05)
    with pytest.raises(GrpcioCancelled):
        receiver.receive(call.requests(), call)  # type: ignore[arg-type]


def test_a_call_already_over_is_not_waited_for(receiver: ReceiveDeadline) -> None:
    call = FakeCall(messages=[], ends_after=None)
    stream = call.requests()
    call.end()  # over before the handler looked: add_callback says so
    with pytest.raises(GrpcioCancelled):
        receiver.receive(stream, call)  # type: ignore[arg-type]


def test_a_stall_is_cancelled_by_the_watchdog() -> None:
    deadline = ReceiveDeadline(timeout=0.2)
    deadline.start()
    gate = threading.Event()
    call = FakeCall(messages=[], ends_after=None)

    def stalled() -> Iterator[bytes]:
        gate.wait(5)  # the message never comes, until the watchdog cancels the call
        raise GrpcioCancelled()
        yield b""

    original_end = call.end

    def end() -> None:
        original_end()
        gate.set()

    call.end = end  # type: ignore[method-assign]
    try:
        with pytest.raises(GrpcioCancelled):
            deadline.receive(stalled(), call)  # type: ignore[arg-type]
        assert (call.cancel_calls, deadline.stalled) == (1, 1)
    finally:
        deadline.stop()


def test_an_ended_stream_is_not_cancelled_as_a_stall_during_the_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The watchdog must not take the grace wait for a stall: the stream has ended."""
    monkeypatch.setattr(receive, "END_GRACE", 0.5)
    deadline = ReceiveDeadline(timeout=0.1)
    deadline.start()
    try:
        call = FakeCall(messages=[], ends_after=None)
        assert deadline.receive(call.requests(), call) is None  # type: ignore[arg-type]
        assert (call.cancel_calls, deadline.stalled) == (0, 0)
    finally:
        deadline.stop()
