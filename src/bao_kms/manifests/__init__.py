"""What the provider renders for operators: EncryptionConfiguration phases, the OpenBao policy
and set-up script, the provider config, a static pod, a systemd unit, kubeadm changes.

Pure functions of their inputs: nothing here writes a file or contacts OpenBao (``init`` in
:mod:`bao_kms.cli.init` writes what :func:`render_bundle` returns).
"""

from __future__ import annotations

from .bundle import CONFIG_FILE, RenderedFile, render_bundle
from .encryption import Phase, encryption_configuration
from .policy import POLICY_NAME, needed_capabilities, openbao_policy, setup_script
from .values import InitValues, load_values

__all__ = [
    "CONFIG_FILE",
    "POLICY_NAME",
    "InitValues",
    "Phase",
    "RenderedFile",
    "encryption_configuration",
    "load_values",
    "needed_capabilities",
    "openbao_policy",
    "render_bundle",
    "setup_script",
]
