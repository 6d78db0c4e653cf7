"""HTTP to OpenBao: one shared connection pool, deadlines, endpoint failover, token retry.

:class:`Transport` is the only place that sends requests (over :mod:`.connections`). It turns
every outcome into either the response body of a 2xx or one of the provider's errors
(:mod:`._http_errors` decides which), so callers above never see socket or HTTP exceptions,
OpenBao's error strings or URLs.

Every request is bounded in time and size, whatever answers on OpenBao's address: ``timeout``
(capped by the caller's deadline) is a total deadline, enforced by shutting the socket
(:mod:`._deadline`), not a per-read timeout a trickling server could stretch forever; an
answer is read raw, refused if compressed, and refused past :data:`MAX_RESPONSE_BYTES`.
:meth:`Transport.close` aborts every request in flight when the provider stops.
"""

from __future__ import annotations

import http.client
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence

from ..config import ClientCertificate
from ..errors import DeadlineExceeded, KmsError, OpenBaoUnavailable
from . import _http_errors, _tls, answers
from ._deadline import DeadlineWatchdog, watching
from .auth import Auth
from .auth.credentials import VISIBLE_ASCII
from .breaker import CircuitBreaker
from .connections import AnswerTooLarge, ConnectionPool
from .observe import RequestObserver, operation_of
from .token_check import TokenCheck

logger = logging.getLogger(__name__)

#: the largest OpenBao answer read: key metadata with a thousand versions is ~30 KiB, a Transit
#: batch of a hundred items ~150 KiB; anything near this is not an answer we can use
MAX_RESPONSE_BYTES = 1024 * 1024
_READ_CHUNK = 64 * 1024
#: an answer's status line and headers: OpenBao's take under 1 KiB
_MAX_HEAD_BYTES = 64 * 1024


def make_pool(
    *,
    ca_file: str | os.PathLike[str] | None,
    client_cert: ClientCertificate | tuple[str, str] | None = None,
    server_hostname: str | None = None,
    maxsize: int = 16,
    pool_class: type[ConnectionPool] = ConnectionPool,
) -> ConnectionPool:
    """The one connection pool: TLS always verified, at most *maxsize* connections an address.

    *client_cert* (certificate file, key file) is presented on every connection and re-read
    when the files change; *server_hostname* is what OpenBao's certificate is checked against
    and the SNI sent (``openbao.tlsServerName``). A CA file, certificate or key that cannot
    work is a :class:`~bao_kms.errors.ConfigError` here, at start, not a failure of every
    request. A request waits for a free connection rather than open one more than *maxsize*
    per address; :class:`Transport` bounds that wait by the request timeout. Nothing is
    retried and no redirect is followed (a 3xx is an answer the transport refuses).
    """
    cafile = os.fspath(ca_file) if ca_file is not None else None
    context = _tls.make_context(cafile, client_cert)  # no CA file: the system trust store
    # pool_class: tests pass a request-counting subclass and get these exact settings
    return pool_class(ssl_context=context, server_hostname=server_hostname or None, maxsize=maxsize)


