"""The key lineage rules on their own: what rewrites history, and what a rewrite teaches."""

from __future__ import annotations

import dataclasses

import pytest

from _support import SAFE_KEY
from bao_kms.keys.lineage import KeyLineage
from bao_kms.reasons import KEY_LINEAGE, Reason

V2 = dataclasses.replace(SAFE_KEY, latest_version=2, versions={1: 1_700_000_000, 2: 1_700_000_500})
RECREATED = dataclasses.replace(SAFE_KEY, versions={1: 1_800_000_000})


@pytest.fixture
def lineage() -> KeyLineage:
    return KeyLineage()


def test_the_first_observation_is_history(lineage):
    assert lineage.observe(SAFE_KEY) == []
    assert lineage.observe(SAFE_KEY) == []
    assert lineage.observe(V2) == []  # a rotation extends history


def test_latest_version_must_not_decrease(lineage):
    lineage.observe(V2)
    assert lineage.observe(SAFE_KEY) == [Reason.KEY_LINEAGE_LATEST_VERSION_DECREASED]


def test_a_versions_creation_time_must_not_change(lineage):
    lineage.observe(SAFE_KEY)
    assert lineage.observe(RECREATED) == [Reason.KEY_LINEAGE_VERSION_CREATED_CHANGED]


def test_both_rules_are_reported_together(lineage):
    lineage.observe(V2)
    problems = lineage.observe(RECREATED)
    assert set(problems) == KEY_LINEAGE


def test_problems_records_nothing(lineage):
    lineage.observe(SAFE_KEY)
    assert lineage.problems(V2) == []
    assert lineage.observe(SAFE_KEY) == []  # V2 was only judged, so latest 1 is no decrease


def test_a_contradicting_observation_teaches_nothing(lineage):
    """The re-created key's versions are not remembered, so restoring the original key (the
    documented remedy) is healthy again, and the re-created key still fails."""
    lineage.observe(SAFE_KEY)
    recreated = dataclasses.replace(
        SAFE_KEY, latest_version=3, versions={1: 1_800_000_000, 2: 1_800_000_100, 3: 1}
    )
    assert lineage.observe(recreated) == [Reason.KEY_LINEAGE_VERSION_CREATED_CHANGED]
    assert lineage.observe(V2) == []  # latest 3 was not adopted, v2's time was not learned
    assert lineage.observe(recreated) != []
