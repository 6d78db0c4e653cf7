"""Status/Encrypt/Decrypt through the socket against a real OpenBao, as kube-apiserver calls."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest

from bao_kms.identity import Identity

pytestmark = pytest.mark.openbao

VECTORS = Path(__file__).resolve().parents[1] / "codec" / "key-aad-golden-v1.json"
FQDN = re.compile(
    r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+"
)


def test_round_trip_meets_the_kms_v2_contract(start_provider):
    running = start_provider()
    status = running.client.status()
    assert (status.version, status.healthz) == ("v2", "ok")
    assert 1 <= len(status.key_id) <= 1024 and status.key_id.startswith("obk2.")

    seed = os.urandom(32)
    encrypted = running.client.encrypt(seed, uid="uid-1")
    assert encrypted.key_id == status.key_id
    assert 1 <= len(encrypted.ciphertext) < 1024
    assert encrypted.ciphertext.startswith(b"vault:v1:")
    assert encrypted.ciphertext != seed and seed not in encrypted.ciphertext
    for key in encrypted.annotations:
        assert FQDN.fullmatch(key) and "/" not in key
    assert sum(len(k) + len(v) for k, v in encrypted.annotations.items()) <= 32768

    decrypted = running.client.decrypt(
        encrypted.ciphertext, encrypted.key_id, encrypted.annotations
    )
    assert decrypted.plaintext == seed


def test_wire_formats_are_the_golden_ones(start_provider, openbao):
    """With the golden labels, the provider's key_id/annotations/AAD are the v1 formats: the
    key_id is derived from the real key's creation time, and Transit accepts the golden-formula
    AAD (and nothing else) for the provider's ciphertext."""
    golden = json.loads(VECTORS.read_text())
    labels = golden["identity"]
    identity = Identity(
        provider_name=labels["providerName"],
        cluster_id=labels["clusterId"],
        openbao_instance_id=labels["openbaoInstanceId"],
        namespace="",
        transit_mount_id=labels["transitMountId"],
        key_lineage_id=labels["transitKeyLineageId"],
    )
    expected = identity.key_version(labels["transitVersion"], labels["transitVersionCreatedAtUnix"])
    assert expected.key_id == golden["expectedKeyId"]
    assert expected.associated_data == golden["expectedTransitAAD"]

    running = start_provider()  # conftest's default identity is the golden one
    created = openbao.api("GET", "transit/keys/kms")["data"]["keys"]["1"]
    live = identity.key_version(1, created)
    encrypted = running.client.encrypt(b"\x01" * 32)
    assert encrypted.key_id == live.key_id == running.client.status().key_id
    assert dict(encrypted.annotations) == dict(live.annotations)

    body = {"ciphertext": encrypted.ciphertext.decode(), "associated_data": live.associated_data}
    plaintext = openbao.api("POST", "transit/decrypt/kms", body)["data"]["plaintext"]
    assert base64.b64decode(plaintext) == b"\x01" * 32
    body["associated_data"] = base64.b64encode(b"{}").decode()
    status, _ = openbao.request("POST", "transit/decrypt/kms", body)
    assert status == 400


def test_status_makes_no_openbao_calls(start_provider):
    running = start_provider()
    running.provider.monitor.stop()  # no background probes during the count
    running.pool.reset()
    for _ in range(50):
        assert running.client.status().healthz == "ok"
    assert running.pool.count() == 0


def test_encrypt_pins_the_key_version(start_provider, fresh_key, openbao):
    """Encrypt sends an explicit key_version: after a rotation the provider keeps using the
    version its Status reports until it has observed and proven the new one."""
    mount, key = fresh_key()
    running = start_provider(mount=mount, key=key)
    running.provider.monitor.stop()  # freeze what the provider has observed
    key_id = running.client.status().key_id
    openbao.api("POST", f"{mount}/keys/{key}/rotate")
    encrypted = running.client.encrypt(os.urandom(32))
    assert encrypted.ciphertext.startswith(b"vault:v1:")
    assert encrypted.key_id == key_id
