"""HA with a login method: three raft nodes listed, the leader killed under load.

The provider logs in with AppRole (6 s TTL, 15 s max TTL), so logins and renewals happen while
the leader dies and a new one is elected: they fail over across the addresses like every other
request, and not one Decrypt fails.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from _support import GOLDEN_IDENTITY
from _support.auth_methods import AppRoleSetup
from _support.openbao_tls import RaftCluster
from _support.provider_load import LoadedProvider, load_seconds, run_load
from bao_kms.openbao.auth import LoginStatus, RenewalStatus

pytestmark = [pytest.mark.openbao, pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[RaftCluster]:
    with RaftCluster() as running:
        running.leader().setup_transit()
        yield running


def test_killing_the_leader_under_load_fails_no_decrypt(
    cluster: RaftCluster,
    socket_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A token lives 6 s and dies 15 s after its login. During the election (~1.5 s) Transit
    # still works on the standbys but token calls do not, so a renewal due then must have
    # time to be retried: a third of the TTL (2 s) covers an election; production TTLs are
    # minutes to hours.
    setup = AppRoleSetup(cluster.api, tmp_path / "approle", ttl="6s", max_ttl="15s")
    setup.enable()
    document = {
        "server": {"socketPath": str(socket_dir / "kms.sock"), "gracePeriod": "5s"},
        # raft nodes on plain http to loopback: what the TLS tests cover is not the point here
        "openbao": {"addresses": cluster.addresses, "timeout": "2s", "allowInsecureHttp": True},
        "auth": setup.auth_section(),
        "identity": GOLDEN_IDENTITY,
        "status": {"probeInterval": "300ms", "deepProbeInterval": "1m", "maxStaleness": "10s"},
    }
    provider = LoadedProvider(document).start()
    try:
        provider.wait_healthz("ok")
        leader = cluster.leader()
        seconds = load_seconds(20.0)
        killed_at = 6.0
        result = run_load(
            provider.client, seconds, events=((killed_at, lambda: cluster.kill(leader)),)
        )
        new_leader = cluster.leader()
        logins, renewals = provider.stats.logins(), provider.stats.renewals()
        with capsys.disabled():
            print(
                f"\n  HA approle: {result.summary()}; killed {leader.node_id}, new leader "
                f"{new_leader.node_id}; encrypt failures {len(result.failed('encrypt'))}; "
                f"logins {_plain(logins)}; renewals {_plain(renewals)}"
            )
            for failure in result.failures[:5]:
                print(f"    {failure}")
        assert new_leader is not leader
        assert result.failed("decrypt") == []
        assert result.calls["decrypt"] > 100
        assert logins[LoginStatus.SUCCESS] >= 2  # logins went on through the failover
        assert renewals[RenewalStatus.SUCCESS] >= 2
    finally:
        provider.stop()


def _plain(counts: Mapping[Any, int]) -> dict[str, int]:
    return {str(status): count for status, count in counts.items() if count}
