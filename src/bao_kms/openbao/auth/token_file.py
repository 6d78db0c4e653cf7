"""OpenBao token from a file: cached in memory, re-read when the file is replaced.

The token is rotated by whoever writes the file (an agent, a projected volume, an operator),
so the file is the source of truth; the provider never writes it. Stat results are trusted for
about a second, which keeps ``token()`` on the request path free of syscalls almost always
while still picking up a new token quickly.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from ...errors import OpenBaoUnauthenticated
from ...logs import LogThrottle

logger = logging.getLogger(__name__)

#: how long a stat of the token file is trusted before the next one
STAT_INTERVAL = 1.0
#: a token is a few hundred bytes at most; anything far larger is not a token file
MAX_TOKEN_FILE_BYTES = 64 * 1024

UNREADABLE_MESSAGE = "OpenBao token file cannot be read"
UNUSABLE_MESSAGE = "OpenBao token file does not hold a usable token"

# Visible ASCII only: the token goes into an HTTP header, where whitespace or control bytes
# would corrupt the request (or be refused by http.client with a message that quotes them).
_TOKEN_RE = re.compile(rb"[\x21-\x7e]+")

_Signature = tuple[int, int, int]


class TokenFileAuth:
    """Supplies the ``X-Vault-Token`` value from a file; thread-safe."""

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = os.fspath(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._signature: _Signature | None = None
        self._checked_at = -math.inf
        self._throttle = LogThrottle(clock=clock)  # a missing file fails every request

    def token(self) -> str:
        """The current token; re-read only when the file's identity, size or mtime changed."""
        token = self._token
        if token is not None and self._clock() - self._checked_at < STAT_INTERVAL:
            return token
        with self._lock:
            now = self._clock()
            # Another thread may have checked while this one waited for the lock.
            if self._token is not None and now - self._checked_at < STAT_INTERVAL:
                return self._token
            try:
                stat = os.stat(self.path)
            except OSError as error:
                self._fail(error.strerror or "stat failed")
            signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if self._token is None or signature != self._signature:
                self._load()
            self._checked_at = now
            assert self._token is not None
            return self._token

    def refresh(self) -> bool:
        """Re-read the file now; True when it holds a different token than the cached one."""
        with self._lock:
            previous = self._token
            self._load()
            self._checked_at = self._clock()
            return self._token != previous

    def _load(self) -> None:
        # Read and fstat the same open file, so the cached signature describes exactly the
        # bytes that were read even if the file is replaced meanwhile.
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as error:
            self._fail(error.strerror or "open failed")
        try:
            stat = os.fstat(fd)
            content = os.read(fd, MAX_TOKEN_FILE_BYTES + 1)
        except OSError as error:
            self._fail(error.strerror or "read failed")
        finally:
            os.close(fd)
        content = content.strip(b" \t\r\n")
        if not content:
            self._fail("file is empty")
        if len(content) > MAX_TOKEN_FILE_BYTES or not _TOKEN_RE.fullmatch(content):
            self._fail("file does not hold a single printable token", UNUSABLE_MESSAGE)
        self._token = content.decode("ascii")
        self._signature = (stat.st_ino, stat.st_size, stat.st_mtime_ns)

    def _fail(self, why: str, message: str = UNREADABLE_MESSAGE) -> NoReturn:
        # The next call must look at the file again instead of trusting the last good check.
        self._checked_at = -math.inf
        if self._throttle.admit(why) is not None:
            logger.warning("OpenBao token file unusable", extra={"path": self.path, "problem": why})
        raise OpenBaoUnauthenticated(message)
