"""A workload with known secrets through every failure path; none of them anywhere it shows.

Known values: the OpenBao tokens, a plaintext, the ciphertexts, the Transit key and mount
names and the five identity labels. The workload runs success and every failure path of the
health work (tampered and mismatched requests, unknown key_ids, the policy losing decrypt, the
token revoked, a key version restriction, the mount gone, OpenBao unreachable and https on a
plain-http server at start). Then the scan looks for each secret raw, in hex and in base64
(standard and URL-safe, padded or not) in every log line (debug level), every ``/metrics`` and
``/ready`` body and every gRPC error message the calls got.
"""

from __future__ import annotations

import base64
import http.client
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc
import pytest

from _support import provider_document, wait_for
from _support.fake_openbao import RefusingAddress
from _support.json_logs import capture
from bao_kms.config import parse_config
from bao_kms.manifests import openbao_policy
from bao_kms.ops.http import split_address
from bao_kms.provider import Provider

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(180)]

MOUNT = "leakcanary-mount-7f3a"
KEY = "leakcanary-key-9b2c"
IDENTITY = {
    "providerName": "leakcanary-provider-a1",
    "clusterId": "leakcanary-cluster-b2",
    "openbaoInstanceId": "leakcanary-bao-c3",
    "transitMountId": "leakcanary-transit-d4",
    "keyLineageId": "leakcanary-lineage-e5",
}
PLAINTEXT = b"LEAKCANARY-PLAINTEXT-0123456789!"
FAST = {"probeInterval": "500ms", "deepProbeInterval": "1m", "maxStaleness": "10s"}


def forms(secret: bytes) -> set[str]:
    """*secret* as it could show up in text: raw, hex, base64 and base64url (+/- padding)."""
    shown = {secret.hex(), secret.hex().upper()}
    for encoded in (base64.b64encode(secret), base64.urlsafe_b64encode(secret)):
        shown |= {encoded.decode(), encoded.decode().rstrip("=")}
    try:
        shown.add(secret.decode())
    except UnicodeDecodeError:
        pass
    return {form for form in shown if len(form) >= 8}


