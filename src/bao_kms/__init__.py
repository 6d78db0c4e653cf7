"""bao-kms-provider: a Kubernetes KMS v2 plugin backed by OpenBao Transit."""

from ._version import __version__

__all__ = ["__version__"]
