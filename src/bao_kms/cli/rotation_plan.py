"""``rotation-plan``: where this node stands in a rotation, read-only.

Shows the registry's active, pending, retired and withdrawn versions, Transit's latest, how many
stable observations the pending promotion has and when it can happen at the earliest, the
registry's generation and hash (what ``--expected-state-hash`` takes), and any guard that would
fail closed at the next probe. Run it on every control-plane node to watch them converge.
Exit 0, or 4 when something fails (a guard, a missing or damaged registry, OpenBao unreadable).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..config import Config
from ..keys.registry import RegistryError
from ..keys.rotation import (
    KeyState,
    PlanError,
    RotationPolicy,
    VersionState,
    bootstrap,
    observe,
    promotion_due,
    rebuild,
)
from ._key_state import (
    add_common_options,
    describe_versions,
    file_registry,
    identity,
    live_key_or_problem,
    run_command,
    stored_facts,
    utc,
    versions_text,
)
from ._output import EXIT_CHECK_FAILED, EXIT_OK


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rotation-plan",
        help="this node's key versions: active, pending, latest, and when a promotion happens",
    )
    add_common_options(parser, writes=False)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_command("rotation-plan", args, plan)


def plan(config: Config) -> tuple[dict[str, Any], str, int]:
    policy = RotationPolicy(config.rotation.stable_observations, config.rotation.activation_delay)
    now = time.time()
    key, key_problem = live_key_or_problem(config)
    problems = [key_problem] if key_problem else []
    report: dict[str, Any] = {"persistent": config.state.path is not None}
    state: KeyState | None = None
    if config.state.path is None:
        report["state"] = None
        if key is not None:
            try:  # what a process starting now would hold
                state = rebuild(key)
            except PlanError as error:
                problems.append(str(error))
    else:
        report["state_path"] = config.state.path
        try:
            stored = file_registry(config).read()
        except RegistryError as error:
            stored = None
            problems.append(f"{error.reason}: {error}")
        report["state"] = None if stored is None else stored_facts(stored)
        if stored is not None:
            state = stored.state
        elif key is not None and not problems:
            state = bootstrap(key)  # what a fresh node does on its own
            if state is None:
                problems.append(
                    "state_missing: the key was rotated and this node has no registry; copy it "
                    "from a healthy node or run `rebuild-state`"
                )
    if key is not None:
        report |= {
            "latest_version": key.latest_version,
            "min_decryption_version": key.min_decryption_version,
            "min_encryption_version": key.min_encryption_version,
        }
    if state is not None:
        report |= _versions_report(state, config, policy, now)
        if key is not None:  # what the next probe would make of the key: a dry run
            problems += [f"{r}: {r.meaning}" for r in observe(state, key, now, policy).problems]
    report["problems"] = problems
    return report, _text(report), EXIT_CHECK_FAILED if problems else EXIT_OK


def _versions_report(
    state: KeyState, config: Config, policy: RotationPolicy, now: float
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "active_version": state.active,
        "pending_versions": state.numbers(VersionState.PENDING),
        "retired_versions": state.numbers(VersionState.RETIRED),
        "withdrawn_versions": state.numbers(VersionState.WITHDRAWN),
        "highest_latest_seen": state.highest_latest,
        "versions": describe_versions(state, identity(config)),
        "promotion": None,
    }
    promotion = state.promotion
    if promotion is not None:
        due = promotion_due(promotion, policy, now, config.status.probe_interval)
        assert due is not None
        report["promotion"] = {
            "version": promotion.version,
            "observations": promotion.observations,
            "observations_needed": policy.stable_observations,
            "first_observed": utc(promotion.first_observed),
            "activation_delay_seconds": policy.activation_delay,
            "earliest": utc(due),
            "earliest_in_seconds": max(0, round(due - now)),
        }
    return report


def _text(report: dict[str, Any]) -> str:
    lines = []
    if report["persistent"]:
        state = report["state"]
        where = report["state_path"]
        lines.append(
            f"key registry: {where} (generation {state['generation']}, updated "
            f"{state['updated']})\nstate hash:   {state['hash']}"
            if state
            else f"key registry: {where} (none)"
        )
    else:
        lines.append("key registry: in memory (persistence is off: state.path is not set)")
    if "active_version" in report:
        pending = ", ".join(map(str, report["pending_versions"])) or "none"
        lines.append(f"active version: {report['active_version']}   pending: {pending}")
    if "latest_version" in report:
        lines.append(
            f"OpenBao: latest_version {report['latest_version']}, min_decryption_version "
            f"{report['min_decryption_version']}, min_encryption_version "
            f"{report['min_encryption_version']}"
        )
    promotion = report.get("promotion")
    if promotion:
        lines.append(
            f"promotion: version {promotion['version']}, {promotion['observations']} of "
            f"{promotion['observations_needed']} stable observations since "
            f"{promotion['first_observed']}; earliest {promotion['earliest']} "
            f"(in {promotion['earliest_in_seconds']} s, after a passing deep probe)"
        )
    elif report.get("pending_versions"):
        lines.append("promotion: waiting for a metadata probe that finds the key in order")
    if report.get("versions"):
        lines.append("versions:\n" + versions_text(report["versions"]).rstrip("\n"))
    for problem in report["problems"]:
        lines.append(f"PROBLEM: {problem}")
    return "\n".join(lines) + "\n"
