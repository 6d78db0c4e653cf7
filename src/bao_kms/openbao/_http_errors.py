"""What an OpenBao HTTP status means for the provider: one function, one table.

OpenBao's error strings can name keys, mounts and paths, so they are only *inspected* here
(to tell "sealed" from other 503s, or authentication failures from other 400s) and never
copied into a message: messages carry the category and the HTTP status number.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

from ..errors import (
    KmsError,
    OpenBaoBadResponse,
    OpenBaoPermissionDenied,
    OpenBaoRejected,
    OpenBaoSealed,
    OpenBaoUnauthenticated,
    OpenBaoUnavailable,
)

_SEALED_RE = re.compile(r"\bsealed\b", re.IGNORECASE)


def error_texts(body: bytes) -> list[str]:
    """The strings of an OpenBao ``{"errors": [...]}`` body; empty for anything else."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return []
    return [item for item in errors if isinstance(item, str)]


def is_sealed(body: bytes) -> bool:
    """True when a 503 body says the server is sealed (OpenBao still says "Vault is sealed")."""
    return any(_SEALED_RE.search(text) for text in error_texts(body))


def classify(
    status: int, body: bytes, classify_400: Callable[[bytes], KmsError] | None = None
) -> KmsError:
    """The error for a non-2xx *status*; the caller decides which ones to retry elsewhere."""
    if 300 <= status < 400:
        # A standby or a proxy may redirect; following it would send the token to an address
        # nobody configured, so it is refused (and the caller may try the next address).
        return OpenBaoBadResponse(f"OpenBao answered with a redirect (HTTP {status}); refused")
    if status == 400 and classify_400 is not None:
        return classify_400(body)
    if status == 401:
        return OpenBaoUnauthenticated("OpenBao refused the token (HTTP 401)")
    if status == 403:
        return OpenBaoPermissionDenied("OpenBao denied permission (HTTP 403)")
    if status == 429:
        return OpenBaoUnavailable("OpenBao asked to retry later (HTTP 429)")
    if 400 <= status < 500:
        return OpenBaoRejected(f"OpenBao rejected the request (HTTP {status})")
    if status == 503 and is_sealed(body):
        return OpenBaoSealed("OpenBao is sealed (HTTP 503)")
    if 500 <= status < 600:
        return OpenBaoUnavailable(f"OpenBao failed to serve the request (HTTP {status})")
    return OpenBaoBadResponse(f"OpenBao answered with unexpected HTTP status {status}")
