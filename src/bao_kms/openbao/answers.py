"""Every class of answer OpenBao gives (or fails to give), and what the provider does with it.

This is the one table: for each class, the error the provider raises (hence its gRPC code and
its Status reason), its effect on the circuit breaker, whether the request is retried, and
whether a request that meets it wakes the status probes at once. The classifier
(:mod:`._http_errors`) builds errors through :meth:`Answer.error_for`, the transport asks
:func:`breaker_effect` and :func:`tries_next_address`, the monitor asks :func:`wakes_probes`,
and README's "OpenBao answers" table is :func:`markdown_table` (a test keeps them equal).

The word of each member is the ``error_class`` of logs, ``/ready`` and the ``status`` label of
``openbao_kms_openbao_requests_total``: a bounded vocabulary.
"""

from __future__ import annotations

from enum import Enum, StrEnum

from ..errors import (
    CiphertextAuthenticationFailed,
    DeadlineExceeded,
    InvalidCiphertext,
    KmsError,
    NotReady,
    OpenBaoBadResponse,
    OpenBaoCircuitOpen,
    OpenBaoPermissionDenied,
    OpenBaoRedirected,
    OpenBaoRejected,
    OpenBaoSealed,
    OpenBaoTlsUntrusted,
    OpenBaoUnauthenticated,
    OpenBaoUnavailable,
    grpc_status,
)
from ..reasons import Reason


class Breaker(Enum):
    """What an outcome does to the circuit breaker."""

    #: no usable answer from OpenBao: one more consecutive failure (3 open it)
    COUNTS = "counts as a failure"
    #: OpenBao answered: it is reachable, so the failure count resets (a trial closes it)
    RESETS = "resets (OpenBao answered)"
    #: no verdict either way: a trial in flight ends and is tried again later
    INCONCLUSIVE = "none (ends a trial)"
    #: nothing was sent
    UNTOUCHED = "none (nothing sent)"


class Retry(Enum):
    """What the transport does next within the same request."""

    NEXT_ADDRESS = "next address"
    FRESH_TOKEN = "once, after a token re-read or re-login"
    NO = "no"


