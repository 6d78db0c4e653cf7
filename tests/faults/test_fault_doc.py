"""docs/fault-matrix.md states what the fault tests check: its table is the expectations of
:data:`_support.fault_table.FAULTS`, row for row, plus the times a real run measured."""

from __future__ import annotations

from pathlib import Path

from _support.fault_table import FAULTS, HEADER, row_cells, table_rows

DOC = Path(__file__).resolve().parents[2] / "docs" / "fault-matrix.md"


def test_the_document_lists_every_fault_as_the_tests_expect_it() -> None:
    text = DOC.read_text()
    assert HEADER[0] in text and HEADER[1] in text
    rows = table_rows(text)
    expected = [row_cells(expectation) for expectation in FAULTS.values()]
    assert [row[: len(expected[0])] for row in rows] == expected


def test_every_fault_row_has_measured_times() -> None:
    for row in table_rows(DOC.read_text()):
        detected, recovered = row[-2:]
        assert detected and recovered, row  # from a real run, never left blank
