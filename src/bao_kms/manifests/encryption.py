"""Operator-facing text the provider renders: EncryptionConfiguration and OpenBao policy."""

from __future__ import annotations


def encryption_configuration(provider_name: str, socket_path: str, timeout: str = "3s") -> str:
    """A kube-apiserver EncryptionConfiguration that sends Secrets through this provider.

    ``identity: {}`` stays last until every Secret has been rewritten; then remove it, or the
    apiserver will silently write plaintext if the KMS entry is ever dropped.
    """
    return f"""\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - kms:
          apiVersion: v2
          name: {provider_name}
          endpoint: unix://{socket_path}
          timeout: {timeout}
      - identity: {{}}
"""


def openbao_policy(mount_path: str, key_name: str) -> str:
    """The least OpenBao policy the provider needs: encrypt/decrypt, read key and mount config."""
    return f"""\
path "{mount_path}/encrypt/{key_name}" {{
  capabilities = ["update"]
}}
path "{mount_path}/decrypt/{key_name}" {{
  capabilities = ["update"]
}}
path "{mount_path}/keys/{key_name}" {{
  capabilities = ["read"]
}}
path "{mount_path}/config/keys" {{
  capabilities = ["read"]
}}
"""
