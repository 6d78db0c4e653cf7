"""The ``bao-kms-provider`` command line: :func:`bao_kms.cli.main.main` is the console script.

``main`` parses and dispatches; ``_output`` holds exit codes and report printing; ``signals``
the stop-signal latch; every other module is one subcommand.
"""
