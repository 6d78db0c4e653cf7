"""ArrivalInterceptor on a real grpcio server: each handler reads its own call's arrival, and
the stamp is taken when the call comes in, not when a worker thread gets to it.

Single-flight relies on that second point: two Decrypts sent together are concurrent even
when every worker is busy and the second handler starts after the first was answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from bao_kms.api.interceptors import CALL_ARRIVED, ArrivalInterceptor

pytestmark = pytest.mark.timeout(30)
METHOD = "/test.Arrival/Call"


class Seen(grpc.ServerInterceptor):
    """Runs after ArrivalInterceptor: tells the test that the server has taken a call in."""

    def __init__(self) -> None:
        self.count = 0
        self.second_call_in = threading.Event()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        self.count += 1
        if self.count == 2:
            self.second_call_in.set()
        return continuation(handler_call_details)


class Recorder:
    """The handler: records (its call's arrival, when the handler started, when it ended)."""

    def __init__(self, seen: Seen) -> None:
        self.seen = seen
        self.calls: list[tuple[float | None, float, float]] = []
        self.lock = threading.Lock()

    def handle(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        started = time.monotonic()
        arrived = CALL_ARRIVED.get(None)
        if request == b"first":
            # hold the only worker until the server has taken the second call in
            assert self.seen.second_call_in.wait(10)
        ended = time.monotonic()
        with self.lock:
            self.calls.append((arrived, started, ended))
        return request


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Recorder, grpc.Channel]]:
    seen = Seen()
    recorder = Recorder(seen)
    handler = grpc.method_handlers_generic_handler(
        "test.Arrival", {"Call": grpc.unary_unary_rpc_method_handler(recorder.handle)}
    )
    # one worker thread: the second call waits for it while the first is handled
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=1),
        handlers=[handler],
        interceptors=[ArrivalInterceptor(time.monotonic), seen],
    )
    address = f"unix:{tmp_path / 'arrival.sock'}"
    server.add_insecure_port(address)
    server.start()
    channel = grpc.insecure_channel(address)
    try:
        yield recorder, channel
    finally:
        channel.close()
        server.stop(None)


def test_a_call_that_waits_for_a_worker_arrived_before_the_call_ahead_of_it_ended(
    served: tuple[Recorder, grpc.Channel],
) -> None:
    recorder, channel = served
    call = channel.unary_unary(METHOD)
    first = call.future(b"first", timeout=10)
    while not recorder.seen.count:  # the first call is in before the second is sent
        time.sleep(0.005)
    second = call.future(b"second", timeout=10)
    assert first.result() == b"first" and second.result() == b"second"
    (first_arrived, _, first_ended), (second_arrived, second_started, _) = recorder.calls
    assert first_arrived is not None and second_arrived is not None
    assert second_started >= first_ended  # the second handler ran after the first answered
    assert second_arrived < first_ended  # ... yet its call had arrived while the first ran
    assert first_arrived < second_arrived  # each handler reads its own call's stamp


def test_each_call_reads_only_its_own_stamp(served: tuple[Recorder, grpc.Channel]) -> None:
    recorder, channel = served
    call = channel.unary_unary(METHOD)
    recorder.seen.second_call_in.set()  # nobody holds the worker
    for _ in range(5):
        call(b"other", timeout=10)
    arrivals = [arrived for arrived, _, _ in recorder.calls]
    assert all(arrived is not None for arrived in arrivals)
    assert arrivals == sorted(set(arrivals))  # five distinct stamps, in order
    assert CALL_ARRIVED.get(None) is None  # nothing leaked into the test's own context
