"""README's "Status reasons" table and the :class:`Reason` enum say the same thing.

The table is parsed (not grepped) and compared member by member, meaning and remedy included,
then compared as text with :func:`markdown_table`, so the docs cannot drift from the code.
"""

from __future__ import annotations

from pathlib import Path

from bao_kms.reasons import Reason, markdown_table

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def readme_section(title: str) -> str:
    return README.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]


def readme_reasons() -> dict[str, tuple[str, str]]:
    """reason word -> (meaning, what to do), from the rows of the section's table."""
    rows = [line for line in readme_section("Status reasons").splitlines() if line.startswith("|")]
    documented: dict[str, tuple[str, str]] = {}
    for row in rows[2:]:  # below the header and the |---| line
        word, meaning, remedy = (cell.strip() for cell in row.strip("|").split("|"))
        assert word.startswith("`") and word.endswith("`"), row
        assert word.strip("`") not in documented, f"{word} has two rows"
        documented[word.strip("`")] = (meaning, remedy)
    return documented


def test_the_table_names_every_reason_and_nothing_else():
    documented = set(readme_reasons())
    members = {reason.value for reason in Reason}
    assert members - documented == set(), "README 'Status reasons' lacks these"
    assert documented - members == set(), "README 'Status reasons' names no such Reason"


def test_meaning_and_remedy_match_the_enum():
    documented = readme_reasons()
    for reason in Reason:
        assert documented[reason.value] == (reason.meaning, reason.remedy), reason.name


def test_the_table_is_the_rendered_enum():
    # The row order and layout too: paste markdown_table() into README.md after a change.
    assert markdown_table() in readme_section("Status reasons")


def test_descriptions_fit_in_a_table_cell():
    for reason in Reason:
        for text in (reason.meaning, reason.remedy):
            assert text.strip() and "|" not in text and "\n" not in text, reason.name
