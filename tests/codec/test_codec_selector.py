"""The selector picks the compiled twin by default, and pure Python when told to.

Run in fresh interpreters: a broken or missing extension must fail here, not quietly fall back
to Python (which the selector itself does on purpose, for pure wheels).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NO_EXTENSIONS = os.environ.get("BAO_KMS_NO_EXTENSIONS", "") not in ("", "0")

PROBE = (
    "import bao_kms._codec as c, bao_kms._codec_py as p; "
    "assert c.__all__ == p.__all__; "
    "print(c.IMPLEMENTATION)"
)


def _implementation(cwd: Path, no_extensions: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "BAO_KMS_NO_EXTENSIONS"}
    if no_extensions is not None:
        env["BAO_KMS_NO_EXTENSIONS"] = no_extensions
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.compiled
@pytest.mark.skipif(NO_EXTENSIONS, reason="BAO_KMS_NO_EXTENSIONS is set: pure-Python leg")
@pytest.mark.parametrize("no_extensions", [None, "", "0"])
def test_default_is_compiled(tmp_path: Path, no_extensions: str | None) -> None:
    assert _implementation(tmp_path, no_extensions) == "cython"


@pytest.mark.parametrize("no_extensions", ["1", "yes"])
def test_no_extensions_is_python(tmp_path: Path, no_extensions: str) -> None:
    assert _implementation(tmp_path, no_extensions) == "python"
