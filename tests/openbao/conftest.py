"""Fixtures for the OpenBao client tests: token files, the pool, a fake server, transports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _support import FakeClock
from _support.fake_openbao import FakeBao, RefusingAddress
from _support.leaks import TOKEN
from bao_kms.openbao import TokenFileAuth, Transport, make_pool
from bao_kms.openbao.connections import ConnectionPool


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)  # the provider refuses credential files others can read
    return path


@pytest.fixture
def pool() -> Iterator[ConnectionPool]:
    manager = make_pool(ca_file=None, maxsize=4)
    yield manager
    manager.clear()


@pytest.fixture
def fake() -> Iterator[FakeBao]:
    with FakeBao() as server:
        yield server


@pytest.fixture
def refusing() -> Iterator[RefusingAddress]:
    with RefusingAddress() as address:
        yield address


@pytest.fixture
def make_transport(token_file: Path, pool: ConnectionPool) -> Callable[..., Transport]:
    """Transport factory: ``make_transport(address, ..., namespace=..., timeout=...)``."""

    def build(*addresses: str, **options: object) -> Transport:
        auth = options.pop("auth", None) or TokenFileAuth(token_file)
        options.setdefault("timeout", 2.0)
        return Transport(list(addresses), auth, pool=pool, **options)  # type: ignore[arg-type]

    return build
