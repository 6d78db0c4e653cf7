"""The Transit key profile this provider insists on (DESIGN §4), as a list of named problems.

Any problem makes Status unhealthy: a key that can be exported, backed up in plaintext or deleted,
or a mount that creates keys on first use, is a key whose loss or leak would take etcd with it.
Problem names are stable, secret-free words used as Status reasons and metric labels.
"""

from __future__ import annotations

from ..openbao.key_metadata import KeyMetadata

SUPPORTED_KEY_TYPE = "aes256-gcm96"


def key_profile_problems(key: KeyMetadata, disable_upsert: bool) -> list[str]:
    """Every way *key* (and its mount's ``disable_upsert``) departs from the safe profile."""
    problems = []
    if key.type != SUPPORTED_KEY_TYPE:
        problems.append("key_type_unsupported")
    if key.derived:
        problems.append("key_derived")
    if key.convergent_encryption:
        problems.append("key_convergent")
    if key.exportable:
        problems.append("key_exportable")
    if key.allow_plaintext_backup:
        problems.append("key_plaintext_backup_allowed")
    if key.deletion_allowed:
        problems.append("key_deletion_allowed")
    if key.soft_deleted:
        problems.append("key_soft_deleted")
    if key.latest_version < 1 or key.latest_version not in key.versions:
        problems.append("key_latest_version_missing")
    if key.min_decryption_version > key.latest_version:
        problems.append("key_min_decryption_version_above_latest")
    if key.min_encryption_version > key.latest_version:
        problems.append("key_min_encryption_version_above_latest")
    if not disable_upsert:
        problems.append("mount_upsert_enabled")
    return problems
