"""What :class:`~bao_kms.openbao.transport.Transport` needs from an auth method, and back.

Every method (a token file, AppRole, JWT, a TLS certificate) ends in the same place: a token
to put in ``X-Vault-Token``, and a way to be told that OpenBao refused it. The transport
depends on :class:`Auth` only, so adding a method never touches the request path. The auth
in turn logs in and renews through the transport (:class:`OpenBaoRequests`), so a login
fails over across the configured addresses exactly like a Transit call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ...errors import KmsError
from .stats import AuthStats


class OpenBaoRequests(Protocol):
    """The part of :class:`~bao_kms.openbao.transport.Transport` an auth method uses."""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        classify_400: Callable[[bytes], KmsError] | None = None,
        anonymous: bool = False,
        token: str | None = None,
    ) -> bytes:
        """``anonymous`` sends no token (logins); ``token`` sends that one and never asks the
        auth to refresh it (``renew-self`` and ``lookup-self`` of a given token)."""
        ...

    def reset_connections(self) -> None:
        """Drop idle connections, so the next request shakes hands again (a rotated client
        certificate is presented on a new connection only)."""
        ...


@runtime_checkable
class Auth(Protocol):
    """Supplies the ``X-Vault-Token`` value and keeps it alive; implementations are thread-safe.

    :meth:`token` and :meth:`refresh` work without :meth:`start` for a token file (it is read
    on demand); methods that log in need :meth:`start` to have a way to OpenBao.
    """

    #: counters and the current token's expiry, read by /metrics at scrape time
    stats: AuthStats

    def token(self) -> str:
        """The token to send now.

        Raises an :class:`~bao_kms.errors.OpenBaoUnauthenticated` (a subclass saying why) when
        none can be had, with a message that never quotes a credential.
        """
        ...

    def refresh(self, refused: str | None = None) -> bool:
        """OpenBao answered 401/403 to *refused*: get a fresh token if that one is dead.

        Returns True when the next :meth:`token` differs from the refused one. Called at most
        once per request, so a refused token costs one re-read or re-login, never a loop; a
        403 from a policy that denies one path must not cost a login per request either.
        """
        ...

    def start(self, openbao: OpenBaoRequests) -> None:
        """Check the credential files (:class:`~bao_kms.errors.ConfigError` if one is bad)
        and start keeping a token alive in the background: login, renewal, re-login."""
        ...

    def stop(self) -> None:
        """Stop the background work; the token is forgotten with the process."""
        ...
