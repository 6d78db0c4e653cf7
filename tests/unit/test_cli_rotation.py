"""The rotation commands' refusals and offline plans, without OpenBao: usage errors, no
registry to change, the expected-hash guard, and the plans a registry file alone allows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from _support.config_documents import minimal
from bao_kms.cli.main import main
from bao_kms.config import parse_config
from bao_kms.keys.registry import FileRegistry, registry_scope
from bao_kms.keys.rotation import KeyState, VersionRecord, VersionState

R, A = VersionState.RETIRED, VersionState.ACTIVE


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    document = minimal()
    document["state"] = {"path": str(tmp_path / "state" / "key-registry.json")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o600)
    return path


@pytest.fixture
def registry(config_file: Path) -> FileRegistry:
    config = parse_config(yaml.safe_load(config_file.read_text()))
    assert config.state.path is not None
    scope = registry_scope(config.provider_identity())
    registry = FileRegistry(Path(config.state.path), scope, float)
    versions = {1: VersionRecord(1_700_000_000, R), 2: VersionRecord(1_700_000_100, A)}
    registry.save(KeyState(versions, 2), None)
    return registry


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_apply_needs_the_expected_hash(capsys, config_file, registry):
    code, _, err = run(
        capsys, "retire-versions", "--config", str(config_file), "--before-version", "2", "--apply"
    )
    assert code == 2 and "--expected-state-hash" in err


def test_without_state_path_there_is_nothing_to_change(capsys, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    path.chmod(0o600)
    code, _, err = run(capsys, "restore-versions", "--config", str(path), "--versions", "1")
    assert code == 2 and "persistence is off" in err


def test_a_bad_version_list_is_a_usage_error(capsys, config_file):
    with pytest.raises(SystemExit) as info:
        main(["restore-versions", "--config", str(config_file), "--versions", "1,x"])
    assert info.value.code == 2


def test_plan_then_apply_then_a_stale_apply_is_refused(capsys, config_file, registry):
    base = ("retire-versions", "--config", str(config_file), "--before-version", "2")
    code, out, _ = run(capsys, *base, "--output", "json")
    plan = json.loads(out)
    assert code == 0 and plan["withdraw_versions"] == [1] and not plan["applied"]
    assert registry.read().state.versions[1].state is R  # a plan writes nothing
    apply = (*base, "--apply", "--expected-state-hash", plan["state"]["hash"])
    code, out, _ = run(capsys, *apply, "--output", "json")
    assert code == 0 and json.loads(out)["applied"]
    assert registry.read().state.versions[1].state is VersionState.WITHDRAWN
    code, out, err = run(
        capsys,
        "restore-versions",
        "--config",
        str(config_file),
        "--versions",
        "1",
        "--apply",
        "--expected-state-hash",
        plan["state"]["hash"],
    )
    assert code == 4 and "changed since the plan" in err  # the hash of an older state


def test_retiring_the_active_version_is_refused(capsys, config_file, registry):
    code, _, err = run(
        capsys, "retire-versions", "--config", str(config_file), "--before-version", "3"
    )
    assert code == 1 and "at most the active version" in err


def test_rebuild_refuses_a_valid_registry(capsys, config_file, registry):
    code, _, err = run(capsys, "rebuild-state", "--config", str(config_file))
    assert code == 1 and "only replaces a missing or damaged one" in err
