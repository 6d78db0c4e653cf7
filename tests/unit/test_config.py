"""Config validation: defaults, every refusal naming its camelCase field path, load_config."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from bao_kms.config import DEFAULT_SOCKET, Config, load_config, parse_config
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


def with_value(path: str, value: Any, document: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of *document* (default: minimal) with the dotted *path* set to *value*."""
    document = copy.deepcopy(document or minimal())
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return document


def refused(document: Any) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(document)
    return str(info.value)


# --- the valid case -----------------------------------------------------------------------------


def test_minimal_document_gets_documented_defaults() -> None:
    config = parse_config(minimal())
    assert config.server.socket_path == DEFAULT_SOCKET == "/run/openbao-kms/kms.sock"
    assert config.server.socket_mode == 0o660
    assert config.server.socket_group is None
    assert config.server.grace_period == 10.0
    assert config.server.workers == 16
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


def test_full_document_is_read_into_python_names() -> None:
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
        logging={"level": "debug"},
    )
    document["openbao"].update(caFile="/etc/ca.pem", namespace="team-a", timeout="500ms")
    config = parse_config(document)
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
    path = f"{section}.bogusKey" if section else "bogusKey"
    message = refused(with_value(path, "x"))
    assert path in message
    assert "unknown key" in message


def test_snake_case_key_is_refused_as_unknown() -> None:
    message = refused(with_value("server.socket_path", "/run/x/kms.sock"))
    assert "server.socket_path" in message


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
        ("logging.level", "verbose"),
    ],
)
def test_wrong_type_or_value_names_the_field(path: str, value: Any) -> None:
    assert path in refused(with_value(path, value))


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


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), ("250ms", 0.25)],
)
def test_duration_forms_accepted(text: str, seconds: float) -> None:
    config = parse_config(with_value("status.deepProbeInterval", text))
    assert config.status.deep_probe_interval == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["10", 10, 2.5, "2 s", "-1s", "abc", "1d", "", "s", "2S", "0s"])
def test_bad_duration_refused_with_field_named(value: Any) -> None:
    message = refused(with_value("openbao.timeout", value))
    assert "openbao" in message and "timeout" in message


@pytest.mark.parametrize(
    "path",
    [
        "server.gracePeriod",
        "status.probeInterval",
        "status.deepProbeInterval",
        "status.maxStaleness",
    ],
)
def test_every_duration_field_refuses_bare_numbers(path: str) -> None:
    assert path in refused(with_value(path, "10"))


# --- socket -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mode"), [("0660", 0o660), ("0640", 0o640), ("0600", 0o600)])
def test_socket_mode_accepted(text: str, mode: int) -> None:
    assert parse_config(with_value("server.socketMode", text)).server.socket_mode == mode


@pytest.mark.parametrize(
    "value",
    ["0666", "0662", "0777", "0999", "0668", 660, 0o660, "rw-rw----", "", "0x1b0"],
)
def test_bad_socket_mode_refused(value: Any) -> None:
    assert "server.socketMode" in refused(with_value("server.socketMode", value))


def test_world_writable_socket_mode_says_why() -> None:
    assert "world-writable" in refused(with_value("server.socketMode", "0666"))


@pytest.mark.parametrize("value", ["kms.sock", "run/kms.sock", "./kms.sock", ""])
def test_relative_socket_path_refused(value: str) -> None:
    message = refused(with_value("server.socketPath", value))
    assert "server" in message and "socketPath" in message


@pytest.mark.parametrize(
    ("path", "value"),
    [("server.socketPath", "kms.sock"), ("openbao.namespace", "a b"), ("openbao.timeout", "0s")],
)
def test_model_level_check_names_the_dotted_field_path(path: str, value: str) -> None:
    assert path in refused(with_value(path, value))


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://127.0.0.1:8200", "http://127.0.0.1:8200"),
        ("https://bao.example.com", "https://bao.example.com"),
        ("https://bao.example.com:8200/", "https://bao.example.com:8200"),
        ("http://[::1]:8200", "http://[::1]:8200"),
    ],
)
def test_address_accepted(given: str, kept: str) -> None:
    document = with_value("openbao.addresses", [given, "https://other:8200"])
    assert parse_config(document).openbao.addresses == [kept, "https://other:8200"]


@pytest.mark.parametrize(
    "address",
    [
        "https://bao.example.com/v1",
        "https://bao.example.com:8200/v1/sys",
        "https://bao.example.com?x=1",
        "https://bao.example.com/?x=1",
        "https://bao.example.com#frag",
        "ftp://bao.example.com",
        "bao.example.com:8200",
        "https://",
        "https://bao example.com",
        "",
    ],
)
def test_bad_address_refused(address: str) -> None:
    assert "openbao.addresses" in refused(
        with_value("openbao.addresses", ["https://good:8200", address])
    )


