"""The OpenBao set-up script and the kubeadm changes ``init`` writes, for every auth method.

The script is run for real against OpenBao in tests/integration/test_doctor.py; here it must
at least be valid bash for each method, and the kubeadm files must say the same as each other.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from bao_kms.config import parse_config
from bao_kms.doctor.local import referenced_files
from bao_kms.manifests import InitValues, render_bundle, setup_script
from bao_kms.manifests.kubeadm import ENCRYPTION_FILE, apiserver_patch, cluster_configuration
from bao_kms.manifests.values import AUTH_DEFAULTS, lineage_id


@pytest.mark.parametrize("method", sorted(AUTH_DEFAULTS))
def test_setup_script_is_valid_bash_for_every_method(tmp_path: Path, method: str) -> None:
    values = InitValues(auth={"method": method})
    section = values.auth_section()
    script = tmp_path / "setup.sh"
    script.write_text(setup_script("transit", "kms", method, section[method]))
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert "disable_upsert=true" in text and "deletion_allowed=false" in text
    assert "type=aes256-gcm96" in text and "set -euo pipefail" in text


def test_setup_script_quotes_what_it_splices() -> None:
    text = setup_script("tr'ansit", "kms", "token", {"file": "/x"})
    assert "'tr'\"'\"'ansit/config/keys'" in text


def test_auth_blocks_default_per_method_and_take_overrides() -> None:
    values = InitValues(auth={"method": "approle", "approle": {"mountPath": "kms-approle"}})
    assert values.auth_section() == {
        "method": "approle",
        "approle": {**AUTH_DEFAULTS["approle"], "mountPath": "kms-approle"},
    }


def test_lineage_ids_sort_by_creation_time() -> None:
    assert lineage_id(1_000_000.0) < lineage_id(2_000_000.0)
    assert len(lineage_id()) == 26


def values() -> InitValues:
    return InitValues(socketPath="/run/kms-a/kms.sock").with_identity()  # type: ignore[call-arg]


def test_cluster_configuration_sets_the_flag_and_mounts() -> None:
    document: dict[str, Any] = yaml.safe_load(cluster_configuration(values()))
    assert document["apiVersion"] == "kubeadm.k8s.io/v1beta4"
    args = {arg["name"]: arg["value"] for arg in document["apiServer"]["extraArgs"]}
    assert args["encryption-provider-config"] == ENCRYPTION_FILE
    mounts = {volume["hostPath"]: volume for volume in document["apiServer"]["extraVolumes"]}
    assert mounts["/run/kms-a"]["readOnly"] is False  # connecting needs write access
    assert mounts["/etc/kubernetes/enc"]["readOnly"] is True


def test_apiserver_patch_is_a_json_patch_saying_the_same() -> None:
    operations = yaml.safe_load(apiserver_patch(values()))
    assert all(set(op) == {"op", "path", "value"} and op["op"] == "add" for op in operations)
    flags = [op["value"] for op in operations if op["path"].endswith("/command/-")]
    assert f"--encryption-provider-config={ENCRYPTION_FILE}" in flags
    volumes = [op["value"] for op in operations if op["path"] == "/spec/volumes/-"]
    mounts = [op["value"] for op in operations if op["path"].endswith("/volumeMounts/-")]
    assert {volume["name"] for volume in volumes} == {mount["name"] for mount in mounts}
    assert {"path": "/run/kms-a", "type": "Directory"} in [v["hostPath"] for v in volumes]


@pytest.mark.parametrize("method", sorted(AUTH_DEFAULTS))
def test_every_method_renders_a_loading_config_and_mounts_its_files(method: str) -> None:
    values = InitValues(auth={"method": method}).with_identity()
    files = render_bundle(values)  # validates the config with the config's own loader
    config = parse_config(yaml.safe_load(files["config.yaml"].text))
    assert config.auth.method == method
    pod = yaml.safe_load(files["static-pod/bao-kms-provider.yaml"].text)
    mounted = {volume["hostPath"]["path"] for volume in pod["spec"]["volumes"]}
    for named in referenced_files(config):
        assert str(named.path) in mounted, named.key
