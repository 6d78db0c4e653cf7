"""Signals a provider may get: none kills it without cleaning up.

SIGQUIT drains like SIGTERM; SIGUSR1, SIGUSR2, SIGALRM and the real-time signals are logged and
ignored; a forced exit (a second stop signal) still removes the socket and logs with ``ts``.
Also: the open-files limit raised at start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bao_kms.cli._output import EXIT_RUNTIME
from bao_kms.cli.signals import IGNORED_SIGNALS, STOP_SIGNALS, SignalLatch

pytestmark = pytest.mark.timeout(60)


def _start(body: str) -> subprocess.Popen[str]:
    script = textwrap.dedent(
        """
        import os, signal, sys, time
        from bao_kms.cli.signals import SignalLatch
        from bao_kms.logs import configure_logging
        configure_logging("info")
        with SignalLatch() as latch:
            print("ready", flush=True)
        """
    ) + textwrap.indent(textwrap.dedent(body), "    ")
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def _finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        code = process.wait(20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    out, err = process.communicate()
    return code, out, err


def test_every_catchable_terminating_signal_is_either_a_stop_or_ignored() -> None:
    assert signal.SIGQUIT in STOP_SIGNALS
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPROF, signal.SIGRTMIN):
        assert sig in IGNORED_SIGNALS
    for sig in (signal.SIGSEGV, signal.SIGKILL, signal.SIGCHLD, signal.SIGPIPE):
        assert sig not in IGNORED_SIGNALS


def test_stray_signals_are_logged_and_ignored_then_sigquit_drains() -> None:
    process = _start(
        """
        signum = latch.wait()
        print("stopping on", signal.Signals(signum).name, flush=True)
        """
    )
    strays = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGRTMIN + 3)
    for sig in strays:
        os.kill(process.pid, sig)
        time.sleep(0.05)
    time.sleep(0.3)  # the latch logs them from its wait loop
    assert process.poll() is None, "a stray signal ended the process"
    os.kill(process.pid, signal.SIGQUIT)
    code, out, err = _finish(process)
    assert code == 0 and "stopping on SIGQUIT" in out
    ignored = [json.loads(line) for line in err.splitlines() if "signal ignored" in line]
    assert [entry["signal"] for entry in ignored] == ["SIGUSR1", "SIGUSR2", "SIGALRM", "SIGRTMIN+3"]
    assert all("ts" in entry for entry in ignored)


def test_a_forced_exit_removes_the_socket_and_logs_with_ts(tmp_path: Path) -> None:
    marker = tmp_path / "socket-stand-in"
    marker.write_text("")
    process = _start(
        f"""
        latch.before_forced_exit = lambda: os.unlink({str(marker)!r})
        latch.wait()
        print("draining", flush=True)
        time.sleep(30)  # a drain that never ends
        """
    )
    os.kill(process.pid, signal.SIGTERM)
    assert process.stdout is not None and process.stdout.readline() == "draining\n"
    time.sleep(SignalLatch.DOUBLE_SIGNAL_WINDOW + 0.2)
    os.kill(process.pid, signal.SIGTERM)
    code, _, err = _finish(process)
    assert code == EXIT_RUNTIME
    assert not marker.exists()
    line = json.loads(next(x for x in err.splitlines() if "second signal" in x))
    assert line["ts"].endswith("Z") and line["level"] == "warning"


def test_serve_raises_the_soft_open_files_limit_to_the_hard_one() -> None:
    script = textwrap.dedent(
        """
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        from bao_kms.cli.serve import MAX_OPEN_FILES, raise_open_files_limit
        from bao_kms.logs import configure_logging
        configure_logging("info")
        raise_open_files_limit()
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        expected = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, MAX_OPEN_FILES)
        print(soft == expected, soft)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert result.stdout.startswith("True"), (result.stdout, result.stderr)
    logged = json.loads(next(x for x in result.stderr.splitlines() if "open files" in x))
    assert logged["soft"] == int(result.stdout.split()[1]) and "hard" in logged
