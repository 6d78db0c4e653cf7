"""Every module imports on its own in a clean interpreter (``python -I -W error``).

A missing runtime dependency, an import cycle that only bites when a module is imported first,
or a deprecation warning at import time fails here loudly, not in an operator's first run.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import bao_kms

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(bao_kms.__path__, prefix="bao_kms.")
    # the compiled twin is importable only where it was built; the selector test covers it
    if not info.name.startswith("bao_kms._fast.")
)


def test_the_walk_found_the_package() -> None:
    assert {"bao_kms.provider", "bao_kms.errors", "bao_kms._codec_py"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-I", "-W", "error", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