@pytest.mark.parametrize(
    "address",
    [
        "http://user:secret@bao.example.com:8200",
        "http://:8200",
        "http://bao.example.com:abc",
        "http://bao.example.com:99999",
    ],
)
def test_address_is_host_and_port_only(address: str) -> None:
    assert "openbao.addresses" in refused(with_value("openbao.addresses", [address]))


def test_empty_address_list_refused() -> None:
    assert "openbao.addresses" in refused(with_value("openbao.addresses", []))


# --- identity labels ----------------------------------------------------------------------------


BAD_LABELS = {
    "empty": "",
    "space": f"{MARKER} cluster",
    "leading-space": f" {MARKER}",
    "tab": f"{MARKER}\tcluster",
    "newline": f"{MARKER}\ncluster",
    "nbsp": f"{MARKER}\u00a0cluster",
    "line-separator": f"{MARKER}\u2028cluster",
    "bell": f"{MARKER}\x07cluster",
    "nul": f"{MARKER}\x00cluster",
    "del": f"{MARKER}\x7fcluster",
    "zero-width-space": f"{MARKER}\u200bcluster",
    "zero-width-joiner": f"{MARKER}\u200dcluster",
    "bom": f"\ufeff{MARKER}",
    "rtl-override": f"{MARKER}\u202ecluster",
    "non-nfc": f"{MARKER}-cluste\u0301r",
    "decomposed-umlaut": f"{MARKER}-clu\u0308ster",
    "too-long": MARKER + "x" * (257 - len(MARKER)),
}


@pytest.mark.parametrize("field", IDENTITY_FIELDS)
@pytest.mark.parametrize("label", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_bad_identity_label_refused_without_echoing_it(field: str, label: str) -> None:
    message = refused(with_value(f"identity.{field}", label))
    assert f"identity.{field}" in message
    assert MARKER not in message
    if label:
        assert label not in message


@pytest.mark.parametrize(
    "label", ["clüster-ä", "集群-1", "01HXEXAMPLEKEYLINEAGEID", "a", "x" * 256, "bao.prod_a-1/x"]
)
def test_good_identity_label_accepted(label: str) -> None:
    for field in IDENTITY_FIELDS:
        config = parse_config(with_value(f"identity.{field}", label))
        assert getattr(config.identity, _snake(field)) == label


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


@pytest.mark.parametrize(
    "label", [BAD_LABELS["space"], BAD_LABELS["zero-width-space"], BAD_LABELS["non-nfc"]]
)
def test_bad_namespace_refused_without_echoing_it(label: str) -> None:
    message = refused(with_value("openbao.namespace", label))
    assert "namespace" in message
    assert MARKER not in message


@pytest.mark.parametrize("namespace", ["team-a", "team-a/child", "ns_1.prod"])
def test_normal_namespace_accepted(namespace: str) -> None:
    assert parse_config(with_value("openbao.namespace", namespace)).openbao.namespace == namespace


@pytest.mark.parametrize("namespace", ["team-ä", "团队", "a//b", "../x", "a/"])
def test_namespace_must_be_a_plain_openbao_path(namespace: str) -> None:
    """It travels as the X-Vault-Namespace header, so it must be plain ASCII path segments."""
    assert "openbao.namespace" in refused(with_value("openbao.namespace", namespace))


# --- transit, auth, status ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["transit.mountPath", "transit.keyName"])
@pytest.mark.parametrize("value", ["a/../b", "..", "/transit", "transit/", "a b", "", "a?b"])
def test_bad_transit_path_refused(path: str, value: str) -> None:
    assert path in refused(with_value(path, value))


def test_token_method_without_token_file_refused() -> None:
    document = minimal()
    del document["auth"]["token"]
    message = refused(document)
    assert "auth" in message and "token.file" in message


def test_token_without_file_refused() -> None:
    assert "auth.token.file" in refused(with_value("auth.token", {}))


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


# --- load_config --------------------------------------------------------------------------------


@pytest.fixture
def write(tmp_path: Path):
    def write(content: str | bytes | dict[str, Any], name: str = "config.yaml") -> Path:
        path = tmp_path / name
        if isinstance(content, dict):
            content = yaml.safe_dump(content, allow_unicode=True)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    return write


def test_load_valid_file(write) -> None:
    config = load_config(write(minimal()), environ={})
    assert config.identity.provider_name == "openbao-kms-a"
    assert config.server.socket_path == DEFAULT_SOCKET


def test_load_keeps_unicode_label(write) -> None:
    config = load_config(write(with_value("identity.clusterId", "clüster-ä")), environ={})
    assert config.identity.cluster_id == "clüster-ä"


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(path) in str(info.value)


def test_load_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(tmp_path) in str(info.value)


def test_load_non_utf8(write) -> None:
    path = write(yaml.safe_dump(minimal()).encode() + b"# caf\xe9\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(path, environ={})


def test_load_invalid_yaml_gives_line_number(write) -> None:
    path = write("openbao:\n  addresses: [a\nauth: {\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "line 3" in str(info.value) or "line 4" in str(info.value)
    assert "YAML" in str(info.value)


def test_load_invalid_yaml_bad_indentation_line(write) -> None:
    path = write("server:\n  socketPath: /a\n bad: [\n")
    with pytest.raises(ConfigError, match=r"line 3\b"):
        load_config(path, environ={})


def test_load_invalid_yaml_does_not_echo_content(write) -> None:
    path = write(f"identity:\n  clusterId: {MARKER}: x: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert MARKER not in str(info.value)


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "", "42\n"])
def test_load_top_level_not_mapping(write, content: str) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write(content), environ={})


def test_load_refuses_python_tags(write) -> None:
    path = write("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError):
        load_config(path, environ={})


def test_load_refuses_duplicate_keys(write) -> None:
    text = yaml.safe_dump(minimal()) + "logging: {level: info}\nlogging: {level: debug}\n"
    with pytest.raises(ConfigError, match="logging"):
        load_config(write(text), environ={})


def test_env_overrides_applied(write) -> None:
    path = write(minimal())
    config = load_config(
        path, environ={"BAO_KMS_SOCKET": "/run/other/kms.sock", "BAO_KMS_LOG_LEVEL": "debug"}
    )
    assert config.server.socket_path == "/run/other/kms.sock"
    assert config.logging.level == "debug"


def test_env_overrides_win_over_file(write) -> None:
    document = with_value("server.socketPath", "/run/file/kms.sock")
    document = with_value("logging.level", "error", document)
    config = load_config(
        write(document),
        environ={"BAO_KMS_SOCKET": "/run/env/kms.sock", "BAO_KMS_LOG_LEVEL": "warning"},
    )
    assert config.server.socket_path == "/run/env/kms.sock"
    assert config.server.socket_mode == 0o660
    assert config.logging.level == "warning"


def test_env_socket_override_is_validated(write) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(minimal()), environ={"BAO_KMS_SOCKET": "relative/kms.sock"})
    assert "socketPath" in str(info.value)


def test_env_log_level_override_is_validated(write) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(minimal()), environ={"BAO_KMS_LOG_LEVEL": "chatty"})
    assert "logging.level" in str(info.value)


