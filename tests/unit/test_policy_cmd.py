"""``policy --config FILE``: the least-privilege HCL for the config's mount and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from _support.config_documents import minimal, with_value
from bao_kms.cli.main import main
from bao_kms.manifests import needed_capabilities, openbao_policy


def write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_prints_the_policy_for_the_configs_mount_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = with_value("transit", {"mountPath": "kms/transit", "keyName": "apiserver"})
    assert main(["policy", "--config", str(write(tmp_path, document))]) == 0
    out = capsys.readouterr().out
    assert out == openbao_policy("kms/transit", "apiserver")
    blocks = dict(re.findall(r'path "([^"]+)" \{\n  capabilities = \[([^\]]*)\]\n\}', out))
    assert {path: tuple(caps.replace('"', "").split(", ")) for path, caps in blocks.items()} == (
        needed_capabilities("kms/transit", "apiserver")
    )


def test_the_policy_grants_nothing_else() -> None:
    capabilities = needed_capabilities("transit", "kms")
    assert capabilities == {
        "transit/encrypt/kms": ("update",),
        "transit/decrypt/kms": ("update",),
        "transit/keys/kms": ("read",),
        "transit/config/keys": ("read",),
        "auth/token/lookup-self": ("read",),
        "auth/token/renew-self": ("update",),
    }


def test_without_a_config_it_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BAO_KMS_CONFIG", raising=False)
    assert main(["policy"]) == 2
    assert "--config" in capsys.readouterr().err


def test_an_invalid_config_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = minimal()
    document["transit"] = {"mountPath": "../sys"}
    assert main(["policy", "--config", str(write(tmp_path, document))]) == 3
    assert "transit.mountPath" in capsys.readouterr().err
