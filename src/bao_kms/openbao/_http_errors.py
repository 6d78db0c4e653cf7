"""What an OpenBao answer (or the lack of one) means for the provider: the classifier.

Each function picks a row of :class:`~.answers.Answer` (the one table) and builds its error.
OpenBao's error strings can name keys, mounts and paths, so they are only *inspected* here (to
tell "sealed" from other 503s, or a version restriction from other 400s) and never copied into
a message: messages carry the category and the HTTP status number.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import (
    CiphertextAuthenticationFailed,
    DeadlineExceeded,
    InvalidCiphertext,
    KmsError,
    OpenBaoTlsUntrusted,
)
from . import _tls
from .answers import Answer
from .connections import CannotConnect, MalformedAnswer, NoFreeConnection

_SEALED_RE = re.compile(r"\bsealed\b", re.IGNORECASE)
#: Transit refusing a key version: below min_encryption_version / min_decryption_version
#: ("disallowed by policy (too old)") or above latest_version
_VERSION_RE = re.compile(
    r"requested version for encryption is (?:less|higher)|version is disallowed by policy"
)
#: Transit on a key that does not exist (with upsert disabled it answers 400, not 404)
_KEY_MISSING_RE = re.compile(r"\bkey not found\b")


def _document(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def error_texts(body: bytes) -> list[str]:
    """The strings of an OpenBao ``{"errors": [...]}`` body; empty for anything else."""
    errors = _document(body).get("errors")
    if not isinstance(errors, list):
        return []
    return [item for item in errors if isinstance(item, str)]


def is_sealed(body: bytes) -> bool:
    """True when a 503 body says the server is sealed (OpenBao still says "Vault is sealed")."""
    return any(_SEALED_RE.search(text) for text in error_texts(body))


def classify_400(body: bytes) -> KmsError:
    """A 400 by its cause: a key version restriction, a missing key, or anything else."""
    texts = error_texts(body)
    if any(_VERSION_RE.search(text) for text in texts):
        return Answer.KEY_VERSION_REJECTED.error_for(
            "OpenBao refused the key version: outside the key's allowed versions (HTTP 400)"
        )
    if any(_KEY_MISSING_RE.search(text) for text in texts):
        return Answer.NOT_FOUND.error_for("OpenBao has no such Transit key (HTTP 400)")
    return Answer.BAD_REQUEST.error_for("OpenBao rejected the request (HTTP 400)")


def classify(
    status: int, body: bytes, classify_400: Callable[[bytes], KmsError] | None = None
) -> KmsError:
    """The error for a non-2xx *status*; the caller decides which ones to retry elsewhere.

    A 403 is classified here as the policy's; the transport tells an expired or revoked
    token apart (``auth/token/lookup-self``) before it reports one.
    """
    error = _classify(status, body, classify_400)
    request_id = _document(body).get("request_id")
    if isinstance(request_id, str) and len(request_id) <= 64:
        error.openbao_request_id = request_id
    return error


def _classify(status: int, body: bytes, on_400: Callable[[bytes], KmsError] | None) -> KmsError:
    if 300 <= status < 400:
        # A standby or a proxy may redirect; following it would send the token to an address
        # nobody configured, so it is refused (and the caller may try the next address).
        return Answer.REDIRECT.error_for(
            f"OpenBao answered with a redirect (HTTP {status}); refused"
        )
    if status == 400:
        error = (on_400 or classify_400)(body)
        if not error.error_class:  # a caller's own class: still one row of the table
            error.error_class = _ROW_OF_400.get(type(error), Answer.BAD_REQUEST).value
        return error
    if status == 401:
        return Answer.UNAUTHENTICATED.error_for("OpenBao refused the token (HTTP 401)")
    if status == 403:
        return Answer.PERMISSION_DENIED.error_for("OpenBao denied permission (HTTP 403)")
    if status == 404:
        return Answer.NOT_FOUND.error_for("OpenBao has no such path: mount or key (HTTP 404)")
    if status == 412:
        return Answer.PRECONDITION_FAILED.error_for(
            "OpenBao is not yet consistent with a recent write (HTTP 412)"
        )
    if status == 429:
        return Answer.RATE_LIMITED.error_for("OpenBao asked to retry later (HTTP 429)")
    if 400 <= status < 500:
        return Answer.BAD_REQUEST.error_for(f"OpenBao rejected the request (HTTP {status})")
    if status == 503 and is_sealed(body):
        return Answer.SEALED.error_for("OpenBao is sealed (HTTP 503)")
    if 500 <= status < 600:
        return Answer.SERVER_ERROR.error_for(f"OpenBao failed to serve the request (HTTP {status})")
    return Answer.BAD_RESPONSE.error_for(f"OpenBao answered with unexpected HTTP status {status}")


_ROW_OF_400: dict[type[KmsError], Answer] = {
    CiphertextAuthenticationFailed: Answer.CIPHERTEXT_UNAUTHENTIC,
    InvalidCiphertext: Answer.CIPHERTEXT_MALFORMED,
}


def token_rejected() -> KmsError:
    """A 403 whose token ``auth/token/lookup-self`` refuses too: expired or revoked."""
    return Answer.TOKEN_REJECTED.error_for(
        "OpenBao refused the token: expired, revoked or unknown (HTTP 403)"
    )


def network_error(error: BaseException, timeout: float, cut_short: bool) -> KmsError:
    """The error for a request that got no HTTP answer (what :meth:`.connections.ConnectionPool.
    request` raises: a socket's OSError, an unreadable answer's HTTPException); *cut_short*:
    the caller's deadline, not ``openbao.timeout``, bounded the wait."""
    if isinstance(error, CannotConnect):
        return Answer.CONNECTION_FAILED.error_for("cannot connect to OpenBao")
    if isinstance(error, MalformedAnswer):  # its words are the pool's own, never the peer's
        return Answer.CONNECTION_FAILED.error_for(f"OpenBao's answer is not usable HTTP: {error}")
    if isinstance(error, TimeoutError):  # NoFreeConnection is one too
        if cut_short:
            return DeadlineExceeded("deadline passed while waiting for OpenBao")
        if isinstance(error, NoFreeConnection):
            return Answer.TIMEOUT.error_for(f"no free connection to OpenBao within {timeout:g} s")
        return Answer.TIMEOUT.error_for(f"OpenBao did not answer within {timeout:g} s")
    if isinstance(error, ssl.SSLError):
        failure: KmsError = _tls.tls_failure(error)  # names what the operator can fix
        untrusted = isinstance(failure, OpenBaoTlsUntrusted)
        failure.error_class = (Answer.TLS_UNTRUSTED if untrusted else Answer.TLS_FAILED).value
        return failure
    if isinstance(error, ValueError):  # after ssl: SSLCertVerificationError is one too
        # http.client refusing what would have been sent (a header value it cannot carry);
        # its message quotes the value, which could be the token: never shown
        return Answer.CONNECTION_FAILED.error_for("the OpenBao request could not be sent")
    # reset, refused mid-request, or bytes that are not an HTTP answer (http.client's
    # BadStatusLine, LineTooLong, IncompleteRead, ...): no answer either way
    return Answer.CONNECTION_FAILED.error_for("connection to OpenBao failed")
