"""What the transport tells an observer (``/metrics``) about each OpenBao request.

Labels must be bounded and secret-free, so the request path (which names the mount and the
key) is reduced to an *operation* word here, and the outcome to ``ok`` or an ``error_class``
(:class:`~.answers.Answer`), never an HTTP status from an open-ended set.
"""

from __future__ import annotations

from collections.abc import Callable

#: (operation, outcome, seconds); called once per request, on the requesting thread
RequestObserver = Callable[[str, str, float], None]

#: every operation label, in the order docs/metrics.md lists them
OPERATIONS = (
    "encrypt",
    "decrypt",
    "read_key",
    "read_keys_config",
    "health",
    "token_lookup_self",
    "token_renew_self",
    "login",
    "other",
)


def operation_of(path: str) -> str:
    """The operation label for a request to ``/v1/<path>``."""
    path = path.split("?", 1)[0]
    if path.startswith("sys/health"):
        return "health"
    if path == "auth/token/lookup-self":
        return "token_lookup_self"
    if path == "auth/token/renew-self":
        return "token_renew_self"
    if path.startswith("auth/") and path.rsplit("/", 1)[-1] == "login":
        return "login"
    parts = path.split("/")
    if len(parts) >= 3 and parts[-2] in ("encrypt", "decrypt"):
        return parts[-2]
    if len(parts) >= 3 and parts[-2] == "keys":
        return "read_key"
    if len(parts) >= 3 and parts[-2:] == ["config", "keys"]:
        return "read_keys_config"
    return "other"
