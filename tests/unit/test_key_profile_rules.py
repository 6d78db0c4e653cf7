"""Every rule of the safe Transit key profile, one at a time."""

from __future__ import annotations

import dataclasses

import pytest

from _support import SAFE_KEY
from bao_kms.keys.profile import key_profile_problems
from bao_kms.reasons import Reason

SAFE = dataclasses.replace(SAFE_KEY, latest_version=2, versions={1: 100, 2: 200})


def test_the_safe_profile_has_no_problems():
    assert key_profile_problems(SAFE, disable_upsert=True) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"type": "chacha20-poly1305"}, Reason.KEY_TYPE_UNSUPPORTED),
        ({"type": "aes128-gcm96"}, Reason.KEY_TYPE_UNSUPPORTED),
        ({"derived": True}, Reason.KEY_DERIVED),
        ({"convergent_encryption": True}, Reason.KEY_CONVERGENT),
        ({"exportable": True}, Reason.KEY_EXPORTABLE),
        ({"allow_plaintext_backup": True}, Reason.KEY_PLAINTEXT_BACKUP_ALLOWED),
        ({"deletion_allowed": True}, Reason.KEY_DELETION_ALLOWED),
        ({"soft_deleted": True}, Reason.KEY_SOFT_DELETED),
        ({"latest_version": 3}, Reason.KEY_LATEST_VERSION_MISSING),
        ({"latest_version": 0, "versions": {}}, Reason.KEY_LATEST_VERSION_MISSING),
        ({"min_decryption_version": 3}, Reason.KEY_MIN_DECRYPTION_VERSION_ABOVE_LATEST),
        ({"min_encryption_version": 3}, Reason.KEY_MIN_ENCRYPTION_VERSION_ABOVE_LATEST),
    ],
)
def test_each_departure_is_named(change, problem):
    problems = key_profile_problems(dataclasses.replace(SAFE, **change), True)
    assert problem in problems
    assert all(type(found) is Reason for found in problems)


def test_upsert_enabled_mount_is_a_problem():
    assert key_profile_problems(SAFE, disable_upsert=False) == [Reason.MOUNT_UPSERT_ENABLED]
