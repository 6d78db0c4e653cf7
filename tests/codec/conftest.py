"""Fixtures for the hot-path codec: each twin as a fixture, the golden vector, an outcome probe.

``codec`` runs a test once per twin (ids ``python`` and ``cython``; the compiled leg carries the
``compiled`` marker). With ``BAO_KMS_NO_EXTENSIONS`` set (the pure-Python CI leg) the compiled
leg is skipped; without it, a compiled twin that does not import is an error, never a skip, so a
broken build cannot pass by quietly testing Python twice.

Both twins are imported from the installed package: these tests never put ``src/`` on the path.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

NO_EXTENSIONS = os.environ.get("BAO_KMS_NO_EXTENSIONS", "") not in ("", "0")

GOLDEN_VECTOR = Path(__file__).with_name("key-aad-golden-v1.json")


def _import_compiled() -> ModuleType:
    if NO_EXTENSIONS:
        pytest.skip("BAO_KMS_NO_EXTENSIONS is set: pure-Python leg")
    try:
        return importlib.import_module("bao_kms._fast._codec")
    except ImportError as exc:
        pytest.fail(
            f"the compiled codec does not import ({exc}); build the extension, or set "
            "BAO_KMS_NO_EXTENSIONS=1 to test the pure-Python twin alone",
            pytrace=False,
        )


@pytest.fixture(
    scope="session",
    params=[
        pytest.param("python", id="python"),
        pytest.param("cython", id="cython", marks=pytest.mark.compiled),
    ],
)
def codec(request: pytest.FixtureRequest) -> ModuleType:
    """One twin of the hot path: ``bao_kms._codec_py`` or ``bao_kms._fast._codec``."""
    if request.param == "python":
        return importlib.import_module("bao_kms._codec_py")
    return _import_compiled()


@pytest.fixture(scope="session")
def py_codec() -> ModuleType:
    """The specification: the pure-Python twin."""
    return importlib.import_module("bao_kms._codec_py")


@pytest.fixture(scope="session")
def cy_codec() -> ModuleType:
    """The compiled twin (skipped on the pure-Python leg, an error if it does not import)."""
    return _import_compiled()


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    """The v1 golden vector (a copy of the Go provider's, see its ``_about``)."""
    return json.loads(GOLDEN_VECTOR.read_text(encoding="utf-8"))
