"""The files under deploy/ and the README's example stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bao_kms.config import load_config
from bao_kms.manifests import openbao_policy

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def test_example_config_is_valid_and_is_the_readme_one():
    config = load_config(DEPLOY / "config.example.yaml", environ={})
    assert config.identity.provider_name == "openbao-kms-prod-a"
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(server:.*?)```", readme, re.S).group(1)
    assert block in (DEPLOY / "config.example.yaml").read_text()


def test_policy_file_is_the_rendered_least_privilege_policy():
    text = (DEPLOY / "openbao-policy.hcl").read_text()
    assert openbao_policy("transit", "kms") in text
    assert set(re.findall(r"capabilities = \[(.*?)\]", text)) == {'"update"', '"read"'}


def test_encryption_configuration_names_the_provider_and_socket():
    document = yaml.safe_load((DEPLOY / "encryption-configuration.yaml").read_text())
    providers = document["resources"][0]["providers"]
    kms = providers[0]["kms"]
    example = load_config(DEPLOY / "config.example.yaml", environ={})
    assert kms["apiVersion"] == "v2"
    assert kms["name"] == example.identity.provider_name
    assert kms["endpoint"] == f"unix://{example.server.socket_path}"
    assert providers[-1] == {"identity": {}}
