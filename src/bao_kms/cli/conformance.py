"""``conformance``: drive a KMS v2 plugin as kube-apiserver does and judge every contract rule.

Works on any KMS v2 plugin's socket, not only this provider's. The run itself lives in
:mod:`bao_kms.conformance`; it needs the ``cryptography`` package (HKDF and AES-GCM for the
emulated apiserver's local encryption), imported only when the command runs, so the provider
itself does not depend on it: ``pip install 'bao-kms-provider[conformance]'``.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson

from ._arguments import positive, seconds, socket_argument
from ._output import EXIT_CHECK_FAILED, EXIT_ERROR, EXIT_OK, add_output_option, emit, fail

INSTALL_HINT = "pip install 'bao-kms-provider[conformance]'"


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "conformance",
        help="drive a KMS v2 plugin as kube-apiserver does and check the contract",
        description="Drive a KMS v2 plugin the way kube-apiserver does and check every rule "
        "of the KMS v2 contract. One line per check, then a summary; exit 4 if any failed.",
    )
    parser.add_argument(
        "--socket",
        required=True,
        type=socket_argument,
        help="the plugin's socket: a path or unix:///path, as in EncryptionConfiguration",
    )
    parser.add_argument("--timeout", type=seconds, default=3.0, help="per call (default 3s)")
    parser.add_argument(
        "--ready-timeout",
        type=seconds,
        default=10.0,
        help="how long the plugin may take to become healthy (default 10s)",
    )
    parser.add_argument(
        "--objects", type=positive, default=64, help="objects written per apiserver lifetime"
    )
    parser.add_argument("--samples", type=positive, default=100, help="serial calls timed per RPC")
    parser.add_argument(
        "--concurrency", type=positive, default=32, help="threads in the cold-start burst"
    )
    parser.add_argument(
        "--rotate-command",
        metavar="CMD",
        help="shell command that rotates the plugin's key mid-run (e.g. "
        "'bao write -f transit/keys/kms/rotate'); its output is discarded",
    )
    parser.add_argument(
        "--rotation-timeout",
        type=seconds,
        default=60.0,
        help="wait this long for the key_id to change after a rotation (default 60s)",
    )
    parser.add_argument(
        "--expect-rotation",
        action="store_true",
        help="fail the rotation check when no key_id change is seen (without "
        "--rotate-command: wait --rotation-timeout for someone to rotate the key)",
    )
    parser.add_argument(
        "--strict-latency",
        action="store_true",
        help="a missed latency target fails the run (default: a warning)",
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the JSON report")
    add_output_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from ..conformance.scenario import ConformanceOptions, run_conformance
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "cryptography":
            raise
        fail("conformance", f"needs the cryptography package: {INSTALL_HINT}")
        return EXIT_ERROR
    from ..api.client import KmsClient

    options = ConformanceOptions(
        ready_timeout=args.ready_timeout,
        objects=args.objects,
        samples=args.samples,
        concurrency=args.concurrency,
        rotate=rotate_hook(args.rotate_command, args.rotation_timeout),
        rotation_timeout=args.rotation_timeout,
        expect_rotation=args.expect_rotation,
        strict_latency=args.strict_latency,
    )
    with KmsClient(args.socket, timeout=args.timeout) as client:
        report = run_conformance(client, options)
    data = {"socket": args.socket, **report.as_dict()}
    if args.report is not None:
        args.report.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    emit(data, args.output, report.text())
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def rotate_hook(command: str | None, timeout: float) -> Callable[[], None] | None:
    """``--rotate-command`` as the run's rotation hook (None without one).

    The command runs through ``/bin/sh`` with the caller's environment (``BAO_ADDR``,
    ``BAO_TOKEN``...). Its output is discarded, never echoed: it may carry tokens.
    """
    if not command:
        return None
    from ..conformance.scenario import RotateFailed

    def rotate() -> None:
        try:
            completed = subprocess.run(
                command,
                shell=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RotateFailed(f"--rotate-command still running after {timeout:g} s") from None
        if completed.returncode != 0:
            raise RotateFailed(f"--rotate-command exited with status {completed.returncode}")

    return rotate
