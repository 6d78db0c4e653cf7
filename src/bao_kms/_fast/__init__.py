"""Compiled twins of the pure-Python hot path; import them only through their selectors.

``_codec`` is the Cython build of ``bao_kms._codec_py`` (the specification), chosen by
``bao_kms._codec`` unless ``BAO_KMS_NO_EXTENSIONS`` is set or the extension was not built.
"""
