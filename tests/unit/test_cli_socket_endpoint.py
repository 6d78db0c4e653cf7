"""The socket argument of ``probe`` and ``dev``: a path, or the endpoint a kube-apiserver uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bao_kms.api.client import InvalidSocketEndpoint, KmsClient, socket_path


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("/run/openbao-kms/kms.sock", "/run/openbao-kms/kms.sock"),
        ("unix:///run/openbao-kms/kms.sock", "/run/openbao-kms/kms.sock"),
        ("unix:/run/kms.sock", "/run/kms.sock"),
        ("/run/../run/kms.sock", "/run/kms.sock"),
        (Path("/run/kms.sock"), "/run/kms.sock"),
    ],
)
def test_absolute_forms(given: str | Path, expected: str) -> None:
    assert socket_path(given) == expected


@pytest.mark.parametrize("given", ["kms.sock", "unix:kms.sock", "./kms.sock", "a:b.sock"])
def test_relative_forms_are_relative_to_the_working_directory(
    given: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert socket_path(given) == os.path.join(tmp_path, given.removeprefix("unix:").lstrip("./"))


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("unix://kms.sock", "absolute path"),  # "kms.sock" would be the URI's host
        ("unix://host/run/kms.sock", "absolute path"),
        ("tcp://127.0.0.1:8080", "not tcp://"),
        ("https://kms.example", "not https://"),
        ("unix:///@abstract", "abstract"),
        ("", "empty"),
        ("unix://", "absolute path"),
    ],
)
def test_other_endpoints_are_refused_clearly(given: str, says: str) -> None:
    with pytest.raises(InvalidSocketEndpoint, match=says):
        socket_path(given)


def test_the_client_reads_the_same_forms() -> None:
    with pytest.raises(InvalidSocketEndpoint):
        KmsClient("tcp://127.0.0.1:1")
    KmsClient("unix:///nonexistent/kms.sock").close()  # dials lazily, like kube-apiserver
