"""Config sections ``rotation`` and ``state``: defaults, the zero delay tests use, refusals."""

from __future__ import annotations

import pytest

from _support.config_documents import minimal, refused, with_value
from bao_kms.config import parse_config


def test_defaults_are_three_observations_two_minutes_and_no_state_file():
    config = parse_config(minimal())
    assert config.rotation.stable_observations == 3
    assert config.rotation.activation_delay == 120.0
    assert config.state.path is None


def test_test_settings_and_a_state_path_load_and_dump_back():
    document = with_value(
        "rotation",
        {"stableObservations": 1, "activationDelay": "0s"},
        with_value("state", {"path": "/var/lib/openbao-kms/key-registry.json"}),
    )
    config = parse_config(document)
    assert (config.rotation.stable_observations, config.rotation.activation_delay) == (1, 0.0)
    dumped = config.model_dump(by_alias=True, mode="json", exclude_none=True)
    assert dumped["rotation"] == {"stableObservations": 1, "activationDelay": "0s"}
    assert parse_config(dumped) == config


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("rotation.stableObservations", 0, "greater than or equal to 1"),
        ("rotation.stableObservations", "3", "valid integer"),
        ("rotation.activationDelay", "120", "duration"),
        ("rotation.activationDelay", "30d", "duration"),
        ("rotation.activationDelay", "8000h", "between"),
        ("state.path", "relative/key-registry.json", "absolute"),
        ("state.bogus", 1, "unknown key"),
    ],
)
def test_bad_values_are_refused(path, value, message):
    assert message in refused(with_value(path, value))
