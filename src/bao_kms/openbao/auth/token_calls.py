"""OpenBao's token endpoints as the auth methods use them: login, ``renew-self``, ``lookup-self``.

Each call goes through the transport, so it fails over across addresses and its failures are
the provider's own errors. A :class:`Lease` is what OpenBao granted, timed on the injected
clock from *before* the request was sent: the token surely lives at least that long.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from ...errors import (
    AuthLoginRefused,
    KmsError,
    OpenBaoBadResponse,
    OpenBaoPermissionDenied,
    OpenBaoRejected,
    OpenBaoUnauthenticated,
)
from .base import OpenBaoRequests
from .credentials import VISIBLE_ASCII

#: renew when this fraction of the TTL has passed (Vault's own agents use about 2/3)
RENEW_FRACTION = 2 / 3
#: the TTL recorded for a renewal that granted "0 s" to a token that had a TTL
DYING_TTL = 0.001


@dataclass(frozen=True, slots=True)
class Lease:
    """A token and how long OpenBao said it lives; replaced whole, never mutated."""

    token: str
    #: clock time just before the request that granted this TTL was sent
    granted_at: float
    #: seconds from granted_at; 0 means it never expires (root tokens)
    ttl: float
    renewable: bool
    #: what a renewal normally grants (the role's token_ttl, or a periodic token's period);
    #: a renewal granting less has reached the token's max TTL
    natural_ttl: float
    #: True when this lease is a renewal's grant cut short by the max TTL: renewing again
    #: cannot help, only a new login can. Never set from a login or a lookup: a token looked
    #: up a while after it was issued naturally has less left than its natural TTL.
    capped: bool = False

    @property
    def expires_at(self) -> float:
        return self.granted_at + self.ttl if self.ttl > 0 else math.inf

    @property
    def renew_at(self) -> float:
        return self.granted_at + self.ttl * RENEW_FRACTION if self.ttl > 0 else math.inf


class TokenCalls:
    """Login, renew and lookup through *openbao*, timing leases on *clock*."""

    def __init__(self, openbao: OpenBaoRequests, clock: Callable[[], float]) -> None:
        self.openbao = openbao
        self._clock = clock

    def login(self, path: str, body: dict[str, Any], method_label: str) -> Lease:
        """POST the login; OpenBao refusing the credential raises AuthLoginRefused.

        OpenBao's error text is never copied (it may name roles or claims); the message names
        the method and the HTTP status.
        """
        granted_at = self._clock()
        try:
            answer = self.openbao.request(
                "POST",
                path,
                orjson.dumps(body),
                classify_400=lambda _: _refused(method_label, 400),
                anonymous=True,
            )
        except (OpenBaoUnauthenticated, OpenBaoPermissionDenied, OpenBaoRejected) as error:
            if isinstance(error, AuthLoginRefused):
                raise
            raise _refused(method_label, _status_of(error)) from None
        auth = _auth_block(answer, "login")
        token = auth.get("client_token")
        if not isinstance(token, str) or not token:
            raise OpenBaoBadResponse("OpenBao answered the login without a token")
        if not VISIBLE_ASCII.fullmatch(token):
            # it goes into the X-Vault-Token header of every request: never quoted here
            raise OpenBaoBadResponse("OpenBao answered the login with a token of invalid form")
        ttl = _seconds(auth.get("lease_duration"), "login")
        return Lease(
            token=token,
            granted_at=granted_at,
            ttl=ttl,
            renewable=auth.get("renewable") is True,
            natural_ttl=ttl,
        )

    def renew(self, lease: Lease) -> Lease:
        """``renew-self`` asking for the natural TTL again; a dead token raises
        OpenBaoUnauthenticated (or OpenBaoPermissionDenied, as OpenBao answers 403)."""
        granted_at = self._clock()
        body = {"increment": f"{math.ceil(lease.natural_ttl)}s"} if lease.natural_ttl else {}
        answer = self.openbao.request(
            "POST", "auth/token/renew-self", orjson.dumps(body), token=lease.token
        )
        auth = _auth_block(answer, "renewal")
        ttl = _seconds(auth.get("lease_duration"), "renewal")
        if ttl == 0 and lease.ttl > 0:
            # whole seconds: under one second left at the max TTL reads as 0, which for a
            # token with a TTL means "dying now", never "lives forever"
            ttl = DYING_TTL
        return replace(
            lease,
            granted_at=granted_at,
            ttl=ttl,
            renewable=auth.get("renewable") is True,
            capped=0 < ttl < lease.natural_ttl,
        )

    def lookup(self, token: str) -> Lease | None:
        """What OpenBao knows of *token*; None when it refuses it (expired or revoked)."""
        granted_at = self._clock()
        try:
            answer = self.openbao.request("GET", "auth/token/lookup-self", token=token)
        except (OpenBaoUnauthenticated, OpenBaoPermissionDenied):
            return None
        data = _document(answer, "lookup").get("data")
        if not isinstance(data, dict):
            raise OpenBaoBadResponse("OpenBao answered the token lookup without data")
        ttl = _seconds(data.get("ttl"), "lookup")
        # a periodic token renews to its period; others to the TTL they were created with
        natural = data.get("period") or data.get("creation_ttl") or ttl
        return Lease(
            token=token,
            granted_at=granted_at,
            ttl=ttl,
            renewable=data.get("renewable") is True,
            natural_ttl=_seconds(natural, "lookup"),
        )


def is_refusal(error: KmsError) -> bool:
    """OpenBao refused the token itself (401/403), as opposed to being unreachable."""
    return isinstance(error, OpenBaoUnauthenticated | OpenBaoPermissionDenied)


def _refused(method_label: str, status: int | None) -> AuthLoginRefused:
    shown = f" (HTTP {status})" if status else ""
    return AuthLoginRefused(f"OpenBao refused the {method_label} login{shown}")


def _status_of(error: KmsError) -> int | None:
    if isinstance(error, OpenBaoUnauthenticated):
        return 401
    if isinstance(error, OpenBaoPermissionDenied):
        return 403
    return None


def _document(answer: bytes, what: str) -> dict[str, Any]:
    try:
        document = orjson.loads(answer)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise OpenBaoBadResponse(f"OpenBao answered the token {what} with something not JSON")
    return document


def _auth_block(answer: bytes, what: str) -> dict[str, Any]:
    auth = _document(answer, what).get("auth")
    if not isinstance(auth, dict):
        raise OpenBaoBadResponse(f"OpenBao answered the token {what} without an auth block")
    return auth


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise OpenBaoBadResponse(f"OpenBao answered the token {what} without a valid TTL")
    return float(value)
