"""Config sections: defaults, unknown keys, wrong types, cross-field checks, dump and reload.

Every refusal names its camelCase field path; field types have their own module
(test_config_fields), as do auth, loading and the JSON Schema.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from _support.config_documents import IDENTITY_FIELDS, MARKER, full, minimal, refused, with_value
from bao_kms.config import DEFAULT_SOCKET, parse_config

# --- the valid case -----------------------------------------------------------------------------


def test_minimal_document_gets_documented_defaults() -> None:
    config = parse_config(minimal())
    assert config.server.socket_path == DEFAULT_SOCKET == "/run/openbao-kms/kms.sock"
    assert config.server.socket_mode == 0o660
    assert config.server.socket_group is None
    assert config.server.grace_period == 10.0
    assert config.server.workers == 64
    assert config.server.max_concurrent_requests == 1024
    assert config.openbao.addresses == ["https://bao.example.com:8200"]
    assert config.openbao.ca_file is None
    assert config.openbao.namespace == ""
    assert config.openbao.timeout == 2.0
    assert config.auth.method == "token"
    assert config.auth.token is not None and config.auth.token.file == Path("/etc/bao-kms/token")
    assert config.identity.cluster_id == "cluster-a"
    assert config.transit.mount_path == "transit"
    assert config.transit.key_name == "kms"
    assert (
        config.status.probe_interval,
        config.status.deep_probe_interval,
        config.status.max_staleness,
    ) == (30.0, 300.0, 120.0)
    assert config.logging.level == "info"
    assert config.openbao.decrypt_batching is True
    assert (config.openbao.decrypt_batch_max, config.openbao.decrypt_queue_max) == (128, 1024)
    assert config.openbao.decrypt_batch_linger == 0.005


def test_full_document_is_read_into_python_names() -> None:
    config = parse_config(full())
    assert config.server.socket_path == "/run/kms/p.sock"
    assert config.server.socket_mode == 0o640
    assert config.server.socket_group == "kube"
    assert config.server.grace_period == 3.0
    assert (config.server.workers, config.server.max_concurrent_requests) == (4, 64)
    assert config.openbao.ca_file == Path("/etc/ca.pem")
    assert config.openbao.timeout == 0.5
    assert config.transit.mount_path == "kms/transit"
    assert config.status.deep_probe_interval == 300.0
    assert config.status.max_staleness == 60.0
    assert config.logging.level == "debug"
    assert config.provider_identity().namespace == "team-a"


# --- unknown keys -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "section",
    ["", "server", "openbao", "auth", "auth.token", "identity", "transit", "status", "logging"],
)
def test_unknown_key_is_refused_at_every_level(section: str) -> None:
    """The section is named, the unknown key is not: it could be a secret pasted as a key."""
    path = f"{section}.{MARKER}Key" if section else f"{MARKER}Key"
    message = refused(with_value(path, "x"))
    assert f"{section or '(top level)'}: unknown key" in message
    assert MARKER not in message


def test_snake_case_key_is_refused_as_unknown_with_a_suggestion() -> None:
    message = refused(with_value("server.socket_path", "/run/x/kms.sock"))
    assert "server: unknown key (did you mean socketPath?)" in message
    assert "socket_path" not in message


# --- wrong types --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("server", "not-a-mapping"),
        ("server.workers", "many"),
        ("server.workers", 0),
        ("server.workers", 10_000),
        ("server.maxConcurrentRequests", 0),
        ("server.socketGroup", ["wheel"]),
        ("openbao.addresses", "https://bao.example.com"),
        ("openbao.caFile", ["a", "b"]),
        ("openbao.namespace", 7),
        ("auth.method", "kubernetes"),
        ("auth.token", "/etc/token"),
        ("identity.clusterId", 123),
        ("identity.keyLineageId", None),
        ("transit.keyName", 5),
        ("status.probeInterval", 30),
        ("logging.level", "verbose"),
        ("openbao.decryptBatchLinger", "100ms"),
        ("openbao.decryptBatchLinger", 5),
        ("openbao.decryptBatchMax", 250),
        ("openbao.decryptQueueMax", 0),
    ],
)
def test_wrong_type_or_value_names_the_field(path: str, value: Any) -> None:
    assert path in refused(with_value(path, value))


@pytest.mark.parametrize(("value", "seconds"), [("0s", 0.0), ("500us", None), ("2ms", 0.002)])
def test_batch_linger_takes_zero_and_milliseconds(value: str, seconds: float | None) -> None:
    if seconds is None:
        assert "openbao.decryptBatchLinger" in refused(
            with_value("openbao.decryptBatchLinger", value)
        )
        return
    config = parse_config(with_value("openbao.decryptBatchLinger", value))
    assert config.openbao.decrypt_batch_linger == seconds


@pytest.mark.parametrize("value", ["0s", "0.5ms", "2.5ms", "5ms", "50ms"])
def test_batch_linger_survives_a_dump_and_reload(value: str) -> None:
    config = parse_config(with_value("openbao.decryptBatchLinger", value))
    dumped = config.model_dump(mode="json", by_alias=True)
    reloaded = parse_config(dumped)
    assert reloaded.openbao.decrypt_batch_linger == config.openbao.decrypt_batch_linger


def test_batch_linger_range_is_said_in_words() -> None:
    message = refused(with_value("openbao.decryptBatchLinger", "1s"))
    assert "must be between 0s and 50ms" in message


def test_boolean_is_not_an_integer() -> None:
    assert "server.workers" in refused(with_value("server.workers", True))


@pytest.mark.parametrize("section", ["openbao", "auth", "identity"])
def test_missing_required_section_is_named(section: str) -> None:
    document = minimal()
    del document[section]
    assert section in refused(document)


@pytest.mark.parametrize("field", IDENTITY_FIELDS)
def test_missing_identity_label_is_named(field: str) -> None:
    document = minimal()
    del document["identity"][field]
    assert f"identity.{field}" in refused(document)


@pytest.mark.parametrize(("probe", "stale"), [("30s", "30s"), ("1m", "30s"), ("2m", "1m")])
def test_max_staleness_must_exceed_probe_interval(probe: str, stale: str) -> None:
    document = with_value("status", {"probeInterval": probe, "maxStaleness": stale})
    message = refused(document)
    assert "status" in message and "maxStaleness" in message


def test_max_staleness_just_above_probe_interval_accepted() -> None:
    document = with_value("status", {"probeInterval": "30s", "maxStaleness": "31s"})
    assert parse_config(document).status.max_staleness == 31.0


def test_several_problems_are_all_reported() -> None:
    document = with_value("identity.clusterId", "")
    document = with_value("server.socketMode", "0666", document)
    message = refused(document)
    assert "identity.clusterId" in message and "server.socketMode" in message


def test_top_level_not_a_mapping_refused() -> None:
    assert "mapping" in refused(["server", "openbao"])


def test_log_level_is_case_insensitive():
    assert parse_config(with_value("logging.level", "INFO")).logging.level == "info"


def test_dumped_config_loads_again():
    """config check --output json prints durations and mode as the file writes them."""
    config = parse_config(with_value("openbao.timeout", "1500ms"))
    dumped = config.model_dump(mode="json", by_alias=True)
    assert dumped["openbao"]["timeout"] == "1500ms"
    assert dumped["server"]["socketMode"] == "0660"
    assert dumped["status"]["deepProbeInterval"] == "5m"
    assert parse_config(dumped) == config


def test_provider_name_must_not_contain_a_colon() -> None:
    message = refused(with_value("identity.providerName", "kms:prod"))
    assert "identity.providerName" in message and "':'" in message
