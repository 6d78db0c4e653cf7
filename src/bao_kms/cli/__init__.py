"""The ``bao-kms-provider`` command line; :func:`main` is the console script."""

from __future__ import annotations

from .main import main

__all__ = ["main"]
