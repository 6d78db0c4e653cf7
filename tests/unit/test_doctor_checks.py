"""``doctor``'s judgements that need no server: capabilities, EncryptionConfiguration, output.

The capability check is pure (OpenBao's answer in, a finding out), so every case a policy can
produce is tried here; tests/integration/test_doctor.py runs the whole doctor on real OpenBao.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from _support.config_documents import minimal
from bao_kms.cli.main import main
from bao_kms.config import Config, parse_config
from bao_kms.doctor import Check, Outcome
from bao_kms.doctor.capabilities import OTHER_KEY, assess, paths_to_ask
from bao_kms.doctor.encryption_config import check_encryption_config
from bao_kms.manifests import Phase, encryption_configuration, needed_capabilities

MOUNT, KEY = "transit-a", "kms-a"


def least() -> dict[str, list[str]]:
    """What OpenBao answers for a token with exactly the provider's policy."""
    granted = {path: ["deny"] for path in paths_to_ask(MOUNT, KEY)}
    granted.update({path: list(caps) for path, caps in needed_capabilities(MOUNT, KEY).items()})
    return granted


def test_least_privilege_passes() -> None:
    finding = assess(least(), MOUNT, KEY)
    assert (finding.check, finding.outcome) == (Check.TOKEN_CAPABILITIES, Outcome.PASS)


def test_root_token_warns() -> None:
    finding = assess({path: ["root"] for path in paths_to_ask(MOUNT, KEY)}, MOUNT, KEY)
    assert finding.outcome is Outcome.WARN and "root token" in finding.message


@pytest.mark.parametrize(
    ("path", "caps", "words"),
    [
        (f"{MOUNT}/keys/{KEY}", ["read", "delete"], "delete on the key"),
        (f"{MOUNT}/keys/{KEY}/rotate", ["update"], "rotating the key"),
        (f"{MOUNT}/export/encryption-key/{KEY}", ["read"], "exporting the key"),
        (f"{MOUNT}/keys/{KEY}/config", ["update"], "reconfiguring the key"),
        (f"{MOUNT}/keys/{OTHER_KEY}", ["read"], "other keys of the mount"),
        (f"{MOUNT}/config/keys", ["read", "update"], "update on the mount's config/keys"),
        (f"{MOUNT}/encrypt/{KEY}", ["update", "sudo"], "sudo on encrypt"),
    ],
)
def test_more_than_needed_warns(path: str, caps: list[str], words: str) -> None:
    granted = least()
    granted[path] = caps
    finding = assess(granted, MOUNT, KEY)
    assert finding.outcome is Outcome.WARN
    assert words in finding.message
    assert MOUNT not in finding.message and KEY not in finding.message


@pytest.mark.parametrize(
    ("path", "words"),
    [
        (f"{MOUNT}/decrypt/{KEY}", "update on decrypt"),
        (f"{MOUNT}/config/keys", "read on the mount's config/keys"),
        ("auth/token/renew-self", "update on auth/token/renew-self"),
    ],
)
def test_a_missing_capability_fails(path: str, words: str) -> None:
    granted = least()
    granted[path] = ["deny"]
    finding = assess(granted, MOUNT, KEY)
    assert finding.outcome is Outcome.FAIL and words in finding.message


# --- EncryptionConfiguration ------------------------------------------------------------------


@pytest.fixture
def config() -> Config:
    document = minimal()
    document["server"] = {"socketPath": "/run/openbao-kms/kms.sock"}
    return parse_config(document)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "encryption-config.yaml"
    path.write_text(text)
    return path


def rendered(config: Config, phase: Phase, **changes: str) -> str:
    return encryption_configuration(
        changes.get("name", config.identity.provider_name),
        changes.get("socket", config.server.socket_path),
        phase=phase,
    )


@pytest.mark.parametrize(
    ("phase", "outcome", "words"),
    [
        (Phase.READ, Outcome.WARN, "identity comes first"),
        (Phase.WRITE, Outcome.WARN, "identity is still listed"),
        (Phase.FINAL, Outcome.PASS, "encrypts secrets through unix:///run/openbao-kms/kms.sock"),
    ],
)
def test_phases(tmp_path: Path, config: Config, phase: Phase, outcome: Outcome, words: str) -> None:
    finding = check_encryption_config(write(tmp_path, rendered(config, phase)), config)
    assert (finding.outcome, finding.check) == (outcome, Check.ENCRYPTION_CONFIG)
    assert words in finding.message


