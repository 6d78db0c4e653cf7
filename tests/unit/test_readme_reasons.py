"""Every Status reason the provider can report is explained in the README's table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from _support import SAFE_KEY
from bao_kms import errors
from bao_kms.keys.profile import key_profile_problems
from bao_kms.status import monitor as status

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
DOCUMENTED = set(
    re.findall(r"`([a-z_]+)`", README.split("### Status reasons", 1)[1].split("###")[0])
)

EVERYTHING_WRONG = dataclasses.replace(
    SAFE_KEY,
    type="rsa-2048",
    derived=True,
    convergent_encryption=True,
    exportable=True,
    allow_plaintext_backup=True,
    deletion_allowed=True,
    soft_deleted=True,
    latest_version=0,
    min_decryption_version=5,
    min_encryption_version=5,
    versions={},
)


def reported_reasons() -> set[str]:
    reasons = set(key_profile_problems(EVERYTHING_WRONG, disable_upsert=False))
    for cls in (
        errors.OpenBaoUnavailable,
        errors.OpenBaoCircuitOpen,
        errors.OpenBaoSealed,
        errors.OpenBaoUnauthenticated,
        errors.OpenBaoPermissionDenied,
        errors.OpenBaoBadResponse,
        errors.OpenBaoRejected,
        errors.DeadlineExceeded,
    ):
        reasons.add(status.failure_reason(cls("x"), "metadata_read_failed"))
        reasons.add(status.failure_reason(cls("x"), "deep_probe_failed"))
    source = Path(status.__file__).read_text()
    reasons |= set(re.findall(r'"((?:status|probe|no|not|deep|key_lineage)_[a-z_]+)"', source))
    return reasons


def test_every_reason_is_documented():
    missing = reported_reasons() - DOCUMENTED
    assert not missing, f"README 'Status reasons' lacks: {sorted(missing)}"
