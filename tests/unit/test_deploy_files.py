"""The files under deploy/ stay true to the code: examples, alert rules, dashboard, image.

The metric vocabulary the rules and the dashboard may use is :data:`METRICS` (name -> labels);
where docs/metrics.md exists it must document every one of them. promtool is not available
here, so PromQL is checked by structure: balanced brackets, every ``openbao_kms_*`` name a
known metric, every label matched or grouped by one that metric (or Prometheus) has.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from bao_kms.config import load_config
from bao_kms.manifests import Phase, openbao_policy, render_bundle
from bao_kms.manifests.values import load_values

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
EXAMPLE = DEPLOY / "example"

#: every metric the provider exports that rules and dashboards may name, with its labels
METRICS: dict[str, frozenset[str]] = {
    "openbao_kms_grpc_requests_total": frozenset({"method", "code"}),
    "openbao_kms_grpc_duration_seconds": frozenset({"method"}),
    "openbao_kms_grpc_in_flight": frozenset({"method"}),
    "openbao_kms_openbao_requests_total": frozenset({"operation", "status"}),
    "openbao_kms_openbao_duration_seconds": frozenset({"operation"}),
    "openbao_kms_key_version": frozenset(),
    "openbao_kms_status_key_id_hash": frozenset({"hash"}),
    "openbao_kms_status_healthy": frozenset(),
    "openbao_kms_status_reason": frozenset({"reason"}),
    "openbao_kms_status_cache_age_seconds": frozenset(),
    "openbao_kms_circuit_breaker_state": frozenset(),
    "openbao_kms_decrypt_rejections_total": frozenset({"reason"}),
    "openbao_kms_socket_stale_removed_total": frozenset(),
    "openbao_kms_build_info": frozenset({"version", "codec"}),
    "openbao_kms_token_ttl_seconds": frozenset(),
    "openbao_kms_auth_login_total": frozenset({"method", "status"}),
    "openbao_kms_auth_renewal_total": frozenset({"status"}),
}
HISTOGRAMS = {"openbao_kms_grpc_duration_seconds", "openbao_kms_openbao_duration_seconds"}
#: labels Prometheus adds to every series (target) or to histogram buckets
TARGET_LABELS = frozenset({"instance", "job"})

_METRIC_RE = re.compile(r"\b(openbao_kms_[a-z0-9_]+)\b")
_SELECTOR_RE = re.compile(r"\b(openbao_kms_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER_RE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def metric_base(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return name


def check_promql(expr: str) -> set[str]:
    """Assert *expr* is well-formed as far as a regex can tell; returns the metrics it names."""
    for opening, closing in ("()", "[]", "{}"):
        assert expr.count(opening) == expr.count(closing), (opening, expr)
    names = {metric_base(name) for name in _METRIC_RE.findall(expr)}
    unknown = names - set(METRICS)
    assert not unknown, f"no such metric: {unknown} in {expr}"
    for name, matchers in _SELECTOR_RE.findall(expr):
        base = metric_base(name)
        allowed = METRICS[base] | TARGET_LABELS | ({"le"} if base in HISTOGRAMS else set())
        labels = set(_MATCHER_RE.findall(matchers))
        assert labels <= allowed, f"{name} has no label {labels - allowed}"
    available = set().union(*(METRICS[name] for name in names)) | TARGET_LABELS | {"le"}
    for grouping in _GROUPING_RE.findall(expr):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        assert labels <= available, f"grouping by unknown labels {labels - available}: {expr}"
    return names


# --- the README's example and the policy ----------------------------------------------------


def test_example_config_is_valid_and_is_the_readme_one() -> None:
    config = load_config(DEPLOY / "config.example.yaml", environ={})
    assert config.identity.provider_name == "openbao-kms-prod-a"
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```yaml\n(server:.*?)```", readme, re.S)
    assert match is not None
    assert match.group(1) in (DEPLOY / "config.example.yaml").read_text()


def test_policy_file_is_the_rendered_least_privilege_policy() -> None:
    text = (DEPLOY / "openbao-policy.hcl").read_text()
    assert openbao_policy("transit", "kms") in text
    assert set(re.findall(r"capabilities = \[(.*?)\]", text)) == {'"update"', '"read"'}


# --- deploy/example is what init renders ----------------------------------------------------


def test_the_example_is_exactly_what_init_renders_from_its_values() -> None:
    values = load_values(EXAMPLE / "values.yaml")
    assert values.with_identity() == values, "the example's values must fix every label"
    rendered = render_bundle(values)
    on_disk = {
        str(path.relative_to(EXAMPLE))
        for path in EXAMPLE.rglob("*")
        if path.is_file() and path.name != "values.yaml"
    }
    assert on_disk == set(rendered)
    for name, file in rendered.items():
        # regenerate after a template change: rm everything but values.yaml, then
        # bao-kms-provider init --out deploy/example --values deploy/example/values.yaml
        assert (EXAMPLE / name).read_text() == file.text, name


def test_the_example_phases_name_the_readme_provider_and_socket() -> None:
    example = load_config(DEPLOY / "config.example.yaml", environ={})
    for phase in Phase:
        document = yaml.safe_load((EXAMPLE / phase.filename).read_text())
        providers = document["resources"][0]["providers"]
        kms = next(provider["kms"] for provider in providers if "kms" in provider)
        assert kms["apiVersion"] == "v2"
        assert kms["name"] == example.identity.provider_name
        assert kms["endpoint"] == f"unix://{example.server.socket_path}"


# --- Prometheus rules and the Grafana dashboard ---------------------------------------------


def test_docs_metrics_documents_every_metric_the_rules_may_use() -> None:
    reference = ROOT / "docs" / "metrics.md"
    if not reference.exists():
        pytest.skip("docs/metrics.md is not written yet; METRICS above is the list")
    text = reference.read_text()
    missing = [name for name in METRICS if name not in text]
    assert not missing, f"docs/metrics.md does not document {missing}"


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((DEPLOY / "prometheus/alerts.yaml").read_text())
    assert set(document) == {"groups"}
    found = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"]
        found += group["rules"]
    return found


def test_alert_rules_are_well_formed(rules: list[dict[str, Any]]) -> None:
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)) and len(names) >= 10
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"])
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]


def test_alert_rules_name_only_known_metrics_and_labels(rules: list[dict[str, Any]]) -> None:
    used: set[str] = set()
    for rule in rules:
        used |= check_promql(rule["expr"])
    # the rules cover the provider's health, errors, latency, OpenBao and auth
    for name in (
        "openbao_kms_status_healthy",
        "openbao_kms_grpc_requests_total",
        "openbao_kms_grpc_duration_seconds",
        "openbao_kms_openbao_requests_total",
        "openbao_kms_token_ttl_seconds",
        "openbao_kms_status_key_id_hash",
    ):
        assert name in used, name


def test_the_checker_catches_unknown_metrics_and_labels() -> None:
    with pytest.raises(AssertionError, match="no such metric"):
        check_promql("rate(openbao_kms_grpc_request_total[5m])")
    with pytest.raises(AssertionError, match="has no label"):
        check_promql('openbao_kms_status_healthy{reason="x"}')
    with pytest.raises(AssertionError, match="grouping by unknown"):
        check_promql("sum by (operation) (openbao_kms_grpc_in_flight)")
    with pytest.raises(AssertionError):
        check_promql("sum(rate(openbao_kms_grpc_requests_total[5m])")


def test_dashboard_panels_query_known_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana/dashboard.json").read_text())
    assert dashboard["uid"] == "bao-kms-provider" and dashboard["title"]
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    used: set[str] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for target in panel.get("targets", []):
            used |= check_promql(target["expr"])
    assert used == set(METRICS), f"not on the dashboard: {set(METRICS) - used}"


# --- the container image recipe -------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_containerfile_builds_the_wheel_in_a_builder_stage() -> None:
    build, final = stages(DEPLOY / "Containerfile")
    assert build[0][1].endswith(" AS build")
    runs = " ".join(arguments for name, arguments in build if name == "RUN")
    assert "pip wheel" in runs and "gcc" in runs


def test_containerfile_final_stage_is_non_root_without_a_compiler() -> None:
    _, final = stages(DEPLOY / "Containerfile")
    names = [name for name, _ in final]
    assert "RUN" not in names  # nothing is installed or compiled in the final stage
    copies = [arguments for name, arguments in final if name in ("COPY", "ADD")]
    assert copies and all(arguments.startswith("--from=build ") for arguments in copies)
    text = " ".join(arguments for _, arguments in final)
    for tool in ("gcc", "cc ", "build-essential", "apt-get", "cmake", "cython"):
        assert tool not in text.lower(), tool
    (user,) = [arguments for name, arguments in final if name == "USER"]
    uid = user.split(":")[0]
    assert uid not in ("root", "0") and (not uid.isdigit() or int(uid) > 0)


def test_containerfile_entry_point_is_the_console_script() -> None:
    _, final = stages(DEPLOY / "Containerfile")
    (entrypoint,) = [arguments for name, arguments in final if name == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(entrypoint) == ["bao-kms-provider"]
    assert scripts["bao-kms-provider"] == "bao_kms.cli.main:main"


def test_the_build_context_admits_what_the_builder_copies() -> None:
    admitted = {
        line.removeprefix("!").rstrip("/")
        for line in (DEPLOY / "Containerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    build, _ = stages(DEPLOY / "Containerfile")
    for name, arguments in build:
        if name == "COPY":
            *sources, _ = arguments.split()
            assert set(sources) <= admitted, sources