class Answer(StrEnum):
    """One row of the table; the member's value is its ``error_class`` word."""

    description: str
    error: type[KmsError]
    reason: str | None
    breaker: Breaker
    retry: Retry
    wakes: bool

    def __new__(
        cls,
        word: str,
        description: str,
        error: type[KmsError],
        reason: str | None,
        breaker: Breaker,
        retry: Retry,
        wakes: bool,
    ) -> Answer:
        member = str.__new__(cls, word)
        member._value_ = word
        member.description = description
        member.error = error
        member.reason = reason  # None: the error class's own reason
        member.breaker = breaker
        member.retry = retry
        member.wakes = wakes
        return member

    # --- no answer at all ---------------------------------------------------------------------
    CONNECTION_FAILED = (
        "connection_failed",
        "connection refused or reset, no route, name not resolved",
        OpenBaoUnavailable,
        None,
        Breaker.COUNTS,
        Retry.NEXT_ADDRESS,
        True,
    )
    TIMEOUT = (
        "timeout",
        "no answer within `openbao.timeout` (a hung or partitioned server)",
        OpenBaoUnavailable,
        None,
        Breaker.COUNTS,
        Retry.NEXT_ADDRESS,
        True,
    )
    TLS_FAILED = (
        "tls_failed",
        "TLS handshake failed (e.g. `https://` to a plain-http server)",
        OpenBaoUnavailable,
        None,
        Breaker.COUNTS,
        Retry.NEXT_ADDRESS,
        True,
    )
    TLS_UNTRUSTED = (
        "tls_untrusted",
        "the server's certificate failed verification (unknown CA, expired, other name)",
        OpenBaoTlsUntrusted,
        None,
        Breaker.COUNTS,
        Retry.NEXT_ADDRESS,
        True,
    )
    # --- OpenBao (or a proxy in front of it) cannot serve ------------------------------------
    SERVER_ERROR = (
        "server_error",
        "HTTP 500, 502, 504, any other 5xx, or 503 without `sealed`",
        OpenBaoUnavailable,
        None,
        Breaker.COUNTS,
        Retry.NEXT_ADDRESS,
        True,
    )
    SEALED = (
        "sealed",
        "HTTP 503 saying the server is sealed",
        OpenBaoSealed,
        None,
        Breaker.COUNTS,
        Retry.NEXT_ADDRESS,
        True,
    )
    # --- OpenBao answered: it is up, the request was not served ------------------------------
    RATE_LIMITED = (
        "rate_limited",
        "HTTP 429 (a rate-limit quota; another node shares the quota, so no retry)",
        OpenBaoUnavailable,
        Reason.OPENBAO_RATE_LIMITED,
        Breaker.RESETS,
        Retry.NO,
        False,
    )
    PRECONDITION_FAILED = (
        "precondition_failed",
        "HTTP 412 (a node behind the cluster's latest write)",
        OpenBaoUnavailable,
        None,
        Breaker.RESETS,
        Retry.NEXT_ADDRESS,
        False,
    )
    REDIRECT = (
        "redirect",
        "HTTP 3xx (never followed: the token would go to an address nobody configured)",
        OpenBaoRedirected,
        None,
        Breaker.RESETS,
        Retry.NEXT_ADDRESS,
        False,
    )
    CIPHERTEXT_UNAUTHENTIC = (
        "ciphertext_unauthentic",
        "HTTP 400 `message authentication failed` (tampered, or other AAD)",
        CiphertextAuthenticationFailed,
        None,
        Breaker.RESETS,
        Retry.NO,
        False,
    )
    CIPHERTEXT_MALFORMED = (
        "ciphertext_malformed",
        "HTTP 400 `invalid ciphertext`",
        InvalidCiphertext,
        None,
        Breaker.RESETS,
        Retry.NO,
        False,
    )
    KEY_VERSION_REJECTED = (
        "key_version_rejected",
        "HTTP 400: the version is below `min_encryption_version` / `min_decryption_version` "
        "or above `latest_version`",
        OpenBaoRejected,
        None,
        Breaker.RESETS,
        Retry.NO,
        True,
    )
    NOT_FOUND = (
        "not_found",
        "HTTP 404 (no such mount or key), or 400 `encryption key not found`",
        OpenBaoRejected,
        Reason.OPENBAO_NOT_FOUND,
        Breaker.RESETS,
        Retry.NO,
        True,
    )
    BAD_REQUEST = (
        "bad_request",
        "any other 4xx, e.g. a non-JSON 400 from `http://` to a TLS port",
        OpenBaoRejected,
        None,
        Breaker.RESETS,
        Retry.NO,
        False,
    )
    UNAUTHENTICATED = (
        "unauthenticated",
        "HTTP 401",
        OpenBaoUnauthenticated,
        None,
        Breaker.RESETS,
        Retry.FRESH_TOKEN,
        True,
    )
    TOKEN_REJECTED = (
        "token_rejected",
        "HTTP 403 and `auth/token/lookup-self` refused too: the token expired or was revoked",
        OpenBaoUnauthenticated,
        Reason.OPENBAO_TOKEN_REJECTED,
        Breaker.RESETS,
        Retry.FRESH_TOKEN,
        True,
    )
    PERMISSION_DENIED = (
        "permission_denied",
        "HTTP 403 while the token itself is valid (or could not be checked): the policy",
        OpenBaoPermissionDenied,
        None,
        Breaker.RESETS,
        Retry.FRESH_TOKEN,
        True,
    )
    BAD_RESPONSE = (
        "bad_response",
        "a 2xx whose body is not what the call expects",
        OpenBaoBadResponse,
        None,
        Breaker.RESETS,
        Retry.NO,
        False,
    )
    # --- nothing decided by OpenBao ----------------------------------------------------------
    NO_TOKEN = (
        "no_token",
        "no token to send: a credential file is unusable or the login was refused",
        OpenBaoUnauthenticated,
        None,
        Breaker.INCONCLUSIVE,
        Retry.NO,
        True,
    )
    DEADLINE = (
        "deadline",
        "the caller's deadline passed first",
        DeadlineExceeded,
        None,
        Breaker.INCONCLUSIVE,
        Retry.NO,
        False,
    )
    CIRCUIT_OPEN = (
        "circuit_open",
        "failing fast: the breaker is open",
        OpenBaoCircuitOpen,
        None,
        Breaker.UNTOUCHED,
        Retry.NO,
        False,
    )

    def error_for(self, message: str) -> KmsError:
        """This answer's error with *message* (which must be secret-free)."""
        built = self.error(message)
        built.error_class = self.value
        if self.reason is not None:
            built.reason = self.reason
        return built

    @property
    def status_reason(self) -> str | None:
        """The Status reason a probe reports for it; None: the probe's own default."""
        word = self.reason if self.reason is not None else self.error.reason
        return word if isinstance(word, Reason) else None