def test_environ_argument_replaces_process_environment(
    write, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BAO_KMS_SOCKET", "relative.sock")
    monkeypatch.setenv("BAO_KMS_LOG_LEVEL", "chatty")
    config = load_config(write(minimal()), environ={})
    assert config.server.socket_path == DEFAULT_SOCKET


def test_process_environment_used_by_default(write, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAO_KMS_SOCKET", "/run/from-env/kms.sock")
    monkeypatch.delenv("BAO_KMS_LOG_LEVEL", raising=False)
    assert load_config(write(minimal())).server.socket_path == "/run/from-env/kms.sock"


def test_load_reports_file_field_problem(write) -> None:
    path = write(with_value("identity.clusterId", f"{MARKER} x"))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert "identity.clusterId" in str(info.value)
    assert MARKER not in str(info.value)


def test_os_pathlike_and_str_both_accepted(write) -> None:
    path = write(minimal())
    assert load_config(os.fspath(path), environ={}) == load_config(path, environ={})


# --- JSON Schema --------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


_JSON_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def _schema_problems(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str):
    """The few JSON Schema keywords pydantic emits here: $ref, anyOf, type, const, enum,
    properties, required, additionalProperties, items."""
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        if all(list(_schema_problems(value, s, root, where)) for s in schema["anyOf"]):
            yield f"{where}: matches no anyOf branch"
        return
    kind = schema.get("type")
    if kind is not None:
        if isinstance(value, bool) and kind in ("integer", "number"):
            yield f"{where}: boolean is not {kind}"
            return
        if not isinstance(value, _JSON_TYPES[kind]):
            yield f"{where}: {type(value).__name__} is not {kind}"
            return
    if "const" in schema and value != schema["const"]:
        yield f"{where}: not the const"
    if "enum" in schema and value not in schema["enum"]:
        yield f"{where}: not in enum"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                yield f"{where}.{key}: required"
        for key, item in value.items():
            if key in properties:
                yield from _schema_problems(item, properties[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                yield f"{where}.{key}: additional property"
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _schema_problems(item, schema["items"], root, f"{where}[{index}]")


def test_schema_has_camel_case_properties() -> None:
    schema = Config.model_json_schema(by_alias=True)
    assert set(schema["properties"]) == {
        "server",
        "openbao",
        "auth",
        "identity",
        "transit",
        "status",
        "logging",
    }
    assert set(schema["required"]) == {"openbao", "auth", "identity"}
    assert schema["additionalProperties"] is False
    server = _resolve(schema["properties"]["server"], schema)
    assert {
        "socketPath",
        "socketMode",
        "socketGroup",
        "gracePeriod",
        "workers",
        "maxConcurrentRequests",
    } <= set(server["properties"])
    identity = _resolve(schema["properties"]["identity"], schema)
    assert set(identity["properties"]) == set(IDENTITY_FIELDS)
    status = _resolve(schema["properties"]["status"], schema)
    assert set(status["properties"]) == {"probeInterval", "deepProbeInterval", "maxStaleness"}
    openbao = _resolve(schema["properties"]["openbao"], schema)
    assert "caFile" in openbao["properties"]
    for definition in schema["$defs"].values():
        assert definition.get("additionalProperties") is False
        for name in definition.get("properties", {}):
            assert "_" not in name, name


def test_schema_checker_catches_wrong_types() -> None:
    # The little checker below must itself be able to fail.
    schema = Config.model_json_schema(by_alias=True)
    bad = with_value("identity.clusterId", 5)
    bad = with_value("bogus", 1, bad)
    problems = list(_schema_problems(bad, schema, schema, "$"))
    assert "$.identity.clusterId: int is not string" in problems
    assert "$.bogus: additional property" in problems


def test_schema_accepts_minimal_document() -> None:
    schema = Config.model_json_schema(by_alias=True)
    assert list(_schema_problems(minimal(), schema, schema, "$")) == []


def test_schema_accepts_a_valid_document_with_durations_and_mode() -> None:
    document = with_value("server.socketMode", "0640")
    document = with_value("server.gracePeriod", "5s", document)
    document = with_value("openbao.timeout", "500ms", document)
    document = with_value("status", {"probeInterval": "10s", "maxStaleness": "1m"}, document)
    parse_config(document)  # the validator accepts it ...
    schema = Config.model_json_schema(by_alias=True)
    assert list(_schema_problems(document, schema, schema, "$")) == []  # ... so must the schema


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


# --- review follow-ups --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("openbao.timeout", "2m"),
        ("openbao.timeout", "5ms"),
        ("status.probeInterval", "50ms"),
        ("status.probeInterval", "2h"),
        ("status.deepProbeInterval", "99999999999h"),
        ("server.gracePeriod", "10m"),
    ],
)
def test_durations_are_bounded(path: str, value: str) -> None:
    message = refused(with_value(path, value))
    assert path in message and "between" in message


def test_plain_http_only_to_loopback() -> None:
    for address in ("http://127.0.0.1:8200", "http://localhost:8200", "http://[::1]:8200"):
        parse_config(with_value("openbao.addresses", [address]))
    message = refused(with_value("openbao.addresses", ["http://bao.example.com:8200"]))
    assert "openbao" in message and "clear text" in message
    document = with_value("openbao.addresses", ["http://bao.example.com:8200"])
    document["openbao"]["allowInsecureHttp"] = True
    assert parse_config(document).openbao.allow_insecure_http is True


def test_provider_name_must_not_contain_a_colon() -> None:
    message = refused(with_value("identity.providerName", "kms:prod"))
    assert "identity.providerName" in message and "':'" in message


@pytest.mark.parametrize("group", ["kube", "kube-apiserver", "_svc", "1000", "0"])
def test_socket_group_forms_accepted(group: str) -> None:
    assert parse_config(with_value("server.socketGroup", group)).server.socket_group == group


@pytest.mark.parametrize("group", ["²", "4294967295", "a b", "", "-x", "x" * 40])
def test_socket_group_forms_refused(group: str) -> None:
    assert "server.socketGroup" in refused(with_value("server.socketGroup", group))


def test_unhashable_yaml_key_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match="mapping key"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    "address",
    [
        "HTTP://bao.example.com:8200",
        "Http://10.0.0.5:8200",
        "http://127.evil.example:8200",
        "http://localhost.evil.example:8200",
        "http://0.0.0.0:8200",
    ],
)
def test_plain_http_check_is_not_fooled_by_spelling(address: str) -> None:
    assert "clear text" in refused(with_value("openbao.addresses", [address]))


@pytest.mark.parametrize("address", ["http://127.0.0.2:8200", "HTTP://[::1]:8200"])
def test_real_loopback_addresses_may_use_plain_http(address: str) -> None:
    parse_config(with_value("openbao.addresses", [address]))
