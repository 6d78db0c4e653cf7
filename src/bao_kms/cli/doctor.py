"""``doctor``: check a node's set-up, from the config file to a live round trip.

Exit 0 when no check fails (warnings allowed), 4 otherwise, whatever failed, the config
included: scripts read one code, operators read the named checks.
"""

from __future__ import annotations

import argparse
import logging
import os

from ..config import ENV_CONFIG
from ..doctor import Outcome, Report, run_doctor
from ..logs import configure_logging
from ._output import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, add_output_option, emit, fail

_MARKS = {Outcome.PASS: "ok  ", Outcome.WARN: "WARN", Outcome.FAIL: "FAIL"}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "doctor", help="check this node's set-up: files, socket, OpenBao, key, round trip"
    )
    parser.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    parser.add_argument(
        "--encryption-config",
        help="kube-apiserver's EncryptionConfiguration file, to check it names this provider",
    )
    add_output_option(parser)
    parser.set_defaults(run=run)


def report_text(report: Report) -> str:
    lines = []
    for finding in report.findings:
        lines.append(f"{_MARKS[finding.outcome]}  {finding.check.value}: {finding.message}")
        if finding.outcome is not Outcome.PASS:
            lines.append(f"      fix: {finding.hint or finding.check.hint}")
    failed = sum(finding.outcome is Outcome.FAIL for finding in report.findings)
    warned = sum(finding.outcome is Outcome.WARN for finding in report.findings)
    lines.append(f"{len(report.findings)} checks: {failed} failed, {warned} warnings")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        fail("doctor", f"--config FILE (or {ENV_CONFIG}) is required")
        return EXIT_USAGE
    if not logging.getLogger("bao_kms").handlers:
        # the in-process provider logs its own view of what the checks find; keep stderr quiet
        configure_logging("error")
    report = run_doctor(path, args.encryption_config)
    emit(report.as_dict(), args.output, report_text(report))
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED
