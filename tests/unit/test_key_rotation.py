"""The rotation observer on its own: pending, promotion, retirement, and the guards.

Every test drives :mod:`bao_kms.keys.rotation` with Transit metadata and a clock reading it is
handed; a property test then runs random rotations, trims and observations and checks the
rules that must always hold (one active version that never goes down, nothing forgotten).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _support import SAFE_KEY
from bao_kms.keys.rotation import (
    DECRYPTABLE,
    KeyState,
    PlanError,
    Promotion,
    RotationPolicy,
    VersionRecord,
    VersionState,
    adopt,
    bootstrap,
    observe,
    promote,
    promotion_due,
    rebuild,
    restore,
    retire,
    state_problems,
)
from bao_kms.openbao import KeyMetadata
from bao_kms.reasons import Reason

P, A, R, W = (
    VersionState.PENDING,
    VersionState.ACTIVE,
    VersionState.RETIRED,
    VersionState.WITHDRAWN,
)
T0 = 1_700_000_000
POLICY = RotationPolicy(stable_observations=3, activation_delay=120)


def key_with(latest: int, **changes: int) -> KeyMetadata:
    """SAFE_KEY rotated to *latest*, version v created at T0 + 100 * v."""
    versions = {v: T0 + 100 * v for v in range(1, latest + 1)}
    low = changes.get("min_decryption_version", 1)
    listed = {v: c for v, c in versions.items() if v >= low}
    return dataclasses.replace(SAFE_KEY, latest_version=latest, versions=listed, **changes)


def states(state: KeyState) -> dict[int, VersionState]:
    return {v: r.state for v, r in state.versions.items()}


@pytest.fixture
def v1() -> KeyState:
    state = bootstrap(key_with(1))
    assert state is not None
    return state


def test_a_fresh_unrotated_key_bootstraps(v1):
    assert states(v1) == {1: A} and v1.highest_latest == 1 and state_problems(v1) == []


def test_a_rotated_key_does_not_bootstrap():
    assert bootstrap(key_with(2)) is None
    assert bootstrap(key_with(2, min_decryption_version=2)) is None


def test_a_new_version_is_pending_at_once_and_promoted_after_count_and_delay(v1):
    key = key_with(2)
    first = observe(v1, key, 1000, POLICY)
    assert states(first.state) == {1: A, 2: P} and first.added == (2,)
    assert first.state.promotion == Promotion(2, 1, 1000) and first.candidate is None
    second = observe(first.state, key, 1030, POLICY)
    third = observe(second.state, key, 1060, POLICY)
    assert third.state.promotion == Promotion(2, 3, 1000)
    assert third.candidate is None  # three observations, but only 60 s of the 120 s delay
    fourth = observe(third.state, key, 1120, POLICY)
    assert fourth.state.promotion == Promotion(2, 3, 1000)  # the count stops at the policy's
    assert fourth.candidate == 2
    promoted = promote(fourth.state, 2)
    assert states(promoted) == {1: R, 2: A} and promoted.promotion is None
    assert observe(promoted, key, 1150, POLICY) == observe(promoted, key, 1150, POLICY)
    assert observe(promoted, key, 1150, POLICY).state == promoted  # nothing left to do


def test_test_settings_promote_on_the_first_observation(v1):
    observation = observe(v1, key_with(2), 1000, RotationPolicy(1, 0))
    assert observation.candidate == 2


def test_the_delay_needs_the_observations_too(v1):
    state = observe(v1, key_with(2), 1000, POLICY).state
    late = observe(state, key_with(2), 5000, POLICY)
    assert late.candidate is None and late.state.promotion.observations == 2


def test_an_unsettled_key_restarts_the_count(v1):
    state = observe(v1, key_with(2), 1000, POLICY).state
    state = observe(state, key_with(2), 1030, POLICY).state
    unsettled = observe(state, key_with(2), 1060, POLICY, settled=False)
    assert unsettled.state.promotion is None and unsettled.candidate is None
    assert states(unsettled.state) == {1: A, 2: P}  # still decryptable
    again = observe(unsettled.state, key_with(2), 1090, POLICY)
    assert again.state.promotion == Promotion(2, 1, 1090)


def test_a_newer_rotation_restarts_the_count_and_skips_the_pending_version(v1):
    state = observe(v1, key_with(2), 1000, POLICY).state
    state = observe(state, key_with(3), 1030, POLICY).state
    assert states(state) == {1: A, 2: P, 3: P}
    assert state.promotion == Promotion(3, 1, 1030)
    promoted = promote(state, 3)
    assert states(promoted) == {1: R, 2: R, 3: A}  # the skipped version stays decryptable


def test_several_versions_at_once_are_all_kept(v1):
    observation = observe(v1, key_with(4), 1000, POLICY)
    assert states(observation.state) == {1: A, 2: P, 3: P, 4: P}
    assert observation.state.promotion.version == 4


def test_promotion_needs_a_pending_version_and_never_goes_back(v1):
    state = promote(observe(v1, key_with(2), 1000, RotationPolicy(1, 0)).state, 2)
    with pytest.raises(PlanError):
        promote(state, 1)
    with pytest.raises(PlanError):
        promote(state, 7)


def test_latest_version_going_back_fails_closed_and_teaches_nothing(v1):
    state = observe(v1, key_with(2), 1000, POLICY).state
    rollback = observe(state, key_with(1), 1030, POLICY)
    assert rollback.problems == (Reason.KEY_LINEAGE_LATEST_VERSION_DECREASED,)
    assert rollback.candidate is None and rollback.state.promotion is None
    assert states(rollback.state) == {1: A, 2: P}


def test_a_re_created_key_fails_closed(v1):
    recreated = dataclasses.replace(key_with(2), versions={1: T0 + 9999, 2: T0 + 10_000})
    observation = observe(v1, recreated, 1000, POLICY)
    assert observation.problems == (Reason.KEY_LINEAGE_VERSION_CREATED_CHANGED,)
    assert states(observation.state) == {1: A}  # the new v2 is not adopted
    assert adopt(v1, recreated).state == v1


def test_a_skipped_version_without_metadata_fails_closed(v1):
    key = dataclasses.replace(key_with(3), versions={1: T0 + 100, 3: T0 + 300})
    observation = observe(v1, key, 1000, RotationPolicy(1, 0))
    assert Reason.KEY_VERSION_METADATA_MISSING in observation.problems
    assert observation.candidate is None


def test_min_decryption_above_a_kept_version_fails_closed():
    state = KeyState({1: VersionRecord(T0 + 100, R), 2: VersionRecord(T0 + 200, A)}, 2)
    raised = observe(state, key_with(2, min_decryption_version=2), 1000, POLICY)
    assert raised.problems == (Reason.KEY_RETAINED_VERSION_BELOW_MIN_DECRYPTION,)
    above_active = observe(state, key_with(3, min_decryption_version=3), 1000, RotationPolicy(1, 0))
    assert Reason.KEY_ACTIVE_VERSION_BELOW_MIN_DECRYPTION in above_active.problems
    assert above_active.candidate is None


def test_a_withdrawn_version_may_be_below_min_decryption():
    state = KeyState({1: VersionRecord(T0 + 100, W), 2: VersionRecord(T0 + 200, A)}, 2)
    assert observe(state, key_with(2, min_decryption_version=2), 1000, POLICY).problems == ()


def test_a_trimmed_kept_version_fails_closed():
    state = KeyState({1: VersionRecord(T0 + 100, R), 2: VersionRecord(T0 + 200, A)}, 2)
    key = key_with(2, min_decryption_version=2, min_available_version=2)
    assert Reason.KEY_RETAINED_VERSION_TRIMMED in observe(state, key, 1000, POLICY).problems


def test_min_encryption_above_active_blocks_encryption_but_not_promotion(v1):
    key = key_with(2, min_encryption_version=2)
    observation = observe(v1, key, 1000, RotationPolicy(1, 0))
    assert observation.problems == (Reason.ENCRYPTION_BLOCKED,)
    assert observation.candidate == 2  # promoting v2 is what lifts the block
    assert observe(promote(observation.state, 2), key, 1001, POLICY).problems == ()


def test_a_lookup_adopts_without_counting(v1):
    state = observe(v1, key_with(2), 1000, POLICY).state
    looked = adopt(state, key_with(3))
    assert states(looked.state) == {1: A, 2: P, 3: P} and looked.added == (3,)
    assert looked.state.promotion == state.promotion and looked.candidate is None


def test_a_version_below_the_active_one_is_adopted_as_retired():
    """After a rebuild that could not list v1 and a lowered min_decryption_version."""
    state = rebuild(key_with(2, min_decryption_version=2))
    assert states(state) == {2: A}
    assert states(observe(state, key_with(2), 1000, POLICY).state) == {1: R, 2: A}


def test_rebuild_trusts_live_metadata_only():
    state = rebuild(key_with(4, min_decryption_version=2))
    assert states(state) == {2: R, 3: R, 4: A} and state.highest_latest == 4
    with pytest.raises(PlanError):
        rebuild(dataclasses.replace(SAFE_KEY, latest_version=2))


def test_retire_and_restore_round_trip():
    state = KeyState(
        {1: VersionRecord(1, R), 2: VersionRecord(2, R), 3: VersionRecord(3, A)},
        4,
        None,
    )
    state = KeyState({**state.versions, 4: VersionRecord(4, P)}, 4)
    retired, chosen = retire(state, 3)
    assert chosen == [1, 2] and states(retired) == {1: W, 2: W, 3: A, 4: P}
    assert retire(retired, 3) == (retired, [])  # nothing left to retire
    restored, back = restore(retired, [2, 1, 2])
    assert back == [1, 2] and restored == state
    with pytest.raises(PlanError, match="at most the active version"):
        retire(state, 4)
    with pytest.raises(PlanError, match="not in the registry"):
        restore(state, [9])


def test_broken_states_are_named():
    good = {1: VersionRecord(1, R), 2: VersionRecord(2, A)}
    assert state_problems(KeyState(good, 2)) == []
    assert state_problems(KeyState({1: VersionRecord(1, R)}, 1))
    assert state_problems(KeyState({**good, 3: VersionRecord(3, A)}, 3))
    assert state_problems(KeyState({1: VersionRecord(1, P), 2: VersionRecord(2, A)}, 2))
    assert state_problems(KeyState({1: VersionRecord(1, A), 2: VersionRecord(2, R)}, 2))
    assert state_problems(KeyState(good, 1))
    assert state_problems(KeyState(good, 2, Promotion(2, 1, 0)))


def test_promotion_due_is_the_later_of_count_and_delay():
    assert promotion_due(None, POLICY, 0, 30) is None
    assert promotion_due(Promotion(2, 1, 1000), POLICY, 1000, 30) == 1120
    assert promotion_due(Promotion(2, 1, 1000), RotationPolicy(5, 0), 1000, 30) == 1120
    assert promotion_due(Promotion(2, 3, 1000), POLICY, 2000, 30) == 2000


# --- random histories ---------------------------------------------------------------------------

steps = st.lists(
    st.one_of(
        st.tuples(st.just("rotate"), st.integers(1, 3)),
        st.tuples(st.just("observe"), st.integers(0, 200)),
        st.tuples(st.just("raise_min_decryption"), st.integers(0, 2)),
        st.tuples(st.just("retire"), st.integers(0, 3)),
        st.tuples(st.just("restore"), st.integers(1, 12)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_random_histories_keep_the_rules(history):
    latest, min_decryption, now = 1, 1, 1000.0
    policy = RotationPolicy(2, 60)
    state = bootstrap(key_with(1))
    assert state is not None
    seen_active = [state.active]
    for action, amount in history:
        if action == "rotate":
            latest += amount
        elif action == "raise_min_decryption":
            min_decryption = min(latest, min_decryption + amount)
        elif action == "retire" and amount:
            try:
                state, _ = retire(state, min(state.active, min(state.versions) + amount))
            except PlanError:
                pass
        elif action == "restore":
            state, _ = restore(state, [v for v in state.versions if v <= amount])
        now += amount if action == "observe" else 1
        key = key_with(latest, min_decryption_version=min_decryption)
        observation = observe(state, key, now, policy)
        state = observation.state
        if observation.candidate is not None:
            state = promote(state, observation.candidate)
        assert state_problems(state) == []
        assert state.active >= seen_active[-1]  # never flips back
        seen_active.append(state.active)
        # every version OpenBao still lists for decryption is known and none is forgotten
        assert all(v in state.versions for v in key.versions)
        assert state.highest_latest == latest
        kept = state.numbers(*DECRYPTABLE)
        if any(v < min_decryption for v in kept):
            assert observation.problems  # a kept version OpenBao will not decrypt: fail closed
