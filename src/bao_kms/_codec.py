"""Selects the hot-path implementation: the compiled twin unless told or forced otherwise.

``BAO_KMS_NO_EXTENSIONS=1`` (any non-empty value but ``0``) picks the pure-Python twin, the
same variable that makes the build produce a pure wheel. Everything in the package imports the
hot path from here; only tests reach into ``_codec_py`` or ``_fast`` directly. The compiled twin
holds only the per-request functions and re-exports the spec's own objects for the rest, so
either way the cold builders and constants are those of ``_codec_py``.
"""

from __future__ import annotations

import os

from ._codec_py import __all__ as __all__  # the spec's names, whichever twin serves them

NO_EXTENSIONS = os.environ.get("BAO_KMS_NO_EXTENSIONS", "") not in ("", "0")

if NO_EXTENSIONS:
    from ._codec_py import *  # noqa: F403

    IMPLEMENTATION = "python"
else:
    try:
        from ._fast._codec import *  # noqa: F403

        IMPLEMENTATION = "cython"
    except ImportError:  # a pure wheel, or a source tree that was never built
        from ._codec_py import *  # noqa: F403

        IMPLEMENTATION = "python"
