"""``serve``: the KMS v2 provider on its configured Unix socket until a stop signal."""

from __future__ import annotations

import argparse
import logging
import os
import signal

from .. import _codec
from .._version import __version__
from ..config import ENV_CONFIG, Config, load_config
from ..errors import ConfigError, SocketError
from ..logs import configure_logging
from ._output import EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, fail
from .signals import SignalLatch

log = logging.getLogger("bao_kms.cli")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("serve", help="serve KMS v2 on the configured Unix socket")
    parser.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        fail("serve", f"--config FILE (or {ENV_CONFIG}) is required")
        return EXIT_USAGE
    return serve(load_config(path))


def serve(config: Config) -> int:
    """Start the provider, wait for a stop signal, drain, stop."""
    from ..provider import Provider  # grpc and urllib3 only for commands that serve

    configure_logging(config.logging.level)
    with SignalLatch() as latch:
        try:
            provider = Provider(config)
            provider.start()
        except (SocketError, ConfigError) as error:
            log.error("cannot serve", extra={"error": str(error)})
            fail("", error)
            return EXIT_CONFIG if isinstance(error, ConfigError) else EXIT_RUNTIME
        log.info("started", extra={"version": __version__, "codec": _codec.IMPLEMENTATION})
        signum = latch.wait()
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        provider.stop()
    return EXIT_OK
