"""Argument types the commands share: each turns a bad value into a usage error (exit 2)."""

from __future__ import annotations

import argparse

from ..api.client import InvalidSocketEndpoint, socket_path
from ..config import parse_duration


def socket_argument(value: str) -> str:
    """``--socket`` as an absolute path (a path, relative or not, or ``unix:///abs``)."""
    try:
        return socket_path(value)
    except InvalidSocketEndpoint as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def seconds(value: str) -> float:
    """A duration such as ``500ms`` or ``3s``, in seconds."""
    try:
        return parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def positive(value: str) -> int:
    """A whole number of at least 1."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(value)