def test_another_socket_fails(tmp_path: Path, config: Config) -> None:
    text = rendered(config, Phase.FINAL, socket="/run/other/kms.sock")
    finding = check_encryption_config(write(tmp_path, text), config)
    assert finding.outcome is Outcome.FAIL
    assert "unix:///run/other/kms.sock is not unix:///run/openbao-kms/kms.sock" in finding.message


def test_another_provider_name_fails_without_quoting_it(tmp_path: Path, config: Config) -> None:
    finding = check_encryption_config(
        write(tmp_path, rendered(config, Phase.FINAL, name="someone-else")), config
    )
    assert finding.outcome is Outcome.FAIL and "providerName" in finding.message
    assert config.identity.provider_name not in finding.message


def test_kms_v1_fails(tmp_path: Path, config: Config) -> None:
    text = rendered(config, Phase.FINAL).replace("apiVersion: v2", "apiVersion: v1")
    finding = check_encryption_config(write(tmp_path, text), config)
    assert finding.outcome is Outcome.FAIL and "not apiVersion v2" in finding.message


@pytest.mark.parametrize(
    "text",
    ["a: [", "kind: Pod\napiVersion: v1\n", "- 1\n", ""],
    ids=["not-yaml", "wrong-kind", "a-list", "empty"],
)
def test_not_an_encryption_configuration_fails(tmp_path: Path, config: Config, text: str) -> None:
    finding = check_encryption_config(write(tmp_path, text), config)
    assert finding.outcome is Outcome.FAIL


def test_a_missing_file_fails(tmp_path: Path, config: Config) -> None:
    finding = check_encryption_config(tmp_path / "nope.yaml", config)
    assert finding.outcome is Outcome.FAIL and "cannot read" in finding.message


# --- the command ------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def run_doctor_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", *args, "--output", "json"])
    return code, json.loads(capsys.readouterr().out)


def test_unreachable_openbao_fails_with_exit_4_and_the_json_shape(
    socket_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = socket_dir / "token"
    token.write_text("not-a-real-token\n")
    token.chmod(0o600)
    document = minimal()
    document["server"] = {"socketPath": str(socket_dir / "kms.sock")}
    document["openbao"] = {
        "addresses": [f"http://127.0.0.1:{closed_port()}"],
        "timeout": "1s",
        "allowInsecureHttp": True,
    }
    document["auth"] = {"method": "token", "token": {"file": str(token)}}
    path = socket_dir / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    code, report = run_doctor_json(capsys, "--config", str(path))
    assert code == 4
    assert report["ok"] is False
    assert [(c["name"], c["status"]) for c in report["checks"]] == [
        ("config", "pass"),
        ("files", "pass"),
        ("socket", "pass"),
        ("key_registry", "warn"),
        ("openbao_reachable", "fail"),
    ]
    assert all(set(check) == {"name", "status", "message", "hint"} for check in report["checks"])
    assert "cannot connect to OpenBao" in report["checks"][-1]["message"]
    assert report["checks"][-1]["hint"] == Check.OPENBAO_REACHABLE.hint


def test_an_invalid_config_is_a_failed_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server: {sockitPath: /x}\n")
    code, report = run_doctor_json(capsys, "--config", str(path))
    assert code == 4
    assert [(c["name"], c["status"]) for c in report["checks"]] == [("config", "fail")]
    assert "server" in report["checks"][0]["message"]


def test_text_output_names_each_check_and_its_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("{}\n")
    assert main(["doctor", "--config", str(path)]) == 4
    out = capsys.readouterr().out
    assert out.startswith("FAIL  config: ")
    assert f"      fix: {Check.CONFIG.hint}\n" in out
    assert out.endswith("1 checks: 1 failed, 0 warnings\n")


def test_without_a_config_it_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BAO_KMS_CONFIG", raising=False)
    assert main(["doctor"]) == 2
