"""The one thing :class:`~bao_kms.openbao.transport.Transport` needs from an auth method.

Every method (a token file, AppRole, JWT, a TLS certificate) ends in the same place: a token
to put in ``X-Vault-Token``, and a way to be told that OpenBao refused it. The transport
depends on this protocol only, so adding a method never touches the request path.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Auth(Protocol):
    """Supplies the ``X-Vault-Token`` value; implementations are thread-safe."""

    def token(self) -> str:
        """The token to send now.

        Raises :class:`~bao_kms.errors.OpenBaoUnauthenticated` when none can be had (a
        missing or unusable credential), with a message that never quotes the credential.
        """
        ...

    def refresh(self) -> bool:
        """OpenBao answered 401/403 with the current token: get a fresh one if possible.

        Returns True when the next :meth:`token` differs from the refused one. Called at most
        once per request, so a refused token costs one re-read or re-login, never a loop.
        """
        ...
