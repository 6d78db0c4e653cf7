"""How the provider authenticates to OpenBao: the :class:`Auth` protocol and its methods."""

from __future__ import annotations

from .base import Auth
from .token_file import TokenFileAuth

__all__ = ["Auth", "TokenFileAuth"]
