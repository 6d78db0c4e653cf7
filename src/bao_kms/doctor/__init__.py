"""``doctor``: named checks of a node's set-up, each pass/warn/fail with a fix.

:mod:`.checks` is the vocabulary (check names, outcomes, findings), :mod:`.local` the checks
that need no OpenBao (shared with ``config check``), :mod:`.remote` those that do, through the
provider's own parts, :mod:`.encryption_config` the apiserver's side, :mod:`.runner` the order.
"""

from __future__ import annotations

from .checks import Check, Finding, Outcome, Report, markdown_table
from .runner import run_doctor

__all__ = ["Check", "Finding", "Outcome", "Report", "markdown_table", "run_doctor"]
