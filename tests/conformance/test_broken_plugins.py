"""The harness fails exactly the broken rule's check, for one broken plugin per rule.

Every plugin here is a real gRPC server on a Unix socket (see ``conftest.py``); the harness
runs its full scenario against it. "Exactly" matters: a harness that fails everything when
one thing is wrong would pass these tests' first half and tell an operator nothing.
"""

from __future__ import annotations

import pytest

from _support.kms_plugins import (
    AcceptsOtherKeyId,
    AcceptsTamperedCiphertext,
    EncryptKeyIdDiffers,
    FakePlugin,
    FlipFlopKeyId,
    ForgetsOldKeys,
    HealthzFine,
    IgnoresAnnotations,
    OneLabelAnnotationKey,
    OversizedAnnotations,
    OversizedCiphertext,
    OversizedKeyId,
    RefusesConcurrentDuplicates,
    SlowDecrypt,
    UppercaseAnnotationKey,
    VersionV1,
    WrongPlaintext,
)
from bao_kms.api.client import KmsClient
from bao_kms.conformance.checks import Check
from bao_kms.conformance.report import Outcome
from bao_kms.conformance.scenario import ConformanceOptions, run_conformance

pytestmark = pytest.mark.timeout(60)

BROKEN = [
    pytest.param(EncryptKeyIdDiffers, Check.ENCRYPT_KEY_ID, id="encrypt-key-id-differs"),
    pytest.param(UppercaseAnnotationKey, Check.ENCRYPT_ANNOTATION_KEYS, id="uppercase-key"),
    pytest.param(OneLabelAnnotationKey, Check.ENCRYPT_ANNOTATION_KEYS, id="one-label-key"),
    pytest.param(OversizedAnnotations, Check.ENCRYPT_ANNOTATION_SIZE, id="33-kib-annotations"),
    pytest.param(OversizedCiphertext, Check.ENCRYPT_CIPHERTEXT_SIZE, id="2-kib-ciphertext"),
    pytest.param(HealthzFine, Check.STATUS_HEALTHZ, id="healthz-fine"),
    pytest.param(VersionV1, Check.STATUS_VERSION, id="version-v1"),
    pytest.param(OversizedKeyId, Check.STATUS_KEY_ID, id="1204-byte-key-id"),
    pytest.param(FlipFlopKeyId, Check.KEY_ID_STABLE, id="flip-flop-key-id"),
    pytest.param(WrongPlaintext, Check.DECRYPT_ROUND_TRIP, id="wrong-plaintext"),
    pytest.param(
        AcceptsTamperedCiphertext,
        Check.DECRYPT_REFUSES_TAMPERED_CIPHERTEXT,
        id="accepts-tampered-ciphertext",
    ),
    pytest.param(AcceptsOtherKeyId, Check.DECRYPT_REFUSES_OTHER_KEY_ID, id="accepts-other-key-id"),
    pytest.param(
        IgnoresAnnotations, Check.DECRYPT_REFUSES_ALTERED_ANNOTATIONS, id="ignores-annotations"
    ),
    pytest.param(
        RefusesConcurrentDuplicates, Check.COLD_START_BURST, id="refuses-concurrent-duplicates"
    ),
]


@pytest.mark.parametrize(("plugin_class", "broken"), BROKEN)
def test_a_broken_plugin_fails_exactly_its_check(run_against, plugin_class, broken):
    report = run_against(plugin_class())
    assert report.failed_checks() == {broken}, report.text()
    assert not report.ok
    assert report.text().splitlines()[-1].split(", ")[1] == "1 failed"


def test_a_plugin_that_forgets_old_keys_fails_rotation_only(run_against):
    plugin = ForgetsOldKeys()
    report = run_against(plugin, rotate=plugin.rotate)
    assert report.failed_checks() == {Check.ROTATION}, report.text()


def test_a_correct_plugin_passes_every_check_through_a_rotation(run_against):
    plugin = FakePlugin()
    report = run_against(plugin, rotate=plugin.rotate)
    not_passed = {r.check: r.outcome for r in report.results if r.outcome is not Outcome.PASS}
    # the machine is shared: a latency warning is allowed, nothing else
    assert set(not_passed) <= {Check.ENCRYPT_LATENCY, Check.DECRYPT_LATENCY}, report.text()
    assert set(not_passed.values()) <= {Outcome.WARN}
    assert report.ok
    assert report.figures["key_id_changes"] == 1
    # the seed is encrypted only on start, on restarts and on the key_id change
    restarts = 2 + 8 + 1  # lifetimes after the first, latency samples, cold start
    assert report.figures["dek_seeds_encrypted"] == 1 + restarts + 1
    assert report.figures["rpc_calls"]["encrypt"] == report.figures["dek_seeds_encrypted"]


def test_without_a_rotation_the_rotation_check_is_skipped_or_required(run_against):
    report = run_against(FakePlugin())
    assert report.outcome_of(Check.ROTATION) is Outcome.SKIP
    assert report.ok

    strict = run_against(FakePlugin(), expect_rotation=True, rotation_timeout=0.3)
    assert strict.failed_checks() == {Check.ROTATION}, strict.text()


def test_a_missed_latency_target_warns_unless_strict(run_against):
    report = run_against(SlowDecrypt())
    assert report.outcome_of(Check.DECRYPT_LATENCY) is Outcome.WARN, report.text()
    assert report.ok

    strict = run_against(SlowDecrypt(), strict_latency=True)
    assert strict.failed_checks() == {Check.DECRYPT_LATENCY}, strict.text()


def test_an_unreachable_socket_fails_status_reachable_only(socket_dir):
    with KmsClient(socket_dir / "nobody-listens.sock", timeout=0.2) as client:
        report = run_conformance(client, ConformanceOptions(ready_timeout=0.3))
    assert report.failed_checks() == {Check.STATUS_REACHABLE}, report.text()
    assert report.count(Outcome.SKIP) == len(Check) - 1
