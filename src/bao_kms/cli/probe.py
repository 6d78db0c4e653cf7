"""``probe``: a live Status/Encrypt/Decrypt round trip through a provider's socket."""

from __future__ import annotations

import argparse

from ..api.probe import ProbeReport, run_probe
from ._arguments import positive, seconds, socket_argument
from ._output import EXIT_CHECK_FAILED, EXIT_OK, add_output_option, emit


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "probe", help="live Status/Encrypt/Decrypt round trip via the socket"
    )
    parser.add_argument(
        "--socket",
        required=True,
        type=socket_argument,
        help="socket path (relative or absolute) or unix:///path, as in EncryptionConfiguration",
    )
    parser.add_argument("--timeout", type=seconds, default=3.0, help="per call (default 3s)")
    parser.add_argument(
        "--rounds", type=positive, default=1, help="round trips, for latency figures"
    )
    add_output_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = run_probe(args.socket, timeout=args.timeout, rounds=args.rounds)
    emit(report.as_dict(), args.output, probe_text(report))
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def probe_text(report: ProbeReport) -> str:
    """The human form of a report (``dev`` prints it too)."""
    if not report.ok:
        return f"FAILED: {report.problem}\n"
    lines = [f"ok: key_id {report.status_key_id}, ciphertext {report.ciphertext_bytes} bytes"]
    for name, summary in report.latency_ms.items():
        lines.append(
            f"  {name:8s} p50 {summary['p50']:.3f} ms  p99 {summary['p99']:.3f} ms"
            f"  max {summary['max']:.3f} ms"
        )
    return "\n".join(lines) + "\n"
