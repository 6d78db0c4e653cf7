"""``version``: the package version and which codec twin (compiled or pure Python) is in use."""

from __future__ import annotations

import argparse
import sys

from .. import _codec
from .._version import __version__
from ._output import EXIT_OK, add_output_option, emit


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("version", help="print the version")
    add_output_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import grpc  # only here and in the commands that serve: keeps `config` fast

    data = {
        "version": __version__,
        "codec": _codec.IMPLEMENTATION,
        "grpcio": grpc.__version__,
        "python": sys.version.split()[0],
    }
    emit(data, args.output, f"bao-kms-provider {__version__} (codec: {_codec.IMPLEMENTATION})\n")
    return EXIT_OK
