"""Generated KMS v2 stubs (proto/kms/v2/api.proto). Regenerate with proto/generate.py."""
