"""JWT auth: a signed token from a file (a workload identity token, a projected token), read
again before every login.

OpenBao verifies the signature; the provider only looks at ``exp`` and ``nbf`` first, so an
expired or not-yet-valid JWT is reported as exactly that, naming the claim, instead of as an
opaque login refusal. The checks allow for clock skew between whoever wrote the JWT, OpenBao
and this host, and refuse a JWT so close to its end that it could expire on the way.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import time
from collections.abc import Callable
from typing import Any

import orjson

from .base import OpenBaoRequests
from .credentials import CredentialFile, CredentialProblem, read_credential, single_value

#: clocks of the issuer, OpenBao and this host may differ this much
CLOCK_LEEWAY = 30.0
#: a JWT must still have this long to live (after the leeway) to be worth sending
MIN_REMAINING_LIFETIME = 5.0


class JwtLogin:
    """``POST auth/<mountPath>/login`` with ``role`` and ``jwt``."""

    name = "jwt"
    label = "JWT"

    def __init__(
        self,
        mount_path: str,
        role: str,
        token_file: str | os.PathLike[str],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = f"auth/{mount_path}/login"
        self.role = role
        self._file = CredentialFile("auth.jwt.tokenFile", "JWT file", os.fspath(token_file))
        self._wall_clock = wall_clock  # exp and nbf are Unix times, not monotonic readings

    def check(self) -> None:
        self._read()

    def login_request(self, openbao: OpenBaoRequests) -> tuple[str, dict[str, Any]]:
        return self.path, {"role": self.role, "jwt": self._read()}

    def _read(self) -> str:
        content, _ = read_credential(self._file)
        jwt = single_value(self._file, content)
        check_lifetime(self._file, claims(self._file, jwt), self._wall_clock())
        return jwt


def claims(file: CredentialFile, jwt: str) -> dict[str, Any]:
    """The payload of a compact JWS; a problem never quotes any part of it."""
    parts = jwt.split(".")
    if len(parts) != 3 or not all(parts):
        raise CredentialProblem(file, "does not hold a JWT (three dot-separated parts)")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        document = orjson.loads(payload)
    except (binascii.Error, ValueError):  # orjson.JSONDecodeError is a ValueError
        raise CredentialProblem(file, "holds a JWT whose payload is not base64url JSON") from None
    if not isinstance(document, dict):
        raise CredentialProblem(file, "holds a JWT whose payload is not a JSON object")
    return document


def check_lifetime(file: CredentialFile, payload: dict[str, Any], now: float) -> None:
    """Refuse a JWT that is not valid yet (``nbf``), expired or about to expire (``exp``)."""
    nbf = _numeric_claim(file, payload, "nbf")
    if nbf is not None and nbf - CLOCK_LEEWAY > now:
        raise CredentialProblem(
            file, f"holds a JWT that is not valid for another {nbf - now:.0f} s (claim nbf)"
        )
    exp = _numeric_claim(file, payload, "exp")
    if exp is None:
        return  # OpenBao decides; a role can bound lifetimes itself
    left = exp + CLOCK_LEEWAY - now
    if left <= 0:
        raise CredentialProblem(file, f"holds a JWT that expired {now - exp:.0f} s ago (claim exp)")
    if left < MIN_REMAINING_LIFETIME:
        raise CredentialProblem(
            file,
            f"holds a JWT that expires within {MIN_REMAINING_LIFETIME:.0f} s (claim exp): "
            "whoever writes the file must refresh it sooner",
        )


def _numeric_claim(file: CredentialFile, payload: dict[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CredentialProblem(file, f"holds a JWT whose claim {name} is not a number")
    return float(value)
