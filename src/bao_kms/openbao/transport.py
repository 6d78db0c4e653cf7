"""HTTP to OpenBao: one shared urllib3 pool, deadlines, endpoint failover, token retry.

:class:`Transport` is the only place that touches the network. It turns every outcome into
either the response body of a 2xx or one of the provider's errors (:mod:`._http_errors` decides
which), so callers above never see urllib3 exceptions, OpenBao's error strings or URLs.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Collection, Sequence

import urllib3
from urllib3 import exceptions as urllib3_errors

from ..errors import ConfigError, DeadlineExceeded, KmsError, OpenBaoUnavailable
from . import _http_errors
from .auth import Auth
from .breaker import CircuitBreaker

logger = logging.getLogger(__name__)


def make_pool(
    *,
    ca_file: str | os.PathLike[str] | None,
    maxsize: int = 16,
    pool_class: type[urllib3.PoolManager] = urllib3.PoolManager,
) -> urllib3.PoolManager:
    """The one connection pool: no retries or redirects, TLS always verified, bounded.

    ``block=True`` makes a request wait for a free connection instead of opening one more
    than *maxsize* per address; :class:`Transport` bounds that wait by the request timeout.
    """
    cafile = os.fspath(ca_file) if ca_file is not None else None
    try:
        # Loading the bundle here makes a bad CA file a start-up error, not a failure of every
        # request; with no file the system trust store is used.
        context = ssl.create_default_context(cafile=cafile)
    except OSError as error:  # ssl.SSLError is an OSError too
        reason = error.strerror or type(error).__name__
        raise ConfigError(f"OpenBao CA file {cafile} cannot be loaded: {reason}") from None
    # pool_class: tests pass a request-counting subclass and get these exact settings
    return pool_class(
        maxsize=maxsize,
        block=True,
        retries=False,
        cert_reqs="CERT_REQUIRED",
        ssl_context=context,
    )


class Transport:
    """Sends requests below ``/v1/`` to one of several OpenBao addresses; thread-safe."""

    def __init__(
        self,
        addresses: Sequence[str],
        auth: Auth,
        *,
        pool: urllib3.PoolManager,
        namespace: str = "",
        timeout: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        breaker: CircuitBreaker | None = None,
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
        root_namespace: bool = False,
        exempt_from_breaker: bool = False,
    ) -> bytes:
        """:meth:`_request` behind the circuit breaker (every address failing counts once).

        *exempt_from_breaker* (the status probes) sends even while the breaker is open; the
        outcome still counts.
        """
        if not exempt_from_breaker:
            self.breaker.before_request()
        try:
            answer = self._request(
                method,
                path,
                body,
                deadline=deadline,
                classify_400=classify_400,
                accept=accept,
                anonymous=anonymous,
                root_namespace=root_namespace,
            )
        except OpenBaoUnavailable:
            self.breaker.record_failure()
            raise
        except DeadlineExceeded:
            self.breaker.record_inconclusive()
            raise
        except KmsError:
            self.breaker.record_success()  # OpenBao answered; it refused this request
            raise
        except BaseException:
            self.breaker.record_inconclusive()  # a bug: never leave a trial in flight
            raise
        self.breaker.record_success()
        return answer

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
        root_namespace: bool,
    ) -> bytes:
        """The body of a 2xx answer to ``<method> /v1/<path>``; a provider error otherwise.

        *deadline* is absolute on this transport's clock. Statuses in *accept* are returned
        like a 2xx (for ``sys/health``, whose non-2xx answers are states, not failures).
        *anonymous* sends no token (unauthenticated endpoints must not depend on the token
        file); *root_namespace* omits ``X-Vault-Namespace`` (OpenBao serves ``sys/health``
        only in the root namespace and answers 400 inside one).
        """
        if deadline is not None and deadline <= self._clock():
            raise DeadlineExceeded("deadline passed before the OpenBao request was sent")
        headers = {"X-Vault-Request": "true"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.namespace and not root_namespace:
            headers["X-Vault-Namespace"] = self.namespace
        may_refresh = not anonymous  # one token re-read per request, whatever the address
        count = len(self.addresses)
        first = self._preferred
        failure: OpenBaoUnavailable | None = None
        for step in range(count):
            index = (first + step) % count
            if step and deadline is not None and deadline <= self._clock():
                break  # the last failure says more than "deadline exceeded" would
            try:
                while True:
                    token = None if anonymous else self.auth.token()
                    status, data = self._send(index, method, path, body, headers, token, deadline)
                    if status in (401, 403) and may_refresh:
                        may_refresh = False
                        self.auth.refresh()
                        # Compare with the token this request used, not with refresh()'s
                        # answer: another thread may already have picked up the new token.
                        if self.auth.token() != token:
                            continue
                    break
                if 200 <= status < 300:
                    self._remember(index)
                    return data
                if status in accept:
                    return data
                error = _http_errors.classify(status, data, classify_400)
                if not isinstance(error, OpenBaoUnavailable):
                    self._remember(index)  # it answered; the request itself was refused
                raise error
            except OpenBaoUnavailable as error:
                failure = error
                logger.debug("OpenBao at %s: %s", self.addresses[index], error.reason)
        assert failure is not None
        raise failure

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
            headers = {**headers, "X-Vault-Token": token}
        try:
            response = self._pool.urlopen(
                method,
                f"{self.addresses[index]}/v1/{path}",
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=timeout),
                pool_timeout=timeout,  # block=True would otherwise wait forever for a connection
                retries=False,
                redirect=False,
            )
        except urllib3_errors.HTTPError as error:
            # `from None`: urllib3's messages quote the URL, which names the mount and key.
            raise _network_error(error, timeout, cut_short) from None
        return response.status, response.data


def _network_error(error: urllib3_errors.HTTPError, timeout: float, cut_short: bool) -> KmsError:
    cause: Exception = error
    if isinstance(error, urllib3_errors.MaxRetryError) and error.reason is not None:
        cause = error.reason
    # NewConnectionError subclasses ConnectTimeoutError, so it must be tested first.
    if isinstance(cause, urllib3_errors.NewConnectionError):
        return OpenBaoUnavailable("cannot connect to OpenBao")
    if isinstance(cause, urllib3_errors.TimeoutError | urllib3_errors.EmptyPoolError):
        if cut_short:
            return DeadlineExceeded("deadline passed while waiting for OpenBao")
        if isinstance(cause, urllib3_errors.EmptyPoolError):
            return OpenBaoUnavailable(f"no free connection to OpenBao within {timeout:g} s")
        return OpenBaoUnavailable(f"OpenBao did not answer within {timeout:g} s")
    if isinstance(cause, urllib3_errors.SSLError):
        return OpenBaoUnavailable("TLS connection to OpenBao failed")
    return OpenBaoUnavailable("connection to OpenBao failed")
