"""TokenFileAuth: caching, change detection by (inode, size, mtime), failures.

Renewal of the token it reads is in ``test_auth_token_file_renewal.py``."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from _support import FakeClock
from _support.leaks import NEW_TOKEN, TOKEN, expect_error
from _support.log_records import records_of
from bao_kms.errors import AuthCredentialInvalid
from bao_kms.openbao import TokenFileAuth
from bao_kms.openbao.auth import credentials
from bao_kms.openbao.auth import token_file as auth_module

pytestmark = pytest.mark.timeout(30)


def replace_file(path: Path, text: str) -> None:
    """Atomic replace, the way agents and projected volumes rotate a token."""
    temporary = path.with_suffix(".new")
    temporary.write_text(text)
    temporary.chmod(0o600)
    os.replace(temporary, path)


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts actual file reads."""
    calls: list[int] = []
    original = TokenFileAuth._load

    def counting(self: TokenFileAuth) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(TokenFileAuth, "_load", counting)
    return calls


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    original = os.stat

    def counting(path: str, *args: object, **kwargs: object) -> os.stat_result:
        calls.append(path)
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auth_module.os, "stat", counting)
    return calls


def test_reads_token_without_surrounding_whitespace(token_file: Path, clock: FakeClock) -> None:
    token_file.write_text(f"  {TOKEN}\r\n\n")
    assert TokenFileAuth(token_file, clock=clock).token() == TOKEN


def test_accepts_str_path(token_file: Path) -> None:
    assert TokenFileAuth(str(token_file)).token() == TOKEN


def test_cached_and_stat_at_most_once_per_second(
    token_file: Path, clock: FakeClock, loads: list[int], stats: list[str]
) -> None:
    auth = TokenFileAuth(token_file, clock=clock)
    assert auth.token() == TOKEN
    stat_count = len(stats)
    replace_file(token_file, NEW_TOKEN)
    for _ in range(100):
        clock.advance(0.009)
        assert auth.token() == TOKEN  # within the second: neither stat nor read
    assert len(stats) == stat_count
    assert len(loads) == 1
    clock.advance(0.2)
    assert auth.token() == NEW_TOKEN
    assert len(stats) == stat_count + 1
    assert len(loads) == 2


def test_unchanged_file_is_not_read_again(
    token_file: Path, clock: FakeClock, loads: list[int]
) -> None:
    auth = TokenFileAuth(token_file, clock=clock)
    for _ in range(5):
        assert auth.token() == TOKEN
        clock.advance(1.5)
    assert len(loads) == 1


def test_replacement_with_same_size_and_mtime_is_seen_by_inode(
    token_file: Path, clock: FakeClock
) -> None:
    auth = TokenFileAuth(token_file, clock=clock)
    assert auth.token() == TOKEN
    before = os.stat(token_file)
    same_length = "s." + "X" * (len(TOKEN) - 2)
    replace_file(token_file, same_length + "\n")
    os.utime(token_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    clock.advance(1.0)
    assert auth.token() == same_length


def test_in_place_rewrite_is_seen_by_size_or_mtime(token_file: Path, clock: FakeClock) -> None:
    auth = TokenFileAuth(token_file, clock=clock)
    assert auth.token() == TOKEN
    before = os.stat(token_file)
    token_file.write_text(NEW_TOKEN + "\n")  # same inode
    os.utime(token_file, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    clock.advance(1.0)
    assert auth.token() == NEW_TOKEN


def test_refresh_forces_a_read_and_reports_change(
    token_file: Path, clock: FakeClock, loads: list[int]
) -> None:
    auth = TokenFileAuth(token_file, clock=clock)
    assert auth.token() == TOKEN
    assert auth.refresh() is False
    replace_file(token_file, NEW_TOKEN)
    assert auth.refresh() is True  # no clock advance needed
    assert auth.token() == NEW_TOKEN
    assert auth.refresh() is False
    assert len(loads) == 4


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "no-such-token"
    with records_of("bao_kms.openbao.auth", logging.WARNING) as records:
        error = expect_error(AuthCredentialInvalid, TokenFileAuth(path).token)
    assert str(error) == "OpenBao token file does not exist"
    assert str(path) not in str(error)
    assert [r.path for r in records] == [str(path)]  # type: ignore[attr-defined]


@pytest.mark.parametrize("content", ["", "\n", "   \t\r\n"])
def test_empty_file(token_file: Path, content: str) -> None:
    token_file.write_text(content)
    error = expect_error(AuthCredentialInvalid, TokenFileAuth(token_file).token)
    assert str(error) == "OpenBao token file is empty"


@pytest.mark.parametrize("content", [f"{TOKEN} extra", f"{TOKEN}\n{TOKEN}", "tok\x00en", "tökén"])
def test_file_that_is_not_one_token(token_file: Path, content: str) -> None:
    token_file.write_text(content)
    with records_of("bao_kms") as records:
        expect_error(AuthCredentialInvalid, TokenFileAuth(token_file).token)
    assert records and all(TOKEN not in repr(r.__dict__) for r in records)


def test_unreadable_file(token_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, which reads any mode; an EACCES from open() is what a non-root
    # provider would get.
    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(auth_module.os, "open", refuse)
    expect_error(AuthCredentialInvalid, TokenFileAuth(token_file).token)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    expect_error(AuthCredentialInvalid, TokenFileAuth(tmp_path).token)


def test_file_removed_then_restored(token_file: Path, clock: FakeClock) -> None:
    auth = TokenFileAuth(token_file, clock=clock)
    assert auth.token() == TOKEN
    token_file.unlink()
    clock.advance(1.0)
    expect_error(AuthCredentialInvalid, auth.token)
    # A failure is not cached as a good check: the very next call looks again.
    expect_error(AuthCredentialInvalid, auth.token)
    expect_error(AuthCredentialInvalid, auth.refresh)
    token_file.write_text(NEW_TOKEN)
    token_file.chmod(0o600)
    assert auth.token() == NEW_TOKEN


def test_oversized_file(token_file: Path) -> None:
    token_file.write_bytes(b"a" * (credentials.MAX_CREDENTIAL_BYTES + 10))
    expect_error(AuthCredentialInvalid, TokenFileAuth(token_file).token)


def test_concurrent_callers_see_old_or_new_token(token_file: Path) -> None:
    auth = TokenFileAuth(token_file)
    seen: set[str] = set()
    failures: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                seen.add(auth.token())
                time.sleep(0.0001)  # let the writer in: the GIL would starve it otherwise
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    for index in range(20):
        replace_file(token_file, NEW_TOKEN if index % 2 else TOKEN)
        auth.refresh()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not failures
    assert seen <= {TOKEN, NEW_TOKEN}
