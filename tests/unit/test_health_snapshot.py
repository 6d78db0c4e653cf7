"""Health as a pure function of a snapshot and a clock reading, and probe failure reasons."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from bao_kms import errors
from bao_kms.identity import Identity
from bao_kms.openbao.answers import Answer
from bao_kms.reasons import Reason
from bao_kms.status import Snapshot, evaluate, failure_reason
from bao_kms.status.snapshot import deep_failure_reasons

V1 = Identity("provider", "cluster", "instance", "", "mount", "lineage").key_version(1, 1)
PROBED = Snapshot(
    active=V1,
    versions=MappingProxyType({V1.key_id: V1}),
    metadata_at=100.0,
    metadata_problems=(),
    deep_key_id=V1.key_id,
)


def test_a_fresh_snapshot_is_not_probed_yet():
    health = evaluate(Snapshot(), now=0.0, max_staleness=10)
    assert (health.ok, health.reasons, health.key_id) == (False, (Reason.NOT_PROBED_YET,), "")
    assert health.snapshot_age is None


def test_ok_until_max_staleness_then_stale():
    assert evaluate(PROBED, now=110.0, max_staleness=10).healthz == "ok"
    stale = evaluate(PROBED, now=110.5, max_staleness=10)
    assert stale.reasons == (Reason.STATUS_STALE,) and stale.key_id == ""
    assert stale.snapshot_age == 10.5


def test_the_active_key_needs_its_own_deep_probe():
    pending = Snapshot(active=V1, metadata_at=100.0, metadata_problems=())
    assert evaluate(pending, 100.0, 10).reasons == (Reason.DEEP_PROBE_PENDING,)


def test_metadata_read_without_an_active_key():
    empty = Snapshot(metadata_at=100.0, metadata_problems=())
    assert evaluate(empty, 100.0, 10).reasons == (Reason.NO_ACTIVE_KEY,)


def test_reasons_keep_their_order_without_repeats():
    snapshot = Snapshot(
        active=V1,
        metadata_at=100.0,
        metadata_problems=(Reason.OPENBAO_SEALED,),
        deep_problems=(Reason.OPENBAO_SEALED,),
    )
    health = evaluate(snapshot, 200.0, 10)
    assert health.healthz == "openbao_sealed,status_stale"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (errors.OpenBaoUnavailable(), Reason.OPENBAO_UNAVAILABLE),
        (errors.OpenBaoSealed(), Reason.OPENBAO_SEALED),
        (errors.OpenBaoCircuitOpen(), Reason.OPENBAO_CIRCUIT_OPEN),
        (errors.OpenBaoUnauthenticated(), Reason.OPENBAO_UNAUTHENTICATED),
        (errors.OpenBaoPermissionDenied(), Reason.OPENBAO_PERMISSION_DENIED),
        # OpenBao answered, or the failure says nothing about OpenBao's state
        (errors.OpenBaoBadResponse(), Reason.DEEP_PROBE_DECRYPT_FAILED),
        (errors.OpenBaoRejected(), Reason.DEEP_PROBE_DECRYPT_FAILED),
        (errors.DeadlineExceeded(), Reason.DEEP_PROBE_DECRYPT_FAILED),
        (ValueError(), Reason.DEEP_PROBE_DECRYPT_FAILED),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_failure_reason(error, reason):
    assert failure_reason(error, Reason.DEEP_PROBE_DECRYPT_FAILED) is reason


DECRYPT = Reason.DEEP_PROBE_DECRYPT_FAILED
ENCRYPT = Reason.DEEP_PROBE_ENCRYPT_FAILED


@pytest.mark.parametrize(
    ("error", "capability", "reasons"),
    [
        # the policy refuses one call: the cause and the call that failed
        (
            Answer.PERMISSION_DENIED.error_for("403"),
            DECRYPT,
            ("openbao_permission_denied", DECRYPT),
        ),
        (Answer.KEY_VERSION_REJECTED.error_for("400"), ENCRYPT, (ENCRYPT,)),
        (Answer.NOT_FOUND.error_for("404"), ENCRYPT, ("openbao_not_found", ENCRYPT)),
        (errors.OpenBaoBadResponse("other bytes"), DECRYPT, (DECRYPT,)),
        # OpenBao-wide causes: naming the call would add nothing
        (Answer.SEALED.error_for("503"), ENCRYPT, ("openbao_sealed",)),
        (Answer.CONNECTION_FAILED.error_for("down"), DECRYPT, ("openbao_unavailable",)),
        (Answer.TOKEN_REJECTED.error_for("403"), DECRYPT, ("openbao_token_rejected",)),
        (Answer.RATE_LIMITED.error_for("429"), ENCRYPT, ("openbao_rate_limited",)),
    ],
    ids=lambda value: getattr(value, "error_class", None) or str(value),
)
def test_a_deep_probe_failure_names_the_capability(error, capability, reasons):
    assert deep_failure_reasons(error, capability) == reasons


def test_error_class_of_the_standing_problem():
    failed = Snapshot(metadata_error_class="", deep_error_class="permission_denied")
    assert failed.error_class == "permission_denied"
    both = Snapshot(metadata_error_class="sealed", deep_error_class="permission_denied")
    assert both.error_class == "sealed"  # metadata's first: it decides everything else
