"""OpenBao's token rules on a hand-driven clock, for unit tests of the auth lifecycle.

:class:`TokenServer` stands in for the transport (it has ``request`` and ``reset_connections``)
and answers logins, ``renew-self`` and ``lookup-self`` the way OpenBao does: a TTL per grant,
renewals capped at the token's max TTL, 403 for a dead token. Hours of token lifetimes run in
milliseconds. The behaviour itself is proven against the real ``bao`` in tests/integration/.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from bao_kms.errors import KmsError, OpenBaoPermissionDenied, OpenBaoUnavailable


@dataclass
class _Token:
    expires_at: float
    max_expires_at: float
    renewable: bool
    creation_ttl: float
    period: float = 0.0
    revoked: bool = False


class TokenServer:
    """Tokens with ``ttl`` seconds per grant, dead ``max_ttl`` seconds after the login."""

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        ttl: float = 30.0,
        max_ttl: float = 90.0,
        renewable: bool = True,
    ) -> None:
        self.clock = clock
        self.ttl = ttl
        self.max_ttl = max_ttl
        self.renewable = renewable
        self.tokens: dict[str, _Token] = {}
        self.calls: list[tuple[str, str | None]] = []  # (path, token sent)
        self.login_bodies: list[dict[str, Any]] = []
        self.resets = 0
        #: set to an HTTP status to refuse logins (400: wrong secret ID)
        self.refuse_logins: int | None = None
        #: True: every call fails as if no address answered
        self.down = False
        #: paths whose valid tokens still get 403 (a policy that does not allow them)
        self.denied_paths: set[str] = set()
        #: real seconds each login takes, to make concurrent callers overlap
        self.login_delay = 0.0
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    # --- what tests do to it -----------------------------------------------------------------

    def issue(self, *, ttl: float | None = None, period: float = 0.0) -> str:
        """A token as an operator would create one (for the token-file method)."""
        with self._lock:
            token = f"s.fake-{next(self._serial)}"
            now = self.clock()
            lifetime = ttl if ttl is not None else self.ttl
            self.tokens[token] = _Token(
                expires_at=now + lifetime,
                max_expires_at=now + (lifetime if period else self.max_ttl),
                renewable=self.renewable,
                creation_ttl=lifetime,
                period=period,
            )
            if period:
                self.tokens[token].max_expires_at = float("inf")
            return token

    def revoke(self, token: str) -> None:
        self.tokens[token].revoked = True

    def valid(self, token: str | None) -> bool:
        entry = self.tokens.get(token or "")
        return entry is not None and not entry.revoked and self.clock() < entry.expires_at

    def count(self, fragment: str) -> int:
        return sum(1 for path, _ in self.calls if fragment in path)

    # --- the transport's face ----------------------------------------------------------------

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
        self.calls.append((path, token))
        if self.down:
            raise OpenBaoUnavailable("cannot connect to OpenBao")
        if path.endswith("/login"):
            assert anonymous and token is None, "a login must not send a token"
            return self._login(orjson.loads(body or b"{}"), classify_400)
        if not self.valid(token) or path in self.denied_paths:
            raise OpenBaoPermissionDenied("OpenBao denied permission (HTTP 403)")
        entry = self.tokens[token or ""]
        if path == "auth/token/renew-self":
            return self._renew(entry, orjson.loads(body or b"{}"))
        if path == "auth/token/lookup-self":
            data = {
                # a token that never expires (root) has TTL 0
                "ttl": 0 if math.isinf(entry.expires_at) else entry.expires_at - self.clock(),
                "renewable": entry.renewable,
                "creation_ttl": entry.creation_ttl,
                "period": entry.period or None,
            }
            return orjson.dumps({"data": data})
        return b"{}"

    def reset_connections(self) -> None:
        self.resets += 1

    def _login(
        self, body: dict[str, Any], classify_400: Callable[[bytes], KmsError] | None
    ) -> bytes:
        if self.login_delay:
            time.sleep(self.login_delay)
        self.login_bodies.append(body)
        if self.refuse_logins is not None:
            if self.refuse_logins == 400 and classify_400 is not None:
                raise classify_400(b'{"errors":["invalid role or secret ID"]}')
            raise OpenBaoPermissionDenied("OpenBao denied permission (HTTP 403)")
        token = self.issue()
        return orjson.dumps(
            {"auth": {"client_token": token, "lease_duration": self.ttl, "renewable": True}}
        )

    def _renew(self, entry: _Token, body: dict[str, Any]) -> bytes:
        now = self.clock()
        increment = float(str(body.get("increment", "0s")).rstrip("s")) or entry.creation_ttl
        entry.expires_at = min(now + (entry.period or increment), entry.max_expires_at)
        lease = entry.expires_at - now  # OpenBao sends whole seconds; sub-second tests need less
        return orjson.dumps({"auth": {"lease_duration": lease, "renewable": entry.renewable}})
