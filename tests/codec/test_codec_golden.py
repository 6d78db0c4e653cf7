"""Both twins reproduce the v1 golden vector byte for byte (DESIGN §3).

The vector was published by the Go provider; matching it means either provider can read what
the other wrote to etcd. The key_id is also re-derived here from the §3 recipe with hashlib
alone, so the codec cannot agree with itself on a wrong construction.
"""

from __future__ import annotations

import base64
import hashlib
from types import ModuleType
from typing import Any

import pytest

VERSIONS = (3, 2, 1)


def _created(golden: dict[str, Any], version: int) -> int:
    if version == golden["identity"]["transitVersion"]:
        return golden["identity"]["transitVersionCreatedAtUnix"]
    return golden["otherVersions"][str(version)]["createdAtUnix"]


def _expected_key_id(golden: dict[str, Any], version: int) -> str:
    if version == golden["identity"]["transitVersion"]:
        return golden["expectedKeyId"]
    return golden["otherVersions"][str(version)]["expectedKeyId"]


def _derive(codec: ModuleType, golden: dict[str, Any], version: int) -> str:
    identity = golden["identity"]
    return codec.derive_key_id(
        identity["providerName"],
        identity["clusterId"],
        identity["openbaoInstanceId"],
        "",
        identity["transitMountId"],
        identity["transitKeyLineageId"],
        version,
        _created(golden, version),
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_key_id(codec: ModuleType, golden: dict[str, Any], version: int) -> None:
    assert _derive(codec, golden, version) == _expected_key_id(golden, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_key_id_follows_the_design_recipe(
    codec: ModuleType, golden: dict[str, Any], version: int
) -> None:
    identity = golden["identity"]
    parts = [
        "openbao-kubernetes-kms/key-id/v1",
        identity["providerName"],
        identity["clusterId"],
        identity["openbaoInstanceId"],
        identity["transitMountId"],
        identity["transitKeyLineageId"],
        str(version),
        str(_created(golden, version)),
    ]
    digest = hashlib.sha256(b"".join(part.encode() + b"\0" for part in parts)).digest()
    key_id = _expected_key_id(golden, version)
    assert key_id == "obk2." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert codec.parse_key_id(key_id) == digest


def test_annotations(codec: ModuleType, golden: dict[str, Any]) -> None:
    identity = golden["identity"]
    annotations = codec.build_annotations(
        golden["expectedKeyId"],
        "",
        identity["transitMountId"],
        identity["transitKeyLineageId"],
        identity["transitVersion"],
        golden["pluginVersion"],
    )
    expected = {key: value.encode() for key, value in golden["expectedAnnotations"].items()}
    assert list(annotations.items()) == list(expected.items())
    assert codec.parse_annotations(annotations) == identity["transitVersion"]
    assert codec.match_annotations(expected, annotations) is None


def test_canonical_aad(codec: ModuleType, golden: dict[str, Any]) -> None:
    identity = golden["identity"]
    aad = codec.canonical_aad(
        identity["providerName"],
        identity["clusterId"],
        identity["openbaoInstanceId"],
        "",
        identity["transitMountId"],
        identity["transitKeyLineageId"],
        golden["expectedKeyId"],
        identity["transitVersion"],
    )
    assert aad == golden["expectedCanonicalAAD"].encode()


def test_transit_aad(codec: ModuleType, golden: dict[str, Any]) -> None:
    canonical = golden["expectedCanonicalAAD"].encode()
    assert codec.transit_aad(canonical) == golden["expectedTransitAAD"]


def test_hashes_in_the_vector(codec: ModuleType, golden: dict[str, Any]) -> None:
    identity = golden["identity"]
    annotations = golden["expectedAnnotations"]
    assert codec.hash_label(identity["transitMountId"]) == annotations[codec.ANN_MOUNT_HASH]
    assert codec.hash_label(identity["transitKeyLineageId"]) == annotations[codec.ANN_KEY_HASH]
    assert codec.hash_label(golden["expectedKeyId"]) == annotations[codec.ANN_KEY_ID_HASH]