class Workload:
    """Calls that fail on purpose, collecting every message a caller would see."""

    def __init__(self, running: Any) -> None:
        self.running = running
        self.messages: list[str] = []

    def expect(self, call: Any, *codes: grpc.StatusCode) -> None:
        try:
            call()
        except grpc.RpcError as error:
            self.messages.append(error.details() or "")
            if codes:
                assert error.code() in codes, (error.code(), error.details())
            return
        if codes:
            pytest.fail(f"expected one of {codes}")

    def http(self, path: str) -> str:
        host, port = split_address(self.running.provider.ops.addresses[path])
        connection = http.client.HTTPConnection(host, port, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        finally:
            connection.close()


def scan(haystacks: Iterable[str], secrets: dict[str, bytes]) -> list[str]:
    found = []
    for text in haystacks:
        for name, secret in secrets.items():
            for form in forms(secret):
                if form in text:
                    found.append(f"{name} as {form!r} in: {text[:300]}")
    return found


def test_no_secret_in_logs_metrics_or_messages(openbao, start_provider, socket_dir):
    openbao.setup_transit(MOUNT, KEY)
    secrets: dict[str, bytes] = {
        "mount": MOUNT.encode(),
        "key": KEY.encode(),
        "plaintext": PLAINTEXT,
        **{label: value.encode() for label, value in IDENTITY.items()},
    }
    bodies: list[str] = []
    with capture(logging.DEBUG) as logs:
        running = start_provider(mount=MOUNT, key=KEY, identity=IDENTITY, status=FAST)
        token_file = Path(running.config.auth.token.file)
        secrets["token"] = token_file.read_bytes().strip()
        work = Workload(running)
        client = running.client
        encrypted = client.encrypt(PLAINTEXT)
        secrets["ciphertext"] = encrypted.ciphertext
        secrets["ciphertext_body"] = encrypted.ciphertext.split(b":", 2)[2]
        assert (
            client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations).plaintext
            == PLAINTEXT
        )

        def decrypt(ciphertext: bytes = encrypted.ciphertext, key_id: str = encrypted.key_id,
                    annotations: Any = None) -> Any:  # fmt: skip
            return client.decrypt(ciphertext, key_id, annotations or encrypted.annotations)

        # --- the caller's mistakes ----------------------------------------------------------
        tampered = encrypted.ciphertext[:-6] + (b"AAAAAA" if not encrypted.ciphertext.endswith(
            b"AAAAAA") else b"BBBBBB")  # fmt: skip
        work.expect(lambda: decrypt(ciphertext=tampered), grpc.StatusCode.INVALID_ARGUMENT)
        work.expect(lambda: decrypt(ciphertext=b"vault:v1:" + PLAINTEXT))
        work.expect(lambda: decrypt(key_id=PLAINTEXT.decode()), grpc.StatusCode.INVALID_ARGUMENT)
        work.expect(lambda: decrypt(key_id="obk2." + "A" * 43))
        bad = dict(encrypted.annotations)
        bad["key-id-hash.kms.openbao.org"] = PLAINTEXT
        work.expect(lambda: decrypt(annotations=bad), grpc.StatusCode.INVALID_ARGUMENT)
        work.expect(lambda: client.encrypt(PLAINTEXT * 40), grpc.StatusCode.INVALID_ARGUMENT)

        # --- the policy loses decrypt ------------------------------------------------------
        policy = openbao_policy(MOUNT, KEY)
        no_decrypt = "path ".join(
            block for block in policy.split("path ") if f"{MOUNT}/decrypt/" not in block
        )
        openbao.api("PUT", f"sys/policies/acl/kms-{MOUNT}", {"policy": no_decrypt})
        work.expect(decrypt, grpc.StatusCode.PERMISSION_DENIED)
        wait_for(lambda: "deep_probe_decrypt_failed" in client.status().healthz, timeout=15)
        work.expect(lambda: client.encrypt(PLAINTEXT), grpc.StatusCode.FAILED_PRECONDITION)
        bodies += [work.http("/ready"), work.http("/metrics")]
        openbao.api("PUT", f"sys/policies/acl/kms-{MOUNT}", {"policy": policy})
        running.wait_healthy()

        # --- the token is revoked, then replaced -------------------------------------------
        openbao.api("POST", "auth/token/revoke", {"token": secrets["token"].decode()})
        work.expect(decrypt, grpc.StatusCode.UNAUTHENTICATED)
        token_reasons = {"openbao_token_rejected", "auth_credential_invalid"}
        wait_for(lambda: token_reasons & set(client.status().healthz.split(",")), timeout=15)
        bodies += [work.http("/ready"), work.http("/metrics")]
        fresh = openbao.create_token(policy, f"kms-{MOUNT}")
        secrets["new_token"] = fresh.encode()
        token_file.write_text(fresh)
        running.wait_healthy(timeout=20)

        # --- a key version restriction -----------------------------------------------------
        openbao.api("POST", f"{MOUNT}/keys/{KEY}/rotate")
        openbao.api("POST", f"{MOUNT}/keys/{KEY}/config", {"min_encryption_version": 2})
        work.expect(lambda: client.encrypt(PLAINTEXT))
        # Status and Encrypt agree again: blocked (not ok, refused) or v2 active (ok, works)
        wait_for(lambda: client.status().healthz != "ok", timeout=15)
        work.expect(lambda: client.encrypt(PLAINTEXT), grpc.StatusCode.FAILED_PRECONDITION)

        # --- the mount is gone -------------------------------------------------------------
        openbao.api("DELETE", f"sys/mounts/{MOUNT}")
        work.expect(decrypt)
        wait_for(lambda: "openbao_not_found" in client.status().healthz, timeout=15)
        work.expect(lambda: client.encrypt(PLAINTEXT), grpc.StatusCode.FAILED_PRECONDITION)
        bodies += [work.http("/ready"), work.http("/metrics")]

        # --- start-up failures with the same secrets ---------------------------------------
        with RefusingAddress() as refusing:
            for address in (refusing.address, openbao.address.replace("http://", "https://")):
                document = provider_document(
                    openbao, token_file, socket_dir / "other.sock", mount=MOUNT, key=KEY,
                    identity=IDENTITY, status=FAST,
                )  # fmt: skip
                document["openbao"]["addresses"] = [address]
                other = Provider(parse_config(document))
                other.start()
                try:
                    monitor = other.monitor
                    wait_for(lambda: monitor.snapshot.error_class, 10)  # noqa: B023 - called here
                finally:
                    other.stop(grace=0.5)
        time.sleep(0.2)
        lines = list(logs.text)

    assert len(lines) > 20 and len(work.messages) >= 10  # the scan looked at something
    planted = base64.b64encode(secrets["token"]).decode()  # and it would see a leak
    assert scan([f"msg {planted} end", f"x {PLAINTEXT.hex()}"], secrets)
    leaks = scan([*lines, *bodies, *work.messages], secrets)
    assert leaks == [], "\n".join(leaks[:20])
