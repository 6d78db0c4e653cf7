"""Every rule of the safe Transit key profile, one at a time."""

from __future__ import annotations

import dataclasses

import pytest

from _support import SAFE_KEY
from bao_kms.keys.profile import key_profile_problems

SAFE = dataclasses.replace(SAFE_KEY, latest_version=2, versions={1: 100, 2: 200})


def test_the_safe_profile_has_no_problems():
    assert key_profile_problems(SAFE, disable_upsert=True) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": "chacha20-poly1305"}, "key_type_unsupported"),
        ({"type": "aes128-gcm96"}, "key_type_unsupported"),
        ({"derived": True}, "key_derived"),
        ({"convergent_encryption": True}, "key_convergent"),
        ({"exportable": True}, "key_exportable"),
        ({"allow_plaintext_backup": True}, "key_plaintext_backup_allowed"),
        ({"deletion_allowed": True}, "key_deletion_allowed"),
        ({"soft_deleted": True}, "key_soft_deleted"),
        ({"latest_version": 3}, "key_latest_version_missing"),
        ({"latest_version": 0, "versions": {}}, "key_latest_version_missing"),
        ({"min_decryption_version": 3}, "key_min_decryption_version_above_latest"),
        ({"min_encryption_version": 3}, "key_min_encryption_version_above_latest"),
    ],
)
def test_each_departure_is_named(change, problem):
    assert problem in key_profile_problems(dataclasses.replace(SAFE, **change), True)


def test_upsert_enabled_mount_is_a_problem():
    assert key_profile_problems(SAFE, disable_upsert=False) == ["mount_upsert_enabled"]
