"""Config documents, random and mutated, through ``parse_config`` and ``load_config``.

Whatever the document, the answer is a valid :class:`~bao_kms.config.Config` or a
:class:`~bao_kms.errors.ConfigError`, never another exception; the error says *where* (a
field path of the provider's own key names, or a line and column) and never echoes what the
operator wrote: every generated value and unknown key carries :data:`MARKER`, so finding it in
a message means a value leaked. Documents are random trees, valid documents with one to four
mutations (wrong types, unknown keys, huge and unicode values, deep nesting, invalid
durations, addresses, paths and modes), and YAML text mangled at the byte level.

``BAO_KMS_FUZZ_EXAMPLES`` sets the examples per test (default 60); for the long run::

    BAO_KMS_FUZZ_EXAMPLES=10000 python -m pytest -q -s tests/fuzz/test_fuzz_config.py
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from _support.config_documents import MARKER, full, minimal
from _support.document_paths import key_paths
from _support.leaks import assert_clean
from bao_kms.config import Config, load_config, parse_config
from bao_kms.config.loader import _FIELD_NAMES
from bao_kms.errors import ConfigError

EXAMPLES = int(os.environ.get("BAO_KMS_FUZZ_EXAMPLES", "60"))
OUTCOMES: Counter[str] = Counter()
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 5))

#: a line of a validation message: two spaces, the field path, a colon
_PROBLEM_LINE = re.compile(r"  (?P<path>[^:\s]+): \S")
_POSITION = re.compile(r"at line \d+, column \d+")
_LINE = re.compile(r"at line \d+: ")


# --- values ----------------------------------------------------------------------------------


def _marked(text: str) -> str:
    return f"{text}{MARKER}"


#: strings shaped like what each field wants, and broken, every one carrying the marker
field_text = st.one_of(
    st.text(max_size=20).map(_marked),
    st.sampled_from(["%ss", "-%s1s", "1.5.%sm", "%s0x10"]).map(lambda f: f % MARKER),
    st.sampled_from(
        [
            "https://%s.example:8200",
            "http://user:%s@bao:8200",
            "https://bao:8200/%s",
            "https://bao:%s",
            "ftp://%s:1",
            "https://[::1]:99999/%s",
            "/etc/%s/../token",
            "relative/%s",
            "transit/../%s",
            "0%s7",
            "\u202e%s\u2028",
            "%s\x00\x07",
            " %s ",
        ]
    ).map(lambda f: f % MARKER),
    st.integers(1, 10_000).map(lambda n: MARKER * n),  # huge, up to 100 KB
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=10).map(lambda t: MARKER + t),
)
#: values of the wrong kind, or right-looking ones at and past their limits
plain_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["0s", "0ms", "0.0001ms", "9999999999h", "1e3s", "5", "5 m", "1H", "-1s"]),
    st.sampled_from(["0660", "0777", "0666", "8", "01000", "rw-rw----"]),
    st.sampled_from(["http://127.0.0.1:0", "https://bao", "https://bao:65536", "https://"]),
    field_text,
)
unknown_keys = st.one_of(
    st.text(max_size=12).map(_marked),
    st.sampled_from(sorted(_FIELD_NAMES)).map(_marked),  # near a real key: "did you mean"
    st.sampled_from(sorted(_FIELD_NAMES)).map(str.upper).map(_marked),
)
any_values = st.recursive(
    plain_values,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(unknown_keys, st.sampled_from(sorted(_FIELD_NAMES))), inner, max_size=4
        ),
    ),
    max_leaves=12,
)


def _nested(depth: int, leaf: Any, as_list: bool) -> Any:
    for _ in range(depth):
        leaf = [leaf] if as_list else {_marked("k"): leaf}
    return leaf


#: as deep as a YAML file can nest before PyYAML refuses it (~500 levels; deeper is "nested too
#: deeply", see yaml_texts). Deeper Python values are out of reach of a file, and past the
#: recursion limit pydantic-core's repr of a union tag (``auth.method``) fails inside it.
deep_values = st.builds(_nested, st.integers(50, 600), plain_values, st.booleans())


# --- documents ---------------------------------------------------------------------------------


@st.composite
def mutated_documents(draw: st.DrawFn, *, deep: bool = True) -> Any:
    """A valid document (minimal or full) with one to four mutations (*deep*: nesting hundreds
    of levels deep among them; YAML gets its deep nesting as text instead)."""
    document = copy.deepcopy(draw(st.sampled_from([minimal(), full()])))
    for _ in range(draw(st.integers(1, 4))):
        paths = key_paths(document, limit=64)
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        node = document
        for part in parents:
            node = node[part]
        actions = ["set", "set", "delete", "unknown", "wrap"] + (["deep"] if deep else [])
        action = draw(st.sampled_from(actions))
        if action == "set":
            node[last] = draw(any_values)
        elif action == "deep":
            node[last] = draw(deep_values)
        elif action == "delete":
            del node[last]
        elif action == "unknown" and isinstance(node, dict):
            node[draw(unknown_keys)] = draw(any_values)
        elif action == "wrap":
            node[last] = [node[last]] if draw(st.booleans()) else {_marked("x"): node[last]}
    return document


documents = st.one_of(mutated_documents(), any_values, deep_values)


@st.composite
def yaml_texts(draw: st.DrawFn) -> bytes:
    """YAML of a mutated document, then mangled as text: bytes inserted, lines duplicated or
    indented, flow nesting, aliases, tags, invalid UTF-8."""
    text = yaml.safe_dump(draw(mutated_documents(deep=False)), allow_unicode=True, width=10_000)
    lines = text.splitlines()
    for _ in range(draw(st.integers(0, 3))):
        if not lines:
            break
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["insert", "duplicate", "indent", "splice"]))
        if action == "insert":
            position = draw(st.integers(0, len(lines[at])))
            noise = draw(
                st.sampled_from(
                    [
                        ":",
                        "- ",
                        "{",
                        "[",
                        "&a ",
                        "*a",
                        "!!python/name:os.system ",
                        "\t",
                        "'",
                        '"',
                        "? ",
                        "%YAML 1.1",
                        "---",
                    ]
                )
            )
            lines[at] = lines[at][:position] + noise + MARKER + lines[at][position:]
        elif action == "duplicate":
            lines.insert(at, lines[at])
        elif action == "indent":
            lines[at] = " " * draw(st.integers(1, 5)) + lines[at]
        else:
            lines.insert(at, draw(st.sampled_from(_SPLICES)))
    data = "\n".join(lines).encode("utf-8")
    if draw(st.integers(0, 9)) == 0:
        data += b"\n# " + MARKER.encode() + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\x00"]))
    return data


_SPLICES = [
    f"{MARKER}: " + "[" * 200 + "]" * 200,  # deep, within what PyYAML parses
    f"{MARKER}: &a [" + ", ".join(["x"] * 50) + "]",
    f"{MARKER}: [*a, *a, *a, *a]",
    f"server: {{socketPath: /run/{MARKER}.sock, socketMode: '0777'}}",
    f"? [{MARKER}, b]\n: c",
    f"{MARKER}: !!binary aGVsbG8=",
    f"{MARKER}: !!python/object/apply:os.system ['true']",
    f"identity: {{clusterId: {MARKER}, clusterId: {MARKER}x}}",
]


# --- the properties ------------------------------------------------------------------------------


def _check_message(error: ConfigError, *, file_level: bool) -> None:
    message = str(error)
    assert_clean(error, (MARKER,))  # the message, its repr and any error chained behind it
    problems = [m["path"] for m in map(_PROBLEM_LINE.match, message.splitlines()[1:]) if m]
    if problems:
        for path in problems:
            parts = path.split(".")
            assert path == "(top level)" or all(
                part in _FIELD_NAMES or part.isdigit() for part in parts
            ), f"the path {path!r} names something that is not a config key"
        return
    # no field to name: the whole document, or (a file) where the YAML broke
    assert (
        "top level" in message
        or (file_level and _POSITION.search(message))
        or (file_level and _LINE.search(message))
        or (file_level and ("not UTF-8" in message or "nested too deeply" in message))
    ), message


def _outcome(call: Any, *, file_level: bool) -> None:
    try:
        result = call()
    except ConfigError as error:
        _check_message(error, file_level=file_level)
        OUTCOMES["ConfigError"] += 1
        return
    assert isinstance(result, Config)
    OUTCOMES["valid Config"] += 1


@FUZZ
@given(document=documents)
def test_parse_config_answers_config_or_a_clean_config_error(document: Any) -> None:
    _outcome(lambda: parse_config(document), file_level=False)


@pytest.fixture(scope="module")
def config_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bk-fuzz-config-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
    if OUTCOMES:
        print("\nconfig fuzz outcomes:", dict(sorted(OUTCOMES.items())))


@FUZZ
@given(text=yaml_texts(), override=st.one_of(st.none(), field_text))
# found by this test: PyYAML's reader refused a NUL before the loader's error handling began,
# so `serve` died with a ReaderError traceback instead of exit 3 and a ConfigError
@example(text=b"openbao: null\n# " + MARKER.encode() + b"\x00", override=None)
@example(text=b"identity:\n  clusterId: a\x07" + MARKER.encode(), override=None)
# deeper than PyYAML's recursion allows: "nested too deeply" (it takes PyYAML seconds to give
# up, so this one case is an example rather than a splice drawn thousands of times)
@example(text=b"auth:\n  method: " + b"[" * 1500 + b"]" * 1500, override=None)
def test_load_config_answers_config_or_a_clean_config_error(
    config_dir: Path, text: bytes, override: str | None
) -> None:
    path = config_dir / "config.yaml"
    path.write_bytes(text)
    path.chmod(0o600)
    # the few environment overrides take operator text too; it must not be echoed either
    environ = {} if override is None else {"BAO_KMS_SOCKET": override}
    _outcome(lambda: load_config(path, environ=environ), file_level=True)


@pytest.mark.parametrize("document", [minimal(), full()], ids=["minimal", "full"])
def test_the_documents_mutated_are_valid(document: dict[str, Any]) -> None:
    """Mutations start from valid documents, so a refusal is the mutation's doing."""
    assert isinstance(parse_config(document), Config)
