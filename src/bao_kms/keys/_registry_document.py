"""The version registry's documents and errors: the state file's JSON, its hash, the
checkpoint, and what can be wrong with them (:mod:`.registry` is the public face).

Every parse is strict (pydantic, unknown fields refused, no coercion), and every failure is a
:class:`StateInvalid` that says what is wrong and how to recover (:data:`RECOVERY`), never a
value from the file.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..reasons import Reason
from .rotation import KeyState, Promotion, VersionRecord, VersionState, state_problems

FORMAT = "openbao-kms-key-registry/v1"
CHECKPOINT_FORMAT = "openbao-kms-key-registry-checkpoint/v1"
#: how to get out of a missing or damaged registry; every such message ends with it
RECOVERY = (
    "to recover, copy the registry files (<state.path> and <state.path>.checkpoint) from a "
    "healthy control-plane node, or run `bao-kms-provider rebuild-state --config <file>` "
    "(docs/rotation.md)"
)
#: ``previousHash`` of a state ``rebuild-state`` wrote, before the token of what it replaced
REBUILT_FROM = "rebuilt-from:"
_VERSION_RE = re.compile(r"[1-9][0-9]{0,9}")


class RegistryError(Exception):
    """The version registry cannot be used; ``reason`` is what Status reports."""

    reason: Reason = Reason.STATE_INVALID


class StateMissing(RegistryError):
    """The state file is gone although the key's history says it should exist."""

    reason = Reason.STATE_MISSING


class StateInvalid(RegistryError):
    """The state file is damaged, edited, replayed, unsafe or another key's."""


class StateLocked(RegistryError):
    """Another process holds the state file: two providers never share one."""


class StateConflict(RegistryError):
    """The state changed since the caller read it (a stale plan, or another writer)."""


class StateWriteFailed(RegistryError):
    """The state could not be written."""

    reason = Reason.STATE_WRITE_FAILED


@dataclass(frozen=True, slots=True)
class StoredState:
    """A key state as written: its generation, hash and the hash of the one it replaced."""

    state: KeyState
    generation: int
    hash: str
    previous_hash: str
    updated_at: str


# --- the document --------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class _VersionDocument(_Strict):
    created: int = Field(ge=0)
    state: VersionState


class _PromotionDocument(_Strict):
    version: int = Field(ge=1)
    observations: int = Field(ge=1)
    first_observed: float


class _StateDocument(_Strict):
    format: Literal["openbao-kms-key-registry/v1"]
    scope: str
    generation: int = Field(ge=1)
    previous_hash: str
    updated_at: str
    highest_latest_version: int = Field(ge=1)
    versions: dict[str, _VersionDocument] = Field(min_length=1)
    promotion: _PromotionDocument | None
    hash: str


class _CheckpointDocument(_Strict):
    format: Literal["openbao-kms-key-registry-checkpoint/v1"]
    generation: int = Field(ge=1)
    hash: str


def _digest(document: dict[str, object]) -> str:
    body = {name: value for name, value in document.items() if name != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def encode_state(stored: StoredState, scope: str) -> bytes:
    state = stored.state
    promotion = state.promotion
    document: dict[str, object] = {
        "format": FORMAT,
        "scope": scope,
        "generation": stored.generation,
        "previousHash": stored.previous_hash,
        "updatedAt": stored.updated_at,
        "highestLatestVersion": state.highest_latest,
        "versions": {
            str(v): {"created": r.created, "state": r.state.value}
            for v, r in state.versions.items()
        },
        "promotion": None
        if promotion is None
        else {
            "version": promotion.version,
            "observations": promotion.observations,
            "firstObserved": float(promotion.first_observed),
        },
    }
    document["hash"] = _digest(document)
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def stamp(
    state: KeyState, previous_hash: str, generation: int, now: float, scope: str
) -> StoredState:
    """A StoredState with its hash, computed over the very document the file holds."""
    updated = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    draft = StoredState(state, generation, "", previous_hash, updated)
    digest = orjson.loads(encode_state(draft, scope))["hash"]
    return StoredState(state, generation, digest, previous_hash, updated)


def decode_state(data: bytes, scope: str, what: str) -> StoredState:
    """Parse and verify a state document; StateInvalid says what is wrong, never a value."""
    try:
        document = _StateDocument.model_validate_json(data)
        raw = orjson.loads(data)
    except (ValidationError, orjson.JSONDecodeError) as error:
        fields = _error_fields(error)
        raise StateInvalid(f"{what} is not a valid key registry{fields}; {RECOVERY}") from None
    if _digest(raw) != document.hash:
        raise StateInvalid(f"{what} does not match its own hash: it was edited; {RECOVERY}")
    if document.scope != scope:
        raise StateInvalid(
            f"{what} belongs to another key or identity (its scope differs); {RECOVERY}"
        )
    if not all(_VERSION_RE.fullmatch(version) for version in document.versions):
        raise StateInvalid(f"{what} has a version key that is not a number; {RECOVERY}")
    promotion = document.promotion
    state = KeyState(
        {int(v): VersionRecord(r.created, r.state) for v, r in document.versions.items()},
        document.highest_latest_version,
        None
        if promotion is None
        else Promotion(promotion.version, promotion.observations, promotion.first_observed),
    )
    problems = state_problems(state)
    if problems:
        raise StateInvalid(f"{what} breaks the rotation rules ({problems[0]}); {RECOVERY}")
    # The stored hash covers the scope this process computed, so a valid one is the file's.
    return StoredState(
        state, document.generation, document.hash, document.previous_hash, document.updated_at
    )


def _error_fields(error: Exception) -> str:
    if isinstance(error, ValidationError):
        if any(e["type"] == "json_invalid" for e in error.errors()):
            return " (not JSON)"
        names = sorted({".".join(str(p) for p in e["loc"]) for e in error.errors()})[:3]
        return f" (fields: {', '.join(names)})" if any(names) else ""
    return " (not JSON)"


def decode_checkpoint(data: bytes, name: str) -> _CheckpointDocument:
    try:
        return _CheckpointDocument.model_validate_json(data)
    except ValidationError:
        raise StateInvalid(f"the checkpoint of {name} is not valid; {RECOVERY}") from None
