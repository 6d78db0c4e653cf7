"""``init`` into an empty directory: every file parses, loads, validates and is hardened.

The static pod is validated against the Kubernetes JSON schema (``kubernetes-validate``, which
bundles its schemas: no network), the unit with ``systemd-analyze verify``, the sysusers and
tmpfiles snippets by applying them with systemd's own tools to a scratch root.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bao_kms.cli.main import main
from bao_kms.config import load_config
from bao_kms.doctor import Outcome
from bao_kms.doctor.encryption_config import check_encryption_config
from bao_kms.manifests import Phase

SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
#: keys by which a pod spec refers to API objects; a static pod may use none of them
API_OBJECT_KEYS = {
    "configMap",
    "secret",
    "projected",
    "persistentVolumeClaim",
    "serviceAccountName",
    "serviceAccount",
    "configMapKeyRef",
    "secretKeyRef",
    "envFrom",
    "imagePullSecrets",
    "csi",
    "ephemeral",
}


def init(out: Path, values: dict[str, Any] | None = None, *extra: str) -> int:
    args = ["init", "--out", str(out), *extra]
    if values is not None:
        values_file = out.parent / f"{out.name}-values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["--values", str(values_file)]
    return main(args)


def walk_keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        keys = set(node)
        for value in node.values():
            keys |= walk_keys(value)
        return keys
    if isinstance(node, list):
        return set().union(*map(walk_keys, node)) if node else set()
    return set()


@pytest.fixture
def rendered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    out = tmp_path / "out"
    assert init(out) == 0
    capsys.readouterr()
    return out


@pytest.fixture
def pod(rendered: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (rendered / "static-pod/bao-kms-provider.yaml").read_text()
    )
    return document


# --- the files parse and load ---------------------------------------------------------------


def test_every_yaml_file_parses(rendered: Path) -> None:
    files = sorted(rendered.rglob("*.yaml"))
    assert len(files) == 7
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(documents), path


def test_the_config_passes_config_check(rendered: Path) -> None:
    # away from a node its files (/etc/openbao-kms/...) do not exist: the document alone
    assert main(["config", "check", "--skip-files", "--config", str(rendered / "config.yaml")]) == 0


def test_the_config_passes_a_full_config_check_where_its_files_exist(
    tmp_path: Path, socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = socket_dir / "token"
    token.write_text("not-a-real-token\n")
    token.chmod(0o600)
    values = {
        "socketPath": str(socket_dir / "kms.sock"),
        "caFile": None,
        "auth": {"method": "token", "token": {"file": str(token)}},
    }
    assert init(tmp_path / "out", values) == 0
    capsys.readouterr()
    assert main(["config", "check", "--config", str(tmp_path / "out/config.yaml")]) == 0
    assert ": valid\n" in capsys.readouterr().out


def test_identity_labels_are_generated_once_with_the_warning_beside_them(tmp_path: Path) -> None:
    assert init(tmp_path / "a") == 0 and init(tmp_path / "b") == 0
    first = load_config(tmp_path / "a/config.yaml", environ={}).identity
    second = load_config(tmp_path / "b/config.yaml", environ={}).identity
    assert first.cluster_id != second.cluster_id
    assert first.key_lineage_id != second.key_lineage_id
    assert len(first.key_lineage_id) == 26  # a ULID
    text = (tmp_path / "a/config.yaml").read_text()
    assert "FIXED FOREVER" in text and "IDENTICAL on every" in text
    assert text.index("FIXED FOREVER") < text.index("identity:")


def test_given_identity_labels_are_kept(tmp_path: Path) -> None:
    labels = {
        "providerName": "kms-prod",
        "clusterId": "prod-eu-1",
        "openbaoInstanceId": "bao-prod",
        "transitMountId": "transit-prod",
        "keyLineageId": "kms-2026-11",
    }
    assert init(tmp_path / "out", labels) == 0
    identity = load_config(tmp_path / "out/config.yaml", environ={}).identity
    assert identity.model_dump(by_alias=True) == labels


# --- EncryptionConfiguration phases -----------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "order", "outcome"),
    [
        (Phase.READ, ["identity", "kms"], Outcome.WARN),
        (Phase.WRITE, ["kms", "identity"], Outcome.WARN),
        (Phase.FINAL, ["kms"], Outcome.PASS),
    ],
)
def test_encryption_configurations_have_the_phases(
    tmp_path: Path, phase: Phase, order: list[str], outcome: Outcome
) -> None:
    values = {"socketPath": "/run/kms-test/p.sock", "providerName": "kms-test", "kmsTimeout": "5s"}
    assert init(tmp_path / "out", values) == 0
    config = load_config(tmp_path / "out/config.yaml", environ={})
    path = tmp_path / "out" / phase.filename
    document = yaml.safe_load(path.read_text())
    assert document["kind"] == "EncryptionConfiguration"
    (rule,) = document["resources"]
    assert rule["resources"] == ["secrets"]
    assert [next(iter(provider)) for provider in rule["providers"]] == order
    kms = next(p["kms"] for p in rule["providers"] if "kms" in p)
    assert kms == {
        "apiVersion": "v2",
        "name": config.identity.provider_name,
        "endpoint": f"unix://{config.server.socket_path}",
        "timeout": "5s",
    }
    assert check_encryption_config(path, config).outcome is outcome


# --- the static pod ---------------------------------------------------------------------------


def test_static_pod_is_valid_against_the_kubernetes_schema(pod: dict[str, Any]) -> None:
    version = kubernetes_validate.utils.latest_version()
    assert kubernetes_validate.validate(pod, version, strict=True)


def test_static_pod_is_hardened(pod: dict[str, Any]) -> None:
    assert pod["metadata"]["namespace"] == "kube-system"
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["priorityClassName"] == "system-node-critical"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert not walk_keys(pod) & API_OBJECT_KEYS


def test_static_pod_probes_the_configs_health_address(rendered: Path, pod: dict[str, Any]) -> None:
    config = load_config(rendered / "config.yaml", environ={})
    host, _, port = str(config.server.health_address).rpartition(":")
    (container,) = pod["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["host"] == host
        assert container[probe]["httpGet"]["port"] == int(port)
    # the kubelet reaches a loopback address only from the host's network namespace
    assert pod["spec"]["hostNetwork"] is True


def test_static_pod_mounts_every_file_from_the_host(pod: dict[str, Any]) -> None:
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert all(set(volume) == {"name", "hostPath"} for volume in volumes.values())
    paths = {volume["hostPath"]["path"] for volume in volumes.values()}
    assert paths == {
        "/etc/openbao-kms/config.yaml",
        "/etc/openbao-kms/ca.pem",
        "/etc/openbao-kms/token",
        "/run/openbao-kms",
        "/var/lib/openbao-kms",
    }
    mounts = {mount["name"]: mount for mount in pod["spec"]["containers"][0]["volumeMounts"]}
    assert set(mounts) == set(volumes)
    for name, mount in mounts.items():
        assert mount["mountPath"] == volumes[name]["hostPath"]["path"]
        assert mount.get("readOnly", False) is (volumes[name]["hostPath"]["type"] == "File")


# --- systemd ----------------------------------------------------------------------------------


def console_script() -> str:
    found = Path(sys.executable).parent / "bao-kms-provider"
    return str(found) if found.exists() else shutil.which("bao-kms-provider") or ""


def systemd_analyze_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    # required, not skipped: CI runs on this machine image, which has it
    assert Path(SYSTEMD_ANALYZE).exists(), f"{SYSTEMD_ANALYZE} is needed to verify the unit"
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart's binary exists: render the unit for the one installed here
    binary = console_script()
    assert binary, "the bao-kms-provider console script is not installed"
    assert init(tmp_path / "out", {"binaryPath": binary}) == 0
    unit = tmp_path / "out/systemd/bao-kms-provider.service"
    result = systemd_analyze_verify(unit)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    text = unit.read_text()
    for line in (
        "User=openbao-kms",
        "Before=kubelet.service",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "RuntimeDirectory=openbao-kms",
        "Restart=always",
        f"ExecStart={binary} serve --config /etc/openbao-kms/config.yaml",
    ):
        assert f"\n{line}\n" in text, line


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    unit = tmp_path / "broken.service"
    unit.write_text("[Service]\nExecStart=/nonexistent/bao-kms-provider serve\n")
    assert systemd_analyze_verify(unit).returncode != 0


def test_sysusers_and_tmpfiles_apply_with_systemd_tools(rendered: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc/sysusers.d").mkdir(parents=True)
    (root / "etc/tmpfiles.d").mkdir(parents=True)
    shutil.copy(
        rendered / "systemd/bao-kms-provider.sysusers.conf",
        root / "etc/sysusers.d/bao-kms-provider.conf",
    )
    shutil.copy(
        rendered / "systemd/bao-kms-provider.tmpfiles.conf",
        root / "etc/tmpfiles.d/bao-kms-provider.conf",
    )
    for command in (
        ["systemd-sysusers", f"--root={root}"],
        ["systemd-tmpfiles", f"--root={root}", "--create", "bao-kms-provider.conf"],
    ):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, (command, result.stderr)
    assert "openbao-kms:x:65532:65532:" in (root / "etc/passwd").read_text()
    socket_dir = (root / "run/openbao-kms").stat()
    assert (socket_dir.st_uid, socket_dir.st_mode & 0o777) == (65532, 0o750)
    assert (root / "var/lib/openbao-kms").stat().st_mode & 0o777 == 0o700


# --- what init never does ---------------------------------------------------------------------


def test_init_never_overwrites(
    rendered: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {path: path.read_bytes() for path in rendered.rglob("*") if path.is_file()}
    assert init(rendered) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in rendered.rglob("*") if path.is_file()} == before
    # one conflicting file is enough to write nothing at all
    partial = tmp_path / "partial"
    (partial / "systemd").mkdir(parents=True)
    (partial / "systemd/bao-kms-provider.service").write_text("mine\n")
    assert init(partial) == 1
    assert [path.name for path in partial.rglob("*") if path.is_file()] == [
        "bao-kms-provider.service"
    ]


def test_init_never_contacts_openbao(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        values = {
            "addresses": [f"http://127.0.0.1:{port}"],
            "caFile": None,
            "allowInsecureHttp": True,
        }
        assert init(tmp_path / "out", values) == 0
        with pytest.raises(BlockingIOError):
            listener.accept()


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"sockitPath": "/run/x.sock"}, "sockitPath: unknown key"),
        ({"providerName": "a:b"}, "providerName"),
        ({"auth": {"method": "kerberos"}}, "auth"),
        ({"addresses": ["http://bao.example:8200"], "caFile": None}, "http://"),
    ],
)
def test_bad_values_exit_3_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], values: dict[str, Any], named: str
) -> None:
    assert init(tmp_path / "out", values) == 3
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
