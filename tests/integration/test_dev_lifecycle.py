"""``dev`` leaves nothing behind, even when SIGKILLed: no OpenBao process, no directory.

SIGKILL runs no clean-up in ``dev`` itself: the kernel kills its OpenBao child
(``PR_SET_PDEATHSIG``) and the next ``dev`` removes the directory the killed one left.
"""

from __future__ import annotations

import signal
import sys

import pytest

from _support.dev_process import DevProcess, wait_gone

pytestmark = [
    pytest.mark.openbao,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux"),
]


def test_sigkill_leaves_no_process_and_the_next_dev_removes_the_directory(socket_dir):
    env = {"TMPDIR": str(socket_dir)}  # dev's temporary directories land in this test's dir
    with DevProcess(env=env) as killed:
        killed.wait_serving()
        openbao_pid, workdir = killed.openbao_pid, killed.workdir
        assert (workdir / "owner").read_text().split()[0] == str(killed.pid)
        killed.signal(signal.SIGKILL)
        assert killed.wait(10) == -signal.SIGKILL
        assert wait_gone(openbao_pid, 5), "the OpenBao child outlived a SIGKILLed dev"
        assert workdir.is_dir()  # nobody could clean up yet

    with DevProcess(env=env) as following:
        following.wait_serving()
        assert not workdir.exists(), "the next dev did not remove the abandoned directory"
        assert following.workdir.is_dir()
        following.signal(signal.SIGTERM)
        assert following.wait(30) == 0
        assert wait_gone(following.openbao_pid, 10)
        assert not following.workdir.exists()
    assert list(socket_dir.iterdir()) == []
