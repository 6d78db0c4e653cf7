"""Where a fuzz target can mutate a JSON-like document: every key path and list index in it."""

from __future__ import annotations

from collections import deque
from typing import Any


def key_paths(document: Any, limit: int | None = None) -> list[tuple[Any, ...]]:
    """Key paths and list indexes in *document*, shallow ones first, at most *limit* of them
    (iterative: a mutation may already have nested a document thousands of levels deep)."""
    found: list[tuple[Any, ...]] = []
    pending: deque[tuple[tuple[Any, ...], Any]] = deque([((), document)])
    while pending and (limit is None or len(found) < limit):
        prefix, node = pending.popleft()
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, value in items:
            found.append((*prefix, key))
            pending.append(((*prefix, key), value))
    return found
