"""Config documents for the ``tests/unit/test_config_*`` modules: a minimal valid one, a way
to change one dotted key, and the message a refused document gets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bao_kms.config import parse_config
from bao_kms.errors import ConfigError

#: a word no validation message contains, so finding it in one means a value was echoed
MARKER = "Zorblaxian"

IDENTITY_FIELDS = [
    "providerName",
    "clusterId",
    "openbaoInstanceId",
    "transitMountId",
    "keyLineageId",
]


def minimal() -> dict[str, Any]:
    return {
        "openbao": {"addresses": ["https://bao.example.com:8200"]},
        "auth": {"method": "token", "token": {"file": "/etc/bao-kms/token"}},
        "identity": {
            "providerName": "openbao-kms-a",
            "clusterId": "cluster-a",
            "openbaoInstanceId": "bao-prod",
            "transitMountId": "transit-prod",
            "keyLineageId": "01HXLINEAGE",
        },
    }


def full() -> dict[str, Any]:
    """Every section and key given, none at its default."""
    document = minimal()
    document.update(
        server={
            "socketPath": "/run/kms/p.sock",
            "socketMode": "0640",
            "socketGroup": "kube",
            "gracePeriod": "3s",
            "workers": 4,
            "maxConcurrentRequests": 64,
        },
        transit={"mountPath": "kms/transit", "keyName": "apiserver"},
        status={"probeInterval": "10s", "deepProbeInterval": "5m", "maxStaleness": "1m"},
        rotation={"stableObservations": 5, "activationDelay": "10m"},
        state={"path": "/var/lib/openbao-kms/key-registry.json"},
        logging={"level": "debug"},
    )
    document["openbao"].update(caFile="/etc/ca.pem", namespace="team-a", timeout="500ms")
    return document


def with_value(path: str, value: Any, document: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of *document* (default: minimal) with the dotted *path* set to *value*."""
    document = copy.deepcopy(document or minimal())
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return document


def without(path: str, document: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of *document* (default: minimal) with the dotted *path* removed."""
    document = copy.deepcopy(document or minimal())
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[part]
    del node[last]
    return document


def refused(document: Any) -> str:
    """The ConfigError message *document* gets (the test fails if it is accepted)."""
    with pytest.raises(ConfigError) as info:
        parse_config(document)
    return str(info.value)
