"""Reading the config: YAML in, a validated :class:`~bao_kms.config.model.Config` out.

Only a few environment variables override the file (:data:`ENV_CONFIG` names it,
:data:`ENV_LOG_LEVEL` and :data:`ENV_SOCKET` replace one key each). Every problem becomes a
:class:`~bao_kms.errors.ConfigError` whose message names the field path but never echoes a
value or a key of the operator's: an unknown or duplicated key is shown by its line and column
(and the known key it resembles), because a token pasted as a YAML key must not be printed,
and identity labels are not for logs either.

The file is opened without blocking and read only if it is a regular file of sane size: a
FIFO or a device at the path is refused instead of hanging the start. A world-writable file
is refused (anyone could change what the provider serves); a group- or world-readable one is
reported through *warn*.
"""

from __future__ import annotations

import difflib
import logging
import os
import stat
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .model import Config

log = logging.getLogger("bao_kms.config")

ENV_CONFIG = "BAO_KMS_CONFIG"
ENV_LOG_LEVEL = "BAO_KMS_LOG_LEVEL"
ENV_SOCKET = "BAO_KMS_SOCKET"
#: listen addresses for /live, /ready and /metrics (DESIGN §7: the few env overrides)
ENV_HEALTH_ADDRESS = "BAO_KMS_HEALTH_ADDRESS"
ENV_METRICS_ADDRESS = "BAO_KMS_METRICS_ADDRESS"

#: variable -> (section, key) it replaces
_OVERRIDES = {
    ENV_SOCKET: ("server", "socketPath"),
    ENV_LOG_LEVEL: ("logging", "level"),
    ENV_HEALTH_ADDRESS: ("server", "healthAddress"),
    ENV_METRICS_ADDRESS: ("server", "metricsAddress"),
}
#: a config is a few KiB; a file far larger is not one (and is not read whole)
MAX_CONFIG_BYTES = 1024 * 1024

#: where each mapping key of the file was written: its path of keys -> (line, column)
KeyMarks = dict[tuple[str, ...], tuple[int, int]]

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
                # our own key names may be repeated back; anything else may be a secret
                named = f" {key}" if isinstance(key, str) and key in _FIELD_NAMES else ""
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key{named}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _field_names(model: type[BaseModel]) -> Iterator[str]:
    """Every key the config file may contain, at any depth (for "did you mean")."""
    for name, field in model.model_fields.items():
        yield field.alias or name
        pending = [field.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                yield from _field_names(annotation)
            else:
                pending.extend(typing.get_args(annotation))


_FIELD_NAMES = frozenset(_field_names(Config))


def _unknown_key(loc: list[Any], marks: KeyMarks) -> str:
    """Where an unknown key was written and what it may have meant, never the key itself."""
    mark = marks.get(tuple(str(part) for part in loc))
    at = f" at line {mark[0]}, column {mark[1]}" if mark else ""
    key = loc[-1] if isinstance(loc[-1], str) else ""
    close = [] if key in _FIELD_NAMES else difflib.get_close_matches(key, _FIELD_NAMES, 1, 0.75)
    return f"unknown key{at}" + (f" (did you mean {close[0]}?)" if close else "")


def _describe_one(item: ErrorDetails, marks: KeyMarks) -> str:
    loc = list(item["loc"])
    if len(loc) > 1 and loc[0] in _UNION_SECTIONS:
        del loc[1]
    message = item["msg"].removeprefix("Value error, ")
    kind = item["type"]
    if kind == "extra_forbidden":
        message = _unknown_key(loc, marks)
        if loc[-1] not in _FIELD_NAMES:
            del loc[-1]  # the operator's text, not one of our key names: maybe a pasted secret
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


def _describe(error: ValidationError, marks: KeyMarks) -> str:
    """One indented line per problem: the camelCase field path and what it must be."""
    return "\n".join(
        _describe_one(item, marks) for item in error.errors(include_input=False, include_url=False)
    )


def parse_config(document: Any, source: str = "config", *, marks: KeyMarks | None = None) -> Config:
    """Validate an already-parsed YAML document (*marks*: where its keys were written)."""
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections")
    try:
        # by_name=False: the file speaks camelCase only; snake_case is for Python callers
        return Config.model_validate(document, by_alias=True, by_name=False)
    except ValidationError as error:
        raise ConfigError(f"{source} is invalid:\n{_describe(error, marks or {})}") from None


def _read_text(path: str | os.PathLike[str], warn: Callable[[str], None]) -> str:
    try:
        # O_NONBLOCK: a FIFO at the path must not hang the start (it is refused below)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"config file {path} is not a regular file")
        if info.st_mode & stat.S_IWOTH:
            raise ConfigError(
                f"config file {path} is world-writable: anyone could change what the provider "
                "serves; remove the others' write permission (chmod o-w)"
            )
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        warn(
            f"config file {path} is readable by other users (mode "
            f"{stat.S_IMODE(info.st_mode):04o}); it names the credential files, make it 0600 "
            "or 0640"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config file {path}: not UTF-8 text") from None


def _key_marks(root: yaml.Node | None) -> KeyMarks:
    """Where every mapping key sits, by its path of keys (iterative: depth is the file's)."""
    marks: KeyMarks = {}
    seen: set[int] = set()  # aliases share nodes; each is walked once
    pending: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())] if root is not None else []
    while pending:
        node, path = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    key_path = (*path, key_node.value)
                    mark = key_node.start_mark
                    marks.setdefault(key_path, (mark.line + 1, mark.column + 1))
                    pending.append((value_node, key_path))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, str(i))) for i, item in enumerate(node.value))
    return marks


def _read_yaml(path: str | os.PathLike[str], warn: Callable[[str], None]) -> tuple[Any, KeyMarks]:
    text = _read_text(path, warn)
    try:
        loader = _UniqueKeyLoader(text)  # a SafeLoader: no Python tags
    except yaml.reader.ReaderError as error:
        # the reader checks the whole text up front and refuses NUL and most control
        # characters; its message quotes the character, so say only where it is
        line = text.count("\n", 0, error.position) + 1
        raise ConfigError(
            f"config file {path} is not valid YAML at line {line}: a character YAML does not allow"
        ) from None
    try:
        root = loader.get_single_node()
        marks = _key_marks(root)
        return (loader.construct_document(root) if root is not None else None), marks
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        # only our own problems are safe to repeat: PyYAML's may quote the file's text
        problem = getattr(error, "problem", "") or ""
        known = ("duplicate key", "a mapping key")
        detail = f": {problem}" if problem.startswith(known) else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}{detail}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply") from None
    finally:
        loader.dispose()


def _apply_overrides(document: Any, environ: Mapping[str, str]) -> None:
    if not isinstance(document, dict):
        return  # parse_config reports the real problem
    for variable, (section, key) in _OVERRIDES.items():
        if environ.get(variable):
            document.setdefault(section, {})
            if isinstance(document[section], dict):
                document[section][key] = environ[variable]


def _log_warning(message: str) -> None:
    log.warning(message)


def load_config(
    path: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    warn: Callable[[str], None] = _log_warning,
) -> Config:
    """Read, validate and apply the environment overrides; ConfigError on any problem.

    *warn* is told about problems that do not stop the provider (a readable file mode); by
    default they are logged.
    """
    environ = os.environ if environ is None else environ
    document, marks = _read_yaml(path, warn)
    _apply_overrides(document, environ)
    return parse_config(document, source=f"config file {path}", marks=marks)
