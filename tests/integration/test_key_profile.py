"""Keys or mounts that break the safe profile make Status unhealthy, naming the problem."""

from __future__ import annotations

import grpc
import pytest

from _support import wait_for

pytestmark = pytest.mark.openbao


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"key_options": {"deletion_allowed": True}}, "key_deletion_allowed"),
        ({"key_options": {"exportable": True}}, "key_exportable"),
        ({"key_options": {"allow_plaintext_backup": True}}, "key_plaintext_backup_allowed"),
        ({"disable_upsert": False}, "mount_upsert_enabled"),
    ],
)
def test_unsafe_profile_is_unhealthy(start_provider, fresh_key, setup, reason):
    mount, key = fresh_key(**setup)
    running = start_provider(mount=mount, key=key, wait=False)
    status = wait_for(lambda: (s := running.client.status()).healthz != "not_probed_yet" and s)
    assert status.healthz != "ok"
    assert reason in status.healthz.split(",")
    assert status.key_id == ""
    with pytest.raises(grpc.RpcError) as info:
        running.client.encrypt(b"x" * 32)
    assert info.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_profile_turning_unsafe_at_runtime_is_noticed(start_provider, fresh_key, openbao):
    mount, key = fresh_key()
    running = start_provider(mount=mount, key=key)
    openbao.api("POST", f"{mount}/keys/{key}/config", {"deletion_allowed": True})
    status = wait_for(lambda: (s := running.client.status()).healthz != "ok" and s)
    assert "key_deletion_allowed" in status.healthz
    openbao.api("POST", f"{mount}/keys/{key}/config", {"deletion_allowed": False})
    running.wait_healthy()


def test_missing_key_is_unhealthy_with_a_reason(start_provider, fresh_key):
    mount, _ = fresh_key()
    running = start_provider(mount=mount, key="absent", wait=False)
    status = wait_for(lambda: (s := running.client.status()).healthz != "not_probed_yet" and s)
    assert status.healthz == "openbao_not_found"  # named, not a generic read failure
