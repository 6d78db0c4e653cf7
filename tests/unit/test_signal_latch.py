"""SignalLatch: the signal handler must never block, whatever it interrupts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from bao_kms.cli import main as cli
from bao_kms.cli.main import SignalLatch


def test_a_signal_landing_inside_the_handler_does_not_deadlock(monkeypatch):
    """Simulate the second of two back-to-back signals interrupting the first handler (the
    case that once hung a provider forever): both invocations must return at once."""
    latch = SignalLatch()
    real_monotonic = time.monotonic
    nested: list[bool] = []

    def monotonic_interrupted_by_a_signal() -> float:
        if not nested:
            nested.append(True)
            latch._handle(signal.SIGTERM, None)
        return real_monotonic()

    monkeypatch.setattr(cli.time, "monotonic", monotonic_interrupted_by_a_signal)
    finished = threading.Event()
    worker = threading.Thread(
        target=lambda: (latch._handle(signal.SIGTERM, None), finished.set()), daemon=True
    )
    worker.start()
    worker.join(5)
    assert finished.is_set(), "the handler blocked when a signal arrived inside it"
    assert latch.received == signal.SIGTERM


def test_wait_returns_on_a_real_signal():
    with SignalLatch() as latch:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        assert latch.wait() == signal.SIGTERM


def _run_latch_script(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from bao_kms.cli.main import SignalLatch
        with SignalLatch() as latch:
            print("ready", flush=True)
        """
    ) + textwrap.indent(textwrap.dedent(body), "    ")
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout.readline() == "ready\n"
    return process


@pytest.mark.timeout(30)
def test_duplicate_delivery_counts_once_and_a_later_second_signal_forces_exit():
    process = _run_latch_script(
        """
        latch.wait()
        print("draining", flush=True)
        time.sleep(20)  # a drain that takes too long
        """
    )
    try:
        os.kill(process.pid, signal.SIGTERM)
        os.kill(process.pid, signal.SIGTERM)  # the same signal twice (group + forward)
        assert process.stdout.readline() == "draining\n"
        time.sleep(SignalLatch.DOUBLE_SIGNAL_WINDOW + 0.2)
        os.kill(process.pid, signal.SIGINT)  # the operator insists
        assert process.wait(10) == cli.EXIT_RUNTIME
        assert "second signal" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
