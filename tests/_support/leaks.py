"""Assertions that an error is of the right class and leaks nothing secret in its message.

Error messages reach kube-apiserver and logs. Every test that expects an error goes through
:func:`expect_error`, so "the token never appears in an exception message" is checked on every
error raised in these tests, including the exceptions chained behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from bao_kms.errors import KmsError

TOKEN = "s.TOPSECRET-token-0f9e8d7c"
NEW_TOKEN = "s.TOPSECRET-rotated-1a2b3c4d"
MOUNT = "secret-mount-name"
KEY = "secret-key-name"
#: an OpenBao error string that names a path: it must never be copied into a message
SERVER_TEXT = 'no handler for route "secret-mount-name/keys/secret-key-name"'

SECRETS = (TOKEN, NEW_TOKEN, MOUNT, KEY, SERVER_TEXT, "TOPSECRET")


def _chain(error: BaseException) -> Iterable[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None


def assert_clean(error: BaseException, secrets: Iterable[str] = SECRETS) -> None:
    """No secret in the message or repr of *error* or of anything a traceback would show."""
    for item in _chain(error):
        shown = f"{item}\n{item!r}"
        for secret in secrets:
            assert secret not in shown, f"{type(item).__name__} message leaks {secret!r}"


def expect_error(
    cls: type[KmsError],
    call: Callable[..., Any],
    *args: Any,
    secrets: Iterable[str] = SECRETS,
    **kwargs: Any,
) -> KmsError:
    """Run *call*, require exactly *cls* (not a subclass), check the message is clean."""
    with pytest.raises(KmsError) as info:
        call(*args, **kwargs)
    error = info.value
    assert type(error) is cls, f"expected {cls.__name__}, got {type(error).__name__}: {error}"
    assert str(error), "errors must carry a message"
    assert_clean(error, secrets)
    return error