#: classes whose errors are raised outside the classifier (parsers, the auth, the breaker,
#: deadlines) and so carry no error_class of their own; most specific first
_BY_CLASS: tuple[tuple[type[KmsError], Answer], ...] = (
    (OpenBaoCircuitOpen, Answer.CIRCUIT_OPEN),
    (OpenBaoTlsUntrusted, Answer.TLS_UNTRUSTED),
    (OpenBaoRedirected, Answer.REDIRECT),
    (OpenBaoBadResponse, Answer.BAD_RESPONSE),
    (OpenBaoSealed, Answer.SEALED),
    (OpenBaoUnauthenticated, Answer.NO_TOKEN),
    (DeadlineExceeded, Answer.DEADLINE),
)


_BY_WORD: dict[str, Answer] = {answer.value: answer for answer in Answer}


def answer_of(error: BaseException) -> Answer | None:
    """The row *error* came from; None for errors that are not about OpenBao."""
    if not isinstance(error, KmsError):
        return None
    if error.error_class:
        return _BY_WORD.get(error.error_class)
    for cls, answer in _BY_CLASS:
        if isinstance(error, cls):
            return answer
    return None


def breaker_effect(error: BaseException) -> Breaker:
    answer = answer_of(error)
    # anything unclassified (a bug) must still end a trial, never leave it in flight
    return answer.breaker if answer is not None else Breaker.INCONCLUSIVE


def tries_next_address(error: BaseException) -> bool:
    answer = answer_of(error)
    return answer is not None and answer.retry is Retry.NEXT_ADDRESS


def wakes_probes(error: BaseException) -> bool:
    """True when a request meeting *error* says something about the provider's health."""
    answer = answer_of(error)
    return answer is not None and answer.wakes


def error_class(error: BaseException) -> str:
    """The ``error_class`` word for logs and metrics: the answer, else the error's reason."""
    answer = answer_of(error)
    if answer is not None:
        return answer.value
    return error.reason if isinstance(error, KmsError) else "bug"


def log_fields(error: BaseException) -> dict[str, str]:
    """``reason``, ``error_class`` (and ``openbao_request_id`` when known) for a log line.

    A refused Encrypt logs the Status reasons that refused it, not ``not_ready``.
    """
    if not isinstance(error, KmsError):
        return {"reason": "bug", "error_class": "bug"}
    reason = ",".join(error.reasons) if isinstance(error, NotReady) else error.reason
    fields = {"reason": reason or error.reason, "error_class": error_class(error)}
    if error.openbao_request_id:
        fields["openbao_request_id"] = error.openbao_request_id
    return fields


_PROBE_DEFAULT = "the probe's own (`metadata_read_failed`, `deep_probe_*_failed`)"
#: rows whose Status reason is not one word
_SHOWN_REASON = {
    Answer.CIPHERTEXT_UNAUTHENTIC: "none (the caller's ciphertext)",
    Answer.CIPHERTEXT_MALFORMED: "none (the caller's ciphertext)",
    Answer.NO_TOKEN: "`auth_credential_invalid` / `auth_login_refused` (the auth says which)",
}


def markdown_table() -> str:
    """README's "OpenBao answers" table, one row per member, every column derived."""
    rows = [
        "| OpenBao's answer | `error_class` | gRPC code | Status reason | breaker | retry "
        "| wakes probes |",
        "|---|---|---|---|---|---|---|",
    ]
    for answer in Answer:
        code = grpc_status(answer.error_for("x"))[0].name
        reason = answer.status_reason
        shown = _SHOWN_REASON.get(answer) or (f"`{reason}`" if reason else _PROBE_DEFAULT)
        rows.append(
            f"| {answer.description} | `{answer}` | `{code}` | {shown} | {answer.breaker.value} "
            f"| {answer.retry.value} | {'yes' if answer.wakes else 'no'} |"
        )
    return "\n".join(rows) + "\n"
