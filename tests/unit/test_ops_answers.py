"""The OpenBao answer table: the classifier picks its rows, the README shows it, labels stay
bounded. Real answers from a real ``bao`` are tested row by row in
``tests/integration/test_health_answers.py``."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from _support.leaks import SERVER_TEXT, assert_clean
from bao_kms import errors
from bao_kms.openbao import _http_errors
from bao_kms.openbao.answers import (
    Answer,
    Breaker,
    answer_of,
    breaker_effect,
    error_class,
    log_fields,
    markdown_table,
    tries_next_address,
    wakes_probes,
)
from bao_kms.openbao.observe import OPERATIONS, operation_of
from bao_kms.openbao.transit import classify_decrypt_400

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def body(*texts: str) -> bytes:
    return ('{"errors": [' + ",".join(f'"{text}"' for text in texts) + "]}").encode()


def test_the_readme_table_is_the_rendered_enum():
    section = README.split("### OpenBao answers\n", 1)[1].split("\n### ", 1)[0]
    assert markdown_table() in section  # paste markdown_table() into README.md after a change


@pytest.mark.parametrize(
    ("status", "payload", "answer"),
    [
        (307, b"", Answer.REDIRECT),
        (400, body("requested version for encryption is less than the minimum"), None),
        (400, body("ciphertext or signature version is disallowed by policy (too old)"), None),
        (400, body("requested version for encryption is higher than the latest key version"), None),
        (400, body("encryption key not found"), Answer.NOT_FOUND),
        (400, b"Client sent an HTTP request to an HTTPS server.\n", Answer.BAD_REQUEST),
        (400, body(SERVER_TEXT), Answer.BAD_REQUEST),
        (401, body("permission denied"), Answer.UNAUTHENTICATED),
        (403, body("permission denied"), Answer.PERMISSION_DENIED),
        (404, body(), Answer.NOT_FOUND),
        (404, body(SERVER_TEXT), Answer.NOT_FOUND),
        (412, body(), Answer.PRECONDITION_FAILED),
        (418, body(), Answer.BAD_REQUEST),
        (429, body("rate limit quota exceeded"), Answer.RATE_LIMITED),
        (500, body(SERVER_TEXT), Answer.SERVER_ERROR),
        (502, b"bad gateway", Answer.SERVER_ERROR),
        (503, body("Vault is sealed"), Answer.SEALED),
        (503, body("no active node"), Answer.SERVER_ERROR),
        (504, b"", Answer.SERVER_ERROR),
        (600, b"{}", Answer.BAD_RESPONSE),
    ],
)
def test_classify_picks_the_row(status: int, payload: bytes, answer: Answer | None) -> None:
    expected = answer or Answer.KEY_VERSION_REJECTED
    error = _http_errors.classify(status, payload)
    assert answer_of(error) is expected
    assert isinstance(error, expected.error)
    assert error.error_class == expected.value
    assert str(status) in str(error)
    assert_clean(error)  # OpenBao's text (naming mount and key) is never copied


def test_decrypt_400s_by_cause() -> None:
    for text, answer in [
        ("message authentication failed", Answer.CIPHERTEXT_UNAUTHENTIC),
        ("invalid ciphertext: unable to decode", Answer.CIPHERTEXT_MALFORMED),
        ("ciphertext or signature version is disallowed by policy (too old)", None),
        ("encryption key not found", Answer.NOT_FOUND),
    ]:
        error = _http_errors.classify(400, body(text), classify_decrypt_400)
        assert answer_of(error) is (answer or Answer.KEY_VERSION_REJECTED), text


def test_every_row_builds_its_error_with_its_code_and_reason() -> None:
    for answer in Answer:
        error = answer.error_for("message")
        assert type(error) is answer.error and answer_of(error) is answer
        code, message = errors.grpc_status(error)
        assert code is not grpc.StatusCode.INTERNAL and message == "message"
        if answer.reason is not None:
            assert error.reason == answer.reason


def test_only_missing_answers_count_for_the_breaker() -> None:
    counting = {answer for answer in Answer if answer.breaker is Breaker.COUNTS}
    assert counting == {
        Answer.CONNECTION_FAILED,
        Answer.TIMEOUT,
        Answer.TLS_FAILED,
        Answer.TLS_UNTRUSTED,
        Answer.SERVER_ERROR,
        Answer.SEALED,
    }
    # anything unclassified (a bug) must end a trial rather than leave it in flight
    assert breaker_effect(ValueError()) is Breaker.INCONCLUSIVE
    assert breaker_effect(errors.DeadlineExceeded("late")) is Breaker.INCONCLUSIVE


def test_errors_raised_outside_the_classifier_find_their_row() -> None:
    assert answer_of(errors.OpenBaoCircuitOpen("open")) is Answer.CIRCUIT_OPEN
    assert answer_of(errors.OpenBaoBadResponse("junk")) is Answer.BAD_RESPONSE
    assert answer_of(errors.OpenBaoUnauthenticated("no file")) is Answer.NO_TOKEN
    assert answer_of(errors.AuthCredentialInvalid("no file")) is Answer.NO_TOKEN
    assert answer_of(errors.DeadlineExceeded("late")) is Answer.DEADLINE
    assert answer_of(errors.MalformedKeyId("bad")) is None  # not about OpenBao
    assert error_class(errors.MalformedKeyId("bad")) == "malformed_key_id"
    assert error_class(ZeroDivisionError()) == "bug"


def test_what_wakes_the_probes_and_what_fails_over() -> None:
    assert wakes_probes(Answer.PERMISSION_DENIED.error_for("403"))
    assert wakes_probes(Answer.KEY_VERSION_REJECTED.error_for("400"))
    assert wakes_probes(Answer.SEALED.error_for("503"))
    assert not wakes_probes(Answer.RATE_LIMITED.error_for("429"))  # would add load to a storm
    assert not wakes_probes(Answer.CIPHERTEXT_UNAUTHENTIC.error_for("400"))  # the caller's
    assert not wakes_probes(errors.UnknownKeyId("unknown"))
    assert tries_next_address(Answer.SEALED.error_for("503"))
    assert not tries_next_address(Answer.RATE_LIMITED.error_for("429"))


def test_a_refused_encrypt_logs_the_status_reasons_not_not_ready() -> None:
    refused = errors.NotReady("not healthy")
    refused.reasons = ("openbao_sealed", "status_stale")
    assert log_fields(refused) == {
        "reason": "openbao_sealed,status_stale",
        "error_class": "not_ready",
    }
    sealed = _http_errors.classify(503, b'{"errors":["Vault is sealed"],"request_id":"r-1"}')
    assert log_fields(sealed) == {
        "reason": "openbao_sealed",
        "error_class": "sealed",
        "openbao_request_id": "r-1",
    }
    assert log_fields(KeyError("secret")) == {"reason": "bug", "error_class": "bug"}


@pytest.mark.parametrize(
    ("path", "operation"),
    [
        ("secret-mount-name/encrypt/secret-key-name", "encrypt"),
        ("a/b/decrypt/k", "decrypt"),
        ("transit/keys/kms", "read_key"),
        ("transit/config/keys", "read_keys_config"),
        ("sys/health?standbyok=true", "health"),
        ("auth/token/lookup-self", "token_lookup_self"),
        ("auth/token/renew-self", "token_renew_self"),
        ("auth/approle/login", "login"),
        ("sys/seal-status", "other"),
    ],
)
def test_operation_labels_are_bounded_and_name_nothing(path: str, operation: str) -> None:
    assert operation_of(path) == operation
    assert operation in OPERATIONS