class Transport:
    """Sends requests below ``/v1/`` to one of several OpenBao addresses; thread-safe."""

    def __init__(
        self,
        addresses: Sequence[str],
        auth: Auth,
        *,
        pool: ConnectionPool,
        namespace: str = "",
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        breaker: CircuitBreaker | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("at least one OpenBao address is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.addresses = tuple(address.rstrip("/") for address in addresses)
        self.auth = auth
        self.namespace = namespace
        self.timeout = timeout
        self._pool = pool
        self._clock = clock
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self.max_response_bytes = MAX_RESPONSE_BYTES
        self._deadlines = DeadlineWatchdog()
        #: told (operation, outcome, seconds) of every request, for /metrics
        self.observer = observer
        # tells an expired or revoked token from a policy 403 (single-flight, rate-limited)
        self.token_check = TokenCheck(self._token_valid, clock=clock)
        # Index of the last address that answered. A plain int attribute: reads and writes are
        # atomic, and a lost update between racing threads only costs one extra failover.
        self._preferred = 0

    @property
    def preferred_address(self) -> str:
        """The address the next request starts with."""
        return self.addresses[self._preferred]

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        deadline: float | None = None,
        classify_400: Callable[[bytes], KmsError] | None = None,
        accept: Collection[int] = (),
        anonymous: bool = False,
        token: str | None = None,
        root_namespace: bool = False,
        exempt_from_breaker: bool = False,
    ) -> bytes:
        """:meth:`_request` behind the circuit breaker (every address failing counts once).

        *exempt_from_breaker* (the status probes) sends even while the breaker is open; the
        outcome still counts. What each outcome does to the breaker is the answer table's call
        (:mod:`.answers`): only a failure to get a usable answer counts towards opening it.
        """
        started = self._clock()
        try:
            if not exempt_from_breaker:
                self.breaker.before_request()
            answer = self._request(
                method,
                path,
                body,
                deadline=deadline,
                classify_400=classify_400,
                accept=accept,
                anonymous=anonymous,
                token=token,
                root_namespace=root_namespace,
            )
        except BaseException as error:
            effect = answers.breaker_effect(error)  # a bug: inconclusive, never a stuck trial
            if effect is answers.Breaker.COUNTS:
                self.breaker.record_failure()
            elif effect is answers.Breaker.RESETS:
                self.breaker.record_success()  # OpenBao answered; it refused this request
            elif effect is answers.Breaker.INCONCLUSIVE:
                self.breaker.record_inconclusive()
            self._observe(path, answers.error_class(error), started)
            raise
        self.breaker.record_success()
        self._observe(path, "ok", started)
        return answer

    def _observe(self, path: str, outcome: str, started: float) -> None:
        if self.observer is not None:
            self.observer(operation_of(path), outcome, self._clock() - started)

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        deadline: float | None,
        classify_400: Callable[[bytes], KmsError] | None,
        accept: Collection[int],
        anonymous: bool,
        token: str | None,
        root_namespace: bool,
    ) -> bytes:
        """The body of a 2xx answer to ``<method> /v1/<path>``; a provider error otherwise.

        *deadline* is absolute on this transport's clock. Statuses in *accept* are returned
        like a 2xx (for ``sys/health``, whose non-2xx answers are states, not failures).
        *anonymous* sends no token (unauthenticated endpoints must not depend on the token
        file); *token* sends that token and never refreshes it (the auth's own renew-self and
        lookup-self calls); *root_namespace* omits ``X-Vault-Namespace`` (OpenBao serves
        ``sys/health`` only in the root namespace and answers 400 inside one).
        """
        if deadline is not None and deadline <= self._clock():
            raise DeadlineExceeded("deadline passed before the OpenBao request was sent")
        headers = {"X-Vault-Request": "true"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.namespace and not root_namespace:
            headers["X-Vault-Namespace"] = self.namespace
        # one token refresh per request, whatever the address
        may_refresh = not anonymous and token is None
        count = len(self.addresses)
        first = self._preferred
        failure: OpenBaoUnavailable | None = None
        for step in range(count):
            index = (first + step) % count
            if step and deadline is not None and deadline <= self._clock():
                break  # the last failure says more than "deadline exceeded" would
            try:
                while True:
                    sent = token if token is not None or anonymous else self.auth.token()
                    status, data = self._send(index, method, path, body, headers, sent, deadline)
                    if status in (401, 403) and may_refresh:
                        may_refresh = False
                        self.auth.refresh(sent)
                        # Compare with the token this request used, not with refresh()'s
                        # answer: another thread may already have picked up the new token.
                        if self.auth.token() != sent:
                            continue
                    break
                if 200 <= status < 300:
                    self._remember(index)
                    return data
                if status in accept:
                    return data
                error = _http_errors.classify(status, data, classify_400)
                if status == 403 and sent is not None:
                    error = self._forbidden(path, sent, error, deadline)
                if not isinstance(error, OpenBaoUnavailable):
                    self._remember(index)  # it answered; the request itself was refused
                raise error
            except OpenBaoUnavailable as error:
                if not answers.tries_next_address(error):
                    raise  # e.g. 429: another node shares the quota
                failure = error
                logger.debug("OpenBao at %s: %s", self.addresses[index], error.reason)
        assert failure is not None
        raise failure

    def _forbidden(
        self, path: str, token: str, policy_error: KmsError, deadline: float | None
    ) -> KmsError:
        """A 403: the policy's, unless ``lookup-self`` refuses the same token (then the token
        expired or was revoked). Unknown (rate-limited, lookup failed) stays the policy's, the
        literal answer OpenBao gave, with no guess about the token."""
        if path == "auth/token/lookup-self":
            return _http_errors.token_rejected()
        if self.token_check.token_valid(token, deadline) is False:
            return _http_errors.token_rejected()
        return policy_error

    def _token_valid(self, token: str, deadline: float | None) -> bool | None:
        """``GET auth/token/lookup-self`` with *token* at the preferred address; None when no
        answer says either way. Sent past the breaker and the auth: it judges this token."""
        headers = {"X-Vault-Request": "true"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        path = "auth/token/lookup-self"
        started = self._clock()
        try:
            status, _ = self._send(self._preferred, "GET", path, None, headers, token, deadline)
        except KmsError as error:
            self._observe(path, answers.error_class(error), started)
            return None
        outcome = "ok" if 200 <= status < 300 else _http_errors.classify(status, b"").error_class
        self._observe(path, outcome, started)
        if 200 <= status < 300:
            return True
        return False if status in (401, 403) else None

    def close(self) -> None:
        """Abort every OpenBao request in flight and refuse new ones: the provider is stopping
        and must not wait on OpenBao (in-flight calls had their drain grace already)."""
        self._deadlines.close()

    def reset_connections(self) -> None:
        """Close idle connections: the next request shakes hands again (cert auth uses this
        before each login, so the login presents the certificate the files hold now)."""
        _tls.present_current_certificate(self._pool)

    def _remember(self, index: int) -> None:
        if index != self._preferred:
            # Logged on change only: once per failover, not once per request during an outage.
            logger.warning("OpenBao requests now go to %s", self.addresses[index])
            self._preferred = index

    def _send(
        self,
        index: int,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        token: str | None,
        deadline: float | None,
    ) -> tuple[int, bytes]:
        timeout = self.timeout
        cut_short = False
        if deadline is not None:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeadlineExceeded("deadline passed before OpenBao answered")
            if remaining < timeout:
                timeout, cut_short = remaining, True
        if token is not None:
            if not VISIBLE_ASCII.fullmatch(token):
                # never sent, and never quoted: http.client's refusal would quote it
                raise answers.Answer.NO_TOKEN.error_for(
                    "the OpenBao token holds characters an HTTP header cannot carry"
                )
            headers = {**headers, "X-Vault-Token": token}
        failure: KmsError | None = None
        ticket = self._deadlines.watch(timeout)
        try:
            with watching(self._deadlines, ticket):
                status, data = self._exchange(index, method, path, body, headers, timeout)
        except (http.client.HTTPException, OSError, ValueError) as error:
            # `from None` below: the cause stays out of the error the caller sees
            failure = _network_error(error, timeout, cut_short)
        finally:
            cut = self._deadlines.finish(ticket)
        if cut:
            # even a body that looks complete is void: the watchdog may have cut it short
            raise _expired(ticket.aborted, timeout, cut_short)
        if failure is not None:
            raise failure from None
        return status, data

    def _exchange(
        self,
        index: int,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        timeout: float,
    ) -> tuple[int, bytes]:
        limit = self.max_response_bytes
        try:
            return self._pool.request(
                self.addresses[index],
                method,
                f"/v1/{path}",
                body=body,
                headers=headers,
                timeout=timeout,
                max_answer=limit + _MAX_HEAD_BYTES,
                read=lambda response: _read_body(response, limit),
            )
        except AnswerTooLarge:
            raise _too_large(limit) from None


def _read_body(response: http.client.HTTPResponse, limit: int) -> bytes:
    """The answer's body as sent, refused when compressed or larger than *limit* bytes.

    Nothing is decompressed: OpenBao answers identity-encoded unless asked otherwise, and a
    few KiB of gzip can expand to gigabytes.
    """
    encoding = (response.getheader("Content-Encoding") or "").strip().lower()
    if encoding not in ("", "identity"):
        raise answers.Answer.BAD_RESPONSE.error_for(
            "OpenBao answered with a compressed body; refused"
        )
    # The pool let through one framing only: a single plain Content-Length, or chunks, or
    # no body (204, 304).
    declared = response.getheader("Content-Length")
    if declared is not None and response.getheader("Transfer-Encoding") is None:
        digits = declared.strip().lstrip("0") or "0"
        # no int() of a number far too long to be within the limit (it refuses 4300 digits)
        if len(digits) > len(str(limit)) or int(digits) > limit:
            raise _too_large(limit)
        # exactly the declared length; fewer bytes before the connection closes is
        # http.client's IncompleteRead, never a short body taken for the whole
        return response.read()
    chunks = []
    size = 0
    while chunk := response.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> KmsError:
    return answers.Answer.BAD_RESPONSE.error_for(
        f"OpenBao's answer is larger than {limit} bytes; refused"
    )


def _expired(aborted: bool, timeout: float, cut_short: bool) -> KmsError:
    """The error for a request the deadline watchdog cut short (the same words as a timeout)."""
    if aborted:
        return answers.Answer.CONNECTION_FAILED.error_for(
            "the provider is stopping; the OpenBao request was abandoned"
        )
    if cut_short:
        return DeadlineExceeded("deadline passed while waiting for OpenBao")
    return answers.Answer.TIMEOUT.error_for(f"OpenBao did not answer within {timeout:g} s")


def _network_error(error: BaseException, timeout: float, cut_short: bool) -> KmsError:
    # the classifier picks the answer table's row (connection, timeout, TLS)
    return _http_errors.network_error(error, timeout, cut_short)
