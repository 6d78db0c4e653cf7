"""The Transit key profile this provider insists on (DESIGN §4), as a list of named problems.

Any problem makes Status unhealthy: a key that can be exported, backed up in plaintext or deleted,
or a mount that creates keys on first use, is a key whose loss or leak would take etcd with it.
Each problem is a :class:`~bao_kms.reasons.Reason`, reported as such in Status and metrics.
"""

from __future__ import annotations

from ..openbao.key_metadata import KeyMetadata
from ..reasons import Reason

SUPPORTED_KEY_TYPE = "aes256-gcm96"


def key_profile_problems(key: KeyMetadata, disable_upsert: bool) -> list[Reason]:
    """Every way *key* (and its mount's ``disable_upsert``) departs from the safe profile."""
    problems = []
    if key.type != SUPPORTED_KEY_TYPE:
        problems.append(Reason.KEY_TYPE_UNSUPPORTED)
    if key.derived:
        problems.append(Reason.KEY_DERIVED)
    if key.convergent_encryption:
        problems.append(Reason.KEY_CONVERGENT)
    if key.exportable:
        problems.append(Reason.KEY_EXPORTABLE)
    if key.allow_plaintext_backup:
        problems.append(Reason.KEY_PLAINTEXT_BACKUP_ALLOWED)
    if key.deletion_allowed:
        problems.append(Reason.KEY_DELETION_ALLOWED)
    if key.soft_deleted:
        problems.append(Reason.KEY_SOFT_DELETED)
    if key.latest_version < 1 or key.latest_version not in key.versions:
        problems.append(Reason.KEY_LATEST_VERSION_MISSING)
    if key.min_decryption_version > key.latest_version:
        problems.append(Reason.KEY_MIN_DECRYPTION_VERSION_ABOVE_LATEST)
    if key.min_encryption_version > key.latest_version:
        problems.append(Reason.KEY_MIN_ENCRYPTION_VERSION_ABOVE_LATEST)
    if not disable_upsert:
        problems.append(Reason.MOUNT_UPSERT_ENABLED)
    return problems
