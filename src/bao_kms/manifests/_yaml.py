"""YAML text helpers for the hand-written templates (which keep comments ``yaml.dump`` drops).

Every value spliced into a template goes through :func:`scalar`, so a value that YAML would read
differently (``yes``, ``0660``, ``*x``, ``a: b``) is quoted and the file parses back to exactly
what was rendered.
"""

from __future__ import annotations

import json
from typing import Any

import yaml


def scalar(value: str) -> str:
    """*value* as a YAML scalar: plain when it reads back unchanged, JSON-quoted otherwise."""
    if value and "#" not in value and "\n" not in value:
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value, ensure_ascii=False)


def flow_list(values: list[str]) -> str:
    """``[a, b]``, each item through :func:`scalar`."""
    return "[" + ", ".join(scalar(value) for value in values) + "]"


def dump(document: Any, header: str = "") -> str:
    """A generated document as block YAML (key order kept), after an optional comment header."""
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    return header + body


def yaml_document(text: str) -> Any:
    """Parse one rendered YAML document (safe loader)."""
    return yaml.safe_load(text)
