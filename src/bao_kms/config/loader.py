"""Reading the config: YAML in, a validated :class:`~bao_kms.config.model.Config` out.

Only a few environment variables override the file (:data:`ENV_CONFIG` names it,
:data:`ENV_LOG_LEVEL` and :data:`ENV_SOCKET` replace one key each). Every problem becomes a
:class:`~bao_kms.errors.ConfigError` whose message names the field path but never echoes its
value (identity labels are not for logs, and neither is a secret pasted into the wrong key).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .model import Config

ENV_CONFIG = "BAO_KMS_CONFIG"
ENV_LOG_LEVEL = "BAO_KMS_LOG_LEVEL"
ENV_SOCKET = "BAO_KMS_SOCKET"

#: variable -> (section, key) it replaces
_OVERRIDES = {ENV_SOCKET: ("server", "socketPath"), ENV_LOG_LEVEL: ("logging", "level")}

#: sections that are discriminated unions: pydantic puts the chosen tag into an error's
#: location (``auth.token.token.file``), which names no key the operator wrote
_UNION_SECTIONS = frozenset(
    field.alias or name for name, field in Config.model_fields.items() if field.discriminator
)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys instead of keeping the last one silently
    (a repeated identity label would change every key_id without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _describe_one(item: ErrorDetails) -> str:
    loc = list(item["loc"])
    if len(loc) > 1 and loc[0] in _UNION_SECTIONS:
        del loc[1]
    message = item["msg"].removeprefix("Value error, ")
    kind = item["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind in ("model_type", "model_attributes_type"):
        message = "must be a mapping"  # pydantic's own names a Python class
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        # pydantic's message quotes the given tag; the expected tags are ours to show
        context = item.get("ctx") or {}
        loc.append(str(context.get("discriminator", "")).strip("'"))
        supported = str(context.get("expected_tags", "")).replace("'", "")
        verb = "is required" if kind == "union_tag_not_found" else "is not supported"
        message = f"{verb}; must be one of: {supported}"
    where = ".".join(str(part) for part in loc) or "(top level)"
    return f"  {where}: {message}"


def _describe(error: ValidationError) -> str:
    """One indented line per problem: the camelCase field path and what it must be."""
    return "\n".join(
        _describe_one(item) for item in error.errors(include_input=False, include_url=False)
    )


def parse_config(document: Any, source: str = "config") -> Config:
    """Validate an already-parsed YAML document."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        # by_name=False: the file speaks camelCase only; snake_case is for Python callers
        return Config.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as error:
        raise ConfigError(f"{source} is invalid:\n{_describe(error)}") from None


def _read_yaml(path: str | os.PathLike[str]) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python tags
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # only our own problems are safe to repeat: PyYAML's may quote the file's text
        problem = getattr(error, "problem", "") or ""
        known = ("duplicate key", "a mapping key")
        detail = f": {problem}" if problem.startswith(known) else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}{detail}") from None


def _apply_overrides(document: Any, environ: Mapping[str, str]) -> None:
    if not isinstance(document, dict):
        return  # parse_config reports the real problem
    for variable, (section, key) in _OVERRIDES.items():
        if environ.get(variable):
            document.setdefault(section, {})
            if isinstance(document[section], dict):
                document[section][key] = environ[variable]


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, validate and apply the environment overrides; ConfigError on any problem."""
    environ = os.environ if environ is None else environ
    document = _read_yaml(path)
    _apply_overrides(document, environ)
    return parse_config(document, source=f"config file {path}")
