"""The one error -> gRPC status table (DESIGN §5): every KmsError class mapped, bugs INTERNAL."""

from __future__ import annotations

import importlib

import grpc
import pytest

from bao_kms import errors
from bao_kms.errors import KmsError, grpc_status
from bao_kms.reasons import Reason

Code = grpc.StatusCode

#: Written from DESIGN §5, one row per class. A class added to errors.py without a row here
#: fails test_every_kms_error_class_has_an_expectation.
EXPECTED: dict[str, grpc.StatusCode] = {
    # empty / oversized field, malformed key_id, invalid or mismatched annotations,
    # Transit "message authentication failed"
    "InvalidRequest": Code.INVALID_ARGUMENT,
    # request bytes that are not a protobuf message of the method's type
    "MalformedRequest": Code.INVALID_ARGUMENT,
    "MalformedKeyId": Code.INVALID_ARGUMENT,
    "InvalidAnnotations": Code.INVALID_ARGUMENT,
    "InvalidCiphertext": Code.INVALID_ARGUMENT,
    "CiphertextAuthenticationFailed": Code.INVALID_ARGUMENT,
    # well-formed but unknown key_id
    "UnknownKeyId": Code.NOT_FOUND,
    # an unknown key_id the rate-limited lookup did not check: retry, never a definite answer
    "KeyIdNotChecked": Code.UNAVAILABLE,
    # Encrypt while unhealthy / stale
    "NotReady": Code.FAILED_PRECONDITION,
    # Decrypt of a version withdrawn by retire-versions: the same answer in every process
    "KeyVersionWithdrawn": Code.FAILED_PRECONDITION,
    # bounded queue full
    "Overloaded": Code.RESOURCE_EXHAUSTED,
    # OpenBao down, sealed, 5xx, TLS/connection error
    "OpenBaoError": Code.UNAVAILABLE,
    "OpenBaoUnavailable": Code.UNAVAILABLE,
    "OpenBaoSealed": Code.UNAVAILABLE,
    "OpenBaoCircuitOpen": Code.UNAVAILABLE,
    "OpenBaoBadResponse": Code.UNAVAILABLE,
    "OpenBaoTlsUntrusted": Code.UNAVAILABLE,
    "OpenBaoRedirected": Code.UNAVAILABLE,
    # OpenBao 401 after one re-login / 403
    "OpenBaoUnauthenticated": Code.UNAUTHENTICATED,
    "OpenBaoPermissionDenied": Code.PERMISSION_DENIED,
    # no token can be had: a bad credential file, or OpenBao refused the login
    "AuthCredentialInvalid": Code.UNAUTHENTICATED,
    "AuthLoginRefused": Code.UNAUTHENTICATED,
    # an unexpected 4xx: OpenBao's state is wrong, the caller cannot fix it by retrying
    # the same request differently (errors.py documents this choice)
    "OpenBaoRejected": Code.FAILED_PRECONDITION,
    # request deadline passed
    "DeadlineExceeded": Code.DEADLINE_EXCEEDED,
}


def all_subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found.add(sub)
        found |= all_subclasses(sub)
    return found


def _import_all_error_users() -> None:
    """Import modules that might define further KmsError subclasses outside errors.py."""
    for module in ("bao_kms.api.service", "bao_kms.openbao", "bao_kms.status"):
        importlib.import_module(module)


_import_all_error_users()
# Only the provider's own classes: tests elsewhere may define throwaway subclasses.
KMS_ERROR_CLASSES = sorted(
    (cls for cls in all_subclasses(KmsError) if cls.__module__.startswith("bao_kms")),
    key=lambda cls: cls.__name__,
)


def test_hierarchy_is_found() -> None:
    # Guards the walk itself: nested classes (OpenBaoSealed under OpenBaoUnavailable under
    # OpenBaoError) must be reached.
    names = {cls.__name__ for cls in KMS_ERROR_CLASSES}
    assert {"MalformedKeyId", "OpenBaoSealed", "OpenBaoBadResponse", "DeadlineExceeded"} <= names


def test_every_kms_error_class_has_an_expectation() -> None:
    missing = sorted(cls.__name__ for cls in KMS_ERROR_CLASSES if cls.__name__ not in EXPECTED)
    assert missing == [], f"KmsError classes with no DESIGN §5 mapping in this test: {missing}"


def test_no_stale_expectations() -> None:
    names = {cls.__name__ for cls in KMS_ERROR_CLASSES}
    assert set(EXPECTED) - names == set()


@pytest.mark.parametrize("cls", KMS_ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_code_matches_design(cls: type[KmsError]) -> None:
    code, message = grpc_status(cls("key version 3 is not known"))
    assert code == EXPECTED[cls.__name__]
    assert message == "key version 3 is not known"


@pytest.mark.parametrize("cls", KMS_ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_message_never_empty(cls: type[KmsError]) -> None:
    code, message = grpc_status(cls())
    assert code == EXPECTED[cls.__name__]
    assert message.strip()


@pytest.mark.parametrize("cls", KMS_ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_reason_is_a_stable_metric_word(cls: type[KmsError]) -> None:
    assert cls.reason != KmsError.reason
    assert cls.reason.replace("_", "").isalpha() and cls.reason.islower()


def test_reasons_are_unique() -> None:
    reasons = [cls.reason for cls in KMS_ERROR_CLASSES]
    assert len(reasons) == len(set(reasons))


@pytest.mark.parametrize(
    "exc",
    [
        KeyError("secret-token-123"),
        ValueError("secret-token-123"),
        RuntimeError("plaintext secret-token-123"),
        errors.ConfigError("secret-token-123"),
        errors.SocketError("secret-token-123"),
        ZeroDivisionError("secret-token-123"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_non_kms_error_is_internal_and_generic(exc: Exception) -> None:
    code, message = grpc_status(exc)
    assert code == Code.INTERNAL
    assert "secret-token-123" not in message
    assert message.strip()
    assert message == errors.INTERNAL_MESSAGE


def test_subclass_defined_later_maps_like_its_base() -> None:
    class Special(errors.OpenBaoSealed):
        """A test-only refinement."""

    try:
        assert grpc_status(Special("sealed"))[0] == Code.UNAVAILABLE
    finally:
        del Special


def test_openbao_states_that_status_reports_are_reason_members() -> None:
    """The probes report these errors' reasons as Status reasons (status.failure_reason)."""
    for cls in (
        errors.OpenBaoUnavailable,
        errors.OpenBaoSealed,
        errors.OpenBaoCircuitOpen,
        errors.OpenBaoUnauthenticated,
        errors.OpenBaoPermissionDenied,
        errors.OpenBaoTlsUntrusted,
        errors.OpenBaoRedirected,
        errors.AuthCredentialInvalid,
        errors.AuthLoginRefused,
    ):
        assert isinstance(cls.reason, Reason), cls.__name__
