"""Selects the hot-path implementation: the compiled twin unless told or forced otherwise.

``BAO_KMS_NO_EXTENSIONS=1`` (any non-empty value but ``0``) picks the pure-Python twin, the
same variable that makes the build produce a pure wheel. Everything in the package imports the
hot path from here; only tests reach into ``_codec_py`` or ``_fast`` directly.
"""

from __future__ import annotations

import os

NO_EXTENSIONS = os.environ.get("BAO_KMS_NO_EXTENSIONS", "") not in ("", "0")

if NO_EXTENSIONS:
    from ._codec_py import *  # noqa: F403
    from ._codec_py import __all__  # noqa: F401 - re-exported

    IMPLEMENTATION = "python"
else:
    try:
        from ._fast._codec import *  # noqa: F403
        from ._fast._codec import __all__  # noqa: F401 - re-exported

        IMPLEMENTATION = "cython"
    except ImportError:  # a pure wheel, or a source tree that was never built
        from ._codec_py import *  # noqa: F403
        from ._codec_py import __all__  # noqa: F401 - re-exported

        IMPLEMENTATION = "python"
