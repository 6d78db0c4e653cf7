"""The provider's one exception hierarchy and the one table that maps it to gRPC status codes.

Every error raised on a request path is a :class:`KmsError`. Its message is shown to
kube-apiserver, so it must never carry plaintext, ciphertext, tokens, raw identity labels or
key names: messages say *what kind* of thing is wrong, and at most a length or a version number.
:func:`grpc_status` is the only place that turns an exception into a gRPC code; anything that is
not a ``KmsError`` is a bug and becomes ``INTERNAL`` with a generic message.
"""

from __future__ import annotations

import grpc

from .reasons import Reason


class KmsError(Exception):
    """Base of every error the provider reports on purpose."""

    #: short, stable, secret-free word for logs and metrics labels; a :class:`Reason` member
    #: when a probe that meets this error reports it as a Status reason
    reason: str = "error"
    #: which class of OpenBao answer produced this error (``bao_kms.openbao.answers.Answer``,
    #: set by the classifier); "" for errors that did not come from an OpenBao answer
    error_class: str = ""
    #: OpenBao's ``request_id`` for the answer, when its body carried one (logs only)
    openbao_request_id: str = ""


# --- the request is wrong (INVALID_ARGUMENT) -------------------------------------------------


class InvalidRequest(KmsError):
    """A request field is empty, oversized or malformed."""

    reason = "invalid_request"


class MalformedRequest(InvalidRequest):
    """The request's bytes are not a valid protobuf message of its type (or there were none)."""

    reason = "malformed_request"


class MalformedKeyId(InvalidRequest):
    """The key_id is not of the ``obk2.`` form this provider writes."""

    reason = "malformed_key_id"


class InvalidAnnotations(InvalidRequest):
    """The annotations are missing, malformed or do not match the key version."""

    reason = "invalid_annotations"


class InvalidCiphertext(InvalidRequest):
    """The ciphertext is not a Transit ``vault:vN:`` string of the expected version."""

    reason = "invalid_ciphertext"


class CiphertextAuthenticationFailed(InvalidRequest):
    """Transit refused the ciphertext: tampered, or encrypted under other AAD."""

    reason = "authentication_failed"


# --- the key is not one we know (NOT_FOUND) ---------------------------------------------------


class UnknownKeyId(KmsError):
    """A well-formed key_id that names no key version this provider knows."""

    reason = "unknown_key_id"


class KeyIdNotChecked(KmsError):
    """An unknown key_id that could not be checked against OpenBao now (lookups are
    rate-limited): not a definite NOT_FOUND, so the caller may retry."""

    reason = "key_id_not_checked"


# --- the provider cannot encrypt right now (FAILED_PRECONDITION) -------------------------------


class NotReady(KmsError):
    """Encrypt refused: the provider is unhealthy or its status is stale."""

    reason = "not_ready"
    #: the Status reasons that made it refuse (logged as the cause, not "not_ready")
    reasons: tuple[str, ...] = ()


class KeyVersionWithdrawn(KmsError):
    """Decrypt refused: the key_id names a version the operator withdrew (retire-versions)."""

    reason = "key_version_withdrawn"


# --- too much work (RESOURCE_EXHAUSTED) --------------------------------------------------------


class Overloaded(KmsError):
    """The provider's bounded queue is full."""

    reason = "overloaded"


# --- OpenBao ------------------------------------------------------------------------------------


class OpenBaoError(KmsError):
    """OpenBao could not serve the request."""

    reason = "openbao_error"


class OpenBaoUnavailable(OpenBaoError):
    """OpenBao is down, unreachable, answering 5xx, or the connection/TLS failed."""

    reason: str = Reason.OPENBAO_UNAVAILABLE  # str: OpenBaoBadResponse's is no Status reason


class OpenBaoSealed(OpenBaoUnavailable):
    """OpenBao answered that it is sealed."""

    reason = Reason.OPENBAO_SEALED


class OpenBaoCircuitOpen(OpenBaoUnavailable):
    """OpenBao failed repeatedly; calls fail fast until the breaker's next trial."""

    reason = Reason.OPENBAO_CIRCUIT_OPEN


class OpenBaoBadResponse(OpenBaoUnavailable):
    """OpenBao answered with something this provider cannot understand."""

    reason = "openbao_bad_response"


class OpenBaoTlsUntrusted(OpenBaoUnavailable):
    """OpenBao's TLS certificate failed verification: unknown CA, expired, wrong name."""

    reason = Reason.OPENBAO_TLS_UNTRUSTED


class OpenBaoRedirected(OpenBaoUnavailable):
    """An address answered with a redirect, which is never followed."""

    reason = Reason.OPENBAO_REDIRECT_REFUSED


class OpenBaoRejected(OpenBaoError):
    """OpenBao refused the request for a reason other than auth (a 4xx)."""

    reason = "openbao_rejected"


class OpenBaoUnauthenticated(OpenBaoError):
    """OpenBao refused the token (after one re-login)."""

    reason = Reason.OPENBAO_UNAUTHENTICATED


class OpenBaoPermissionDenied(OpenBaoError):
    """OpenBao's policy does not allow the call."""

    reason = Reason.OPENBAO_PERMISSION_DENIED


class AuthCredentialInvalid(OpenBaoUnauthenticated):
    """A credential file is missing, unsafe, empty, malformed or expired: no token to send."""

    reason = Reason.AUTH_CREDENTIAL_INVALID


class AuthLoginRefused(OpenBaoUnauthenticated):
    """OpenBao refused the login with the configured credential."""

    reason = Reason.AUTH_LOGIN_REFUSED


class DeadlineExceeded(KmsError):
    """The caller's deadline passed before OpenBao answered."""

    reason = "deadline_exceeded"


# --- not request errors --------------------------------------------------------------------------


class ConfigError(Exception):
    """The configuration file or a file it names is invalid (exit code 3)."""


class SocketError(Exception):
    """The listening socket cannot be set up safely."""


# The one table. Order matters: the first matching class wins, so subclasses come first.
# Two codes never come from it, because the provider's code never runs for those calls:
# RESOURCE_EXHAUSTED from grpcio itself for a message over the receive limit
# (api.service.MAX_REQUEST_BYTES) or beyond maxConcurrentRequests, and CANCELLED for a call
# whose request message did not arrive within api.receive.RECEIVE_TIMEOUT.
_GRPC_CODES: tuple[tuple[type[KmsError], grpc.StatusCode], ...] = (
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownKeyId, grpc.StatusCode.NOT_FOUND),
    (KeyIdNotChecked, grpc.StatusCode.UNAVAILABLE),
    (NotReady, grpc.StatusCode.FAILED_PRECONDITION),
    (KeyVersionWithdrawn, grpc.StatusCode.FAILED_PRECONDITION),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (OpenBaoUnauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (OpenBaoPermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (OpenBaoUnavailable, grpc.StatusCode.UNAVAILABLE),
    # A 4xx we did not expect means OpenBao's state is not what the provider needs (a key
    # missing, a version trimmed): the caller cannot fix it by changing the request.
    (OpenBaoRejected, grpc.StatusCode.FAILED_PRECONDITION),
    (OpenBaoError, grpc.StatusCode.UNAVAILABLE),
)

INTERNAL_MESSAGE = "internal error in the KMS provider"


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC code and client-safe message for *exc*; unknown exceptions are INTERNAL."""
    if isinstance(exc, KmsError):
        for cls, code in _GRPC_CODES:
            if isinstance(exc, cls):
                return code, str(exc) or cls.__doc__ or exc.reason
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
