"""SignalLatch: the signal handler must never block, whatever it interrupts; SIGHUP stops too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from _support import FakeClock
from bao_kms.cli._output import EXIT_RUNTIME
from bao_kms.cli.signals import STOP_SIGNALS, SignalLatch


def test_a_signal_landing_inside_the_handler_does_not_deadlock():
    """Simulate the second of two back-to-back signals interrupting the first handler (the
    case that once hung a provider forever): both invocations must return at once."""
    real_monotonic = time.monotonic
    nested: list[bool] = []

    def monotonic_interrupted_by_a_signal() -> float:
        if not nested:
            nested.append(True)
            latch._handle(signal.SIGTERM, None)
        return real_monotonic()

    latch = SignalLatch(clock=monotonic_interrupted_by_a_signal)
    finished = threading.Event()
    worker = threading.Thread(
        target=lambda: (latch._handle(signal.SIGTERM, None), finished.set()), daemon=True
    )
    worker.start()
    worker.join(5)
    assert finished.is_set(), "the handler blocked when a signal arrived inside it"
    assert latch.received == signal.SIGTERM


def test_sighup_and_sigquit_stop_like_sigterm_and_sigint():
    assert set(STOP_SIGNALS) == {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}


@pytest.mark.parametrize("signum", STOP_SIGNALS, ids=lambda s: s.name)
def test_wait_returns_on_a_real_signal(signum: signal.Signals):
    before = signal.getsignal(signum)
    with SignalLatch() as latch:
        threading.Timer(0.2, os.kill, (os.getpid(), signum)).start()
        assert latch.wait() == signum
    assert signal.getsignal(signum) is before  # the previous handler is back


def test_a_duplicate_within_the_window_counts_once():
    clock = FakeClock()
    latch = SignalLatch(clock=clock)
    latch._handle(signal.SIGTERM, None)
    clock.advance(SignalLatch.DOUBLE_SIGNAL_WINDOW / 2)
    latch._handle(signal.SIGHUP, None)  # would os._exit() if it counted as a second signal
    assert latch.received == signal.SIGTERM


def _run_latch_script(body: str) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from bao_kms.cli.signals import SignalLatch
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
        os.kill(process.pid, signal.SIGHUP)  # the operator insists
        assert process.wait(10) == EXIT_RUNTIME
        assert "second signal" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
