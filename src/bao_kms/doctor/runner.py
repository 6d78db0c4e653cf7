"""``doctor``'s order of checks: each runs only when what it stands on passed.

A failed config stops everything (there is nothing to check against); OpenBao unreachable
stops the checks that need answers from it; the round trip runs only when the key is usable,
since otherwise its failure would only repeat the key check's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .checks import Outcome, Report
from .encryption_config import check_encryption_config
from .key_registry import check_key_registry
from .local import check_config, file_findings
from .remote import HEALTHY_TIMEOUT, OpenBaoChecks


def run_doctor(
    config_path: str | os.PathLike[str],
    encryption_config: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    healthy_timeout: float = HEALTHY_TIMEOUT,
) -> Report:
    report = Report()
    finding, config = check_config(config_path, environ)
    report.add(finding)
    if config is None:
        return report
    for finding in file_findings(config_path, config):
        report.add(finding)
    report.add(check_key_registry(config))
    with OpenBaoChecks(config) as openbao:
        if report.add(openbao.reachable()).outcome is not Outcome.FAIL:
            if report.add(openbao.auth()).outcome is not Outcome.FAIL:
                capabilities = report.add(openbao.capabilities())
                key = report.add(openbao.key_profile())
                if Outcome.FAIL not in (capabilities.outcome, key.outcome):
                    report.add(openbao.round_trip(healthy_timeout))
    if encryption_config is not None:
        report.add(check_encryption_config(encryption_config, config))
    return report
