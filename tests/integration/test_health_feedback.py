"""Status tells the truth within seconds, against a real OpenBao, on the shipped probe intervals.

The four cases of the issue, each of which failed before request-path feedback:

* the token loses ``decrypt``: Status stayed ``ok`` until the next deep probe (~5 min);
* ``min_encryption_version`` raised past the active version: Encrypt failed while Status said
  ``ok`` for up to ``probeInterval``;
* the token expired: PERMISSION_DENIED with the policy's remedy instead of UNAUTHENTICATED;
* start-up failures (unreachable, https on plain http, token refused, key or mount missing)
  were never logged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from _support import provider_document, wait_for
from _support.fake_openbao import RefusingAddress
from _support.json_logs import Lines, capture
from bao_kms.config import parse_config
from bao_kms.manifests import openbao_policy
from bao_kms.provider import Provider

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(180)]

#: Status reasons that name the token: the transport's lookup-self verdict, or the auth
#: method's own (it learns the same from its lookup and then sends nothing more)
TOKEN_REASONS = {"openbao_token_rejected", "auth_credential_invalid"}
#: the intervals a config that says nothing gets (README "Configuration")
SHIPPED = {"probeInterval": "30s", "deepProbeInterval": "5m", "maxStaleness": "2m"}


@pytest.fixture
def logs() -> Iterator[Lines]:
    with capture() as lines:
        yield lines


def code_of(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def without_decrypt(mount: str, key: str) -> str:
    policy = openbao_policy(mount, key)
    blocks = policy.split("path ")
    return "path ".join(block for block in blocks if f"{mount}/decrypt/" not in block)


def test_decrypt_revoked_turns_status_unhealthy_within_15s(
    openbao, fresh_key, start_provider, logs
):
    mount, key = fresh_key()
    running = start_provider(mount=mount, key=key, status=SHIPPED)
    seed = os.urandom(32)
    encrypted = running.client.encrypt(seed)

    def decrypt() -> Any:
        return running.client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations)

    revoking = logs.mark()
    openbao.api("PUT", f"sys/policies/acl/kms-{mount}", {"policy": without_decrypt(mount, key)})
    revoked = time.monotonic()

    def status_not_ok() -> Any:
        assert code_of(decrypt) is grpc.StatusCode.PERMISSION_DENIED  # what kube-apiserver sees
        status = running.client.status()
        return status if status.healthz != "ok" else None

    status = wait_for(status_not_ok, timeout=15, interval=0.2)
    took = time.monotonic() - revoked
    reasons = status.healthz.split(",")
    assert reasons == ["openbao_permission_denied", "deep_probe_decrypt_failed"], reasons
    assert status.key_id == ""
    assert code_of(lambda: running.client.encrypt(seed)) is grpc.StatusCode.FAILED_PRECONDITION
    warning = logs.last(event="status_unhealthy", after=revoking)
    assert warning["level"] == "warning" and warning["error_class"] == "permission_denied"
    assert "deep_probe_decrypt_failed" in warning["reasons"]
    print(f"decrypt revoked -> Status not ok after {took:.2f} s")

    restoring = logs.mark()
    openbao.api("PUT", f"sys/policies/acl/kms-{mount}", {"policy": openbao_policy(mount, key)})
    assert running.wait_healthy(timeout=15) == encrypted.key_id
    assert decrypt().plaintext == seed
    healthy = logs.last(event="status_healthy", after=restoring)
    assert healthy["level"] == "info" and "permission_denied" in healthy["previous"]


def test_min_encryption_version_raised_status_and_encrypt_agree_within_3s(
    openbao, fresh_key, start_provider
):
    mount, key = fresh_key()
    running = start_provider(mount=mount, key=key, status=SHIPPED)
    old_key_id = running.wait_healthy()
    openbao.api("POST", f"{mount}/keys/{key}/rotate")
    openbao.api("POST", f"{mount}/keys/{key}/config", {"min_encryption_version": 2})
    changed = time.monotonic()

    def agree() -> bool:
        status = running.client.status()
        try:
            encrypted = running.client.encrypt(os.urandom(32))
        except grpc.RpcError as error:
            return status.healthz != "ok" and error.code() is grpc.StatusCode.FAILED_PRECONDITION
        return status.healthz == "ok" and encrypted.key_id == status.key_id

    # kube-apiserver's traffic is what tells the provider: every poll is a Status and an Encrypt
    wait_for(agree, timeout=3, interval=0.05)
    took = time.monotonic() - changed
    for _ in range(10):  # and they keep agreeing
        assert agree()
    final = running.client.status()
    assert final.healthz != "ok" or final.key_id != old_key_id  # never the old key_id + ok
    print(f"min_encryption_version raised -> agreement after {took:.2f} s")


def test_expired_token_is_unauthenticated_and_a_new_token_heals_within_10s(
    openbao, fresh_key, start_provider, logs
):
    mount, key = fresh_key()
    running = start_provider(mount=mount, key=key, status=SHIPPED)
    seed = os.urandom(32)
    encrypted = running.client.encrypt(seed)
    token_file = Path(running.config.auth.token.file)

    def decrypt() -> Any:
        return running.client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations)

    short = openbao.api(
        "POST",
        "auth/token/create",
        {"policies": [f"kms-{mount}"], "ttl": "4s", "renewable": False},
    )["auth"]["client_token"]
    token_file.write_text(short)
    wait_for(lambda: code_of(decrypt) is grpc.StatusCode.OK, timeout=10)
    expiring = logs.mark()
    time.sleep(4.5)  # the token expires

    with pytest.raises(grpc.RpcError) as info:
        decrypt()
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # not PERMISSION_DENIED
    assert "token" in (info.value.details() or "")
    status = wait_for(lambda: _unhealthy(running), timeout=5, interval=0.1)
    assert TOKEN_REASONS & set(status.healthz.split(",")), status.healthz
    assert "openbao_permission_denied" not in status.healthz
    warning = logs.last(event="status_unhealthy", after=expiring)
    assert warning["error_class"] in ("token_rejected", "no_token")

    token_file.write_text(openbao.create_token(openbao_policy(mount, key), f"kms-{mount}"))
    renewed = time.monotonic()
    wait_for(lambda: running.client.status().healthz == "ok", timeout=10, interval=0.1)
    print(f"new token -> healthy after {time.monotonic() - renewed:.2f} s")
    assert decrypt().plaintext == seed


def _unhealthy(running: Any) -> Any:
    status = running.client.status()
    return status if status.healthz != "ok" else None


# --- each start-up failure is named in a warning within 10 s ---------------------------------


@pytest.fixture
def refusing() -> Iterator[RefusingAddress]:
    with RefusingAddress() as address:
        yield address


def start_failing(
    openbao: Any, socket_dir: Path, case: str, refusing: RefusingAddress
) -> dict[str, Any]:
    mount, key = "transit", "kms"
    if case == "key_missing":
        key = "no-such-key"
    if case == "mount_missing":
        mount = "no-such-mount"
    # the policy names what the config names (both wrong together, as an operator's typo is)
    token_file = socket_dir / "token"
    token_file.write_text(openbao.create_token(openbao_policy(mount, key), f"kms-{case}"))
    if case == "token_refused":
        token_file.write_text("s.not-a-token-of-this-openbao")
    token_file.chmod(0o600)
    document = provider_document(
        openbao, token_file, socket_dir / "kms.sock", mount=mount, key=key, status=SHIPPED
    )
    if case == "unreachable":
        document["openbao"]["addresses"] = [refusing.address]
    if case == "https_to_http":
        document["openbao"]["addresses"] = [openbao.address.replace("http://", "https://")]
    return document


@pytest.mark.parametrize(
    ("case", "reason", "error_class"),
    [
        ("unreachable", "openbao_unavailable", "connection_failed"),
        ("https_to_http", "openbao_unavailable", "tls_failed"),
        ("token_refused", "openbao_token_rejected", "token_rejected"),
        ("key_missing", "openbao_not_found", "not_found"),
        ("mount_missing", "openbao_not_found", "not_found"),
    ],
)
def test_a_failing_start_says_why_within_10s(
    openbao, socket_dir, refusing, logs, case, reason, error_class
):
    document = start_failing(openbao, socket_dir, case, refusing)
    provider = Provider(parse_config(document))
    started = time.monotonic()
    provider.start()
    try:
        warning = wait_for(lambda: logs.find(event="status_unhealthy"), timeout=10)[0]
    finally:
        provider.stop(grace=0.5)
    assert warning["level"] == "warning"
    assert reason in warning["reasons"] and warning["error_class"] == error_class
    print(f"{case}: named after {time.monotonic() - started:.2f} s")


def test_serve_logs_an_unreachable_openbao_within_10s(openbao, socket_dir, refusing):
    """The real command, its real stderr: no more "serving" and "started" forever."""
    document = start_failing(openbao, socket_dir, "unreachable", refusing)
    config = socket_dir / "config.yaml"
    config.write_text(yaml.safe_dump(document))
    process = subprocess.Popen(
        [sys.executable, "-m", "bao_kms", "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        seen = []
        assert process.stderr is not None
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            if '"event":"status_unhealthy"' in line:
                break
        named = [line for line in seen if '"event":"status_unhealthy"' in line]
        assert named, "".join(seen)
        assert '"error_class":"connection_failed"' in named[0] and '"level":"warning"' in named[0]
        started = [line for line in seen if '"event":"started"' in line]
        assert started and '"health_address":"127.0.0.1:' in started[0]
        # serve settled the garbage collector once the provider had started
        assert json.loads(started[0])["gc_frozen_objects"] > 1000
    finally:
        process.terminate()
        process.wait(15)
        if process.stderr is not None:
            process.stderr.close()
