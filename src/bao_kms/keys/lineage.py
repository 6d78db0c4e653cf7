"""Key lineage: fail closed when a Transit key's history is rewritten.

A key deleted and re-created under the same name (or restored from an older backup) gets new
creation times and may report a lower ``latest_version``. Its old key_ids must never be
re-pointed at new key material, so two rules hold for as long as the history is kept:

* ``latest_version`` never decreases;
* a version's creation time never changes.

:class:`KeyLineage` holds what has been seen so far. Every path that learns about the key (the
metadata probe and the request path's unknown-key_id refresh) goes through the same instance,
so which path sees a version first never changes the verdict. The rotation observer
(:mod:`.rotation`) resumes a lineage from the version registry, so the rules also hold
across restarts. No I/O, no clock, no locking: the caller serialises calls.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..openbao.key_metadata import KeyMetadata
from ..reasons import Reason


class KeyLineage:
    """The history of one Transit key as this process has seen it; it only ever grows."""

    def __init__(self, created: Mapping[int, int] | None = None, highest_latest: int = 0) -> None:
        # version -> creation time, every version ever seen; *created* and *highest_latest*
        # resume a history kept elsewhere (the version registry, across restarts)
        self._created: dict[int, int] = dict(created or {})
        self._highest_latest = highest_latest

    def problems(self, key: KeyMetadata) -> list[Reason]:
        """How *key* contradicts the history seen so far (empty: it does not); records nothing."""
        problems = []
        if key.latest_version < self._highest_latest:
            problems.append(Reason.KEY_LINEAGE_LATEST_VERSION_DECREASED)
        if any(
            self._created.get(version, created) != created
            for version, created in key.versions.items()
        ):
            problems.append(Reason.KEY_LINEAGE_VERSION_CREATED_CHANGED)
        return problems

    def observe(self, key: KeyMetadata) -> list[Reason]:
        """Judge *key* against the history, and extend the history only if it agrees.

        An observation that contradicts the history teaches nothing: its versions may be the
        re-created key's, and remembering them would turn restoring the original key (the
        remedy) into a new contradiction.
        """
        problems = self.problems(key)
        if not problems:
            self._created.update(key.versions)
            self._highest_latest = max(self._highest_latest, key.latest_version)
        return problems
