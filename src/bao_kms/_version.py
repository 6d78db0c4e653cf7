"""The provider's version; also written into every ciphertext's plugin-version annotation."""

__version__ = "0.1.0"
