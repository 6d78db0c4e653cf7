"""docs/troubleshooting.md lists every doctor check and every Status reason, as the code does.

Both tables are rendered from the enums (:func:`bao_kms.doctor.markdown_table`,
:func:`bao_kms.reasons.markdown_table`) between ``<!-- generated ... -->`` markers. After
changing either enum, regenerate them with
``BAO_KMS_UPDATE_DOCS=1 python -m pytest tests/unit/test_doctor_docs.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from bao_kms import doctor, reasons
from bao_kms.doctor import Check
from bao_kms.reasons import Reason

DOC = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
_BLOCK = (
    r"(<!-- generated from bao_kms\.{module}\.markdown_table\(\);[^\n]*-->\n)"
    r"(.*?)(<!-- end generated -->)"
)

SOURCES: dict[str, Callable[[], str]] = {
    "doctor": doctor.markdown_table,
    "reasons": reasons.markdown_table,
}


def generated(text: str, module: str) -> str:
    match = re.search(_BLOCK.format(module=module), text, re.S)
    assert match, f"docs/troubleshooting.md has no generated block for {module}"
    return match.group(2)


@pytest.mark.parametrize("module", sorted(SOURCES))
def test_the_generated_tables_are_current(module: str) -> None:
    text = DOC.read_text()
    expected = SOURCES[module]()
    if os.environ.get("BAO_KMS_UPDATE_DOCS") == "1":
        text = re.sub(
            _BLOCK.format(module=module),
            lambda match: match.group(1) + expected + match.group(3),
            text,
            flags=re.S,
        )
        DOC.write_text(text)
    assert generated(DOC.read_text(), module) == expected, (
        "regenerate: BAO_KMS_UPDATE_DOCS=1 python -m pytest tests/unit/test_doctor_docs.py"
    )


def test_every_check_and_reason_has_a_row() -> None:
    text = DOC.read_text()
    checks = set(re.findall(r"^\| `([a-z_]+)` \|", generated(text, "doctor"), re.M))
    assert checks == {check.value for check in Check}
    words = set(re.findall(r"^\| `([a-z_]+)` \|", generated(text, "reasons"), re.M))
    assert words == {reason.value for reason in Reason}


def test_every_check_has_a_note() -> None:
    text = DOC.read_text()
    for check in Check:
        assert f"- **`{check.value}`**:" in text, check.value


def test_check_descriptions_fit_in_a_table_cell() -> None:
    for check in Check:
        for cell in (check.verifies, check.hint):
            assert cell.strip() and "|" not in cell and "\n" not in cell, check.name
