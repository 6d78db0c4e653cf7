"""The JSON Schema ``config schema`` exports agrees with the validator, auth union included.

Documents are checked with the ``jsonschema`` package (a test dependency), against the schema
exactly as exported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from _support.config_documents import IDENTITY_FIELDS, full, minimal, with_value, without
from bao_kms.config import Config, parse_config
from bao_kms.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

SchemaCheck = Callable[[Any], list[str]]


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` to the definition it names (pydantic puts sections under ``$defs``)."""
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return Config.model_json_schema(by_alias=True)


@pytest.fixture(scope="module")
def check(schema: dict[str, Any]) -> SchemaCheck:
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return lambda document: [error.message for error in validator.iter_errors(document)]


def _example_file() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "config.example.yaml").read_text())
    return document


VALID = {
    "minimal": minimal,
    "full": full,
    "deploy-example": _example_file,
    "durations-and-mode": lambda: with_value(
        "status",
        {"probeInterval": "10s", "maxStaleness": "1m"},
        with_value("server", {"socketMode": "0640", "gracePeriod": "5s"}),
    ),
    "auth-method-omitted": lambda: without("auth.method"),
}

INVALID = {
    "unknown-method": lambda: with_value("auth.method", "kubernetes"),
    "no-token-block": lambda: without("auth.token"),
    "other-method-block": lambda: with_value("auth.approle", {"roleIdFile": "/r"}),
    "token-block-not-mapping": lambda: with_value("auth.token", "/etc/token"),
    "unknown-auth-key": lambda: with_value("auth.bogusKey", 1),
    "label-not-string": lambda: with_value("identity.clusterId", 5),
    "bare-number-duration": lambda: with_value("openbao.timeout", "10"),
    "unknown-section": lambda: with_value("bogus", {}),
}


@pytest.mark.parametrize("make", VALID.values(), ids=VALID.keys())
def test_valid_example_passes_the_validator_and_the_schema(
    make: Callable[[], dict[str, Any]], check: SchemaCheck
) -> None:
    document = make()
    parse_config(document)
    assert check(document) == []


@pytest.mark.parametrize("make", INVALID.values(), ids=INVALID.keys())
def test_invalid_document_fails_the_validator_and_the_schema(
    make: Callable[[], dict[str, Any]], check: SchemaCheck
) -> None:
    document = make()
    with pytest.raises(ConfigError):
        parse_config(document)
    assert check(document) != []


def test_schema_has_camel_case_properties(schema: dict[str, Any]) -> None:
    assert set(schema["properties"]) == {
        "server",
        "openbao",
        "auth",
        "identity",
        "transit",
        "status",
        "rotation",
        "state",
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


def test_auth_is_a_discriminated_union_on_method(schema: dict[str, Any]) -> None:
    auth = schema["properties"]["auth"]
    assert auth["discriminator"]["propertyName"] == "method"
    mapping = auth["discriminator"]["mapping"]
    assert set(mapping) == {"token", "approle", "jwt", "cert"}
    assert sorted(branch["$ref"] for branch in auth["oneOf"]) == sorted(mapping.values())
    for method, ref in mapping.items():
        branch = _resolve({"$ref": ref}, schema)
        assert branch["properties"]["method"]["const"] == method
        assert set(branch["properties"]) == {"method", method}
        assert method in branch["required"]
