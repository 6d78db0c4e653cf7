"""The ``bao-kms-provider`` command line: :func:`bao_kms.cli.main.main` is the console script."""
