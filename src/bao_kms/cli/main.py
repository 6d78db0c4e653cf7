"""The ``bao-kms-provider`` command: serve, dev, probe, config, version.

Exit codes (stable, for scripts and systemd): 0 ok, 1 error, 2 usage, 3 config invalid,
4 check failed, 5 runtime failure. Expected failures print one clear line to stderr; a
traceback means a bug.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import orjson
import yaml

from .. import _codec
from .._version import __version__
from ..api.probe import ProbeReport, run_probe
from ..config import ENV_CONFIG, Config, load_config, parse_duration
from ..errors import ConfigError, SocketError
from ..logs import configure_logging
from ..manifests import encryption_configuration, openbao_policy

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_CHECK_FAILED = 4
EXIT_RUNTIME = 5

log = logging.getLogger("bao_kms.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 already; keep it short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _emit(data: dict[str, Any], output: str, text: str) -> None:
    if output == "json":
        sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(text)
    sys.stdout.flush()


class SignalLatch:
    """SIGTERM/SIGINT set a flag instead of killing the process; installed *before* start-up
    so a signal that arrives while binding or probing still leads to a clean stop.

    The handler runs in the main thread between any two bytecodes, possibly while that thread
    holds a lock (inside ``threading.Event``, ``logging``, or a first run of this very
    handler), so it takes no lock at all: plain assignments, ``os.write``, ``os._exit``.
    ``Event.set()`` here once deadlocked a provider that got the same signal twice.
    """

    #: duplicates of one signal (a process group, a supervisor forwarding it) arrive within
    #: this window and count once; a later second signal means "stop now, skip the drain"
    DOUBLE_SIGNAL_WINDOW = 1.0
    POLL_SECONDS = 0.1

    def __init__(self) -> None:
        self.received: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalLatch:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _handle(self, signum: int, frame: object) -> None:
        now = time.monotonic()
        if self.received is None:
            self._first_at = now
            self.received = signum
            return
        if now - self._first_at > self.DOUBLE_SIGNAL_WINDOW:
            os.write(2, _FORCED_EXIT_LINE)
            os._exit(EXIT_RUNTIME)  # a socket left behind is reclaimed as stale next start

    def wait(self) -> int:
        """Block until a signal arrives (at once if one already did); return its number."""
        while self.received is None:
            time.sleep(self.POLL_SECONDS)  # the handler interrupts it; no lock to share
        return self.received


_FORCED_EXIT_LINE = (
    b'{"level":"warning","logger":"bao_kms.cli","msg":"second signal: exiting without draining"}\n'
)


# --- serve -------------------------------------------------------------------------------------


def _serve(config: Config) -> int:
    from ..provider import Provider  # grpc and urllib3 only for commands that serve

    configure_logging(config.logging.level)
    with SignalLatch() as latch:
        try:
            provider = Provider(config)
            provider.start()
        except (SocketError, ConfigError) as error:
            log.error("cannot serve", extra={"error": str(error)})
            print(f"bao-kms-provider: {error}", file=sys.stderr)
            return EXIT_CONFIG if isinstance(error, ConfigError) else EXIT_RUNTIME
        log.info("started", extra={"version": __version__, "codec": _codec.IMPLEMENTATION})
        signum = latch.wait()
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        provider.stop()
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        print(
            f"bao-kms-provider serve: --config FILE (or {ENV_CONFIG}) is required", file=sys.stderr
        )
        return EXIT_USAGE
    config = load_config(path)
    return _serve(config)


# --- dev ---------------------------------------------------------------------------------------


def cmd_dev(args: argparse.Namespace) -> int:
    from ..embedded import EmbeddedOpenBaoError

    configure_logging(args.log_level)
    with SignalLatch() as latch:
        try:
            return _dev(args, latch)
        except (EmbeddedOpenBaoError, SocketError, OSError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            print(f"bao-kms-provider dev: {reason}", file=sys.stderr)
            return EXIT_RUNTIME


def _write_private(path: Path, text: str) -> None:
    """Write a secret file readable by us only, even if a file by that name already exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def _dev(args: argparse.Namespace, latch: SignalLatch) -> int:
    from ..embedded import EmbeddedOpenBao
    from ..provider import Provider

    own_workdir = args.workdir is None
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bao-kms-dev-"))
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket_path = Path(args.socket).absolute() if args.socket else workdir / "kms.sock"
    openbao: EmbeddedOpenBao | None = None
    provider: Provider | None = None
    try:
        openbao = EmbeddedOpenBao("dev", workdir=workdir / "openbao")
        openbao.start()
        openbao.setup_transit("transit", "kms")
        token = openbao.create_token(openbao_policy("transit", "kms"))
        token_file = workdir / "openbao-token"
        _write_private(token_file, token)
        document = {
            "server": {"socketPath": str(socket_path), "socketMode": "0660"},
            "openbao": {"addresses": [openbao.address], "timeout": "2s"},
            "auth": {"method": "token", "token": {"file": str(token_file)}},
            "identity": {
                "providerName": "bao-kms-dev",
                "clusterId": "dev-cluster",
                "openbaoInstanceId": "dev-openbao",
                "transitMountId": "transit-dev",
                "keyLineageId": "dev-" + secrets.token_hex(8),
            },
            "transit": {"mountPath": "transit", "keyName": "kms"},
            "status": {"probeInterval": "10s", "deepProbeInterval": "1m", "maxStaleness": "1m"},
            "logging": {"level": args.log_level},
        }
        config_file = workdir / "config.yaml"
        config_file.write_text(yaml.safe_dump(document, sort_keys=False))
        provider = Provider(load_config(config_file))
        provider.start()
        deadline = time.monotonic() + 15
        while not provider.monitor.health().ok and time.monotonic() < deadline:
            if latch.received is not None:
                return EXIT_OK
            time.sleep(0.1)
        report = run_probe(str(socket_path))
        print(f"OpenBao dev server : {openbao.address} (pid {openbao.pid})")
        print(f"KMS socket         : {socket_path}")
        print(f"config             : {config_file}")
        print("\nEncryptionConfiguration for kube-apiserver:\n")
        print(encryption_configuration("bao-kms-dev", str(socket_path)))
        print("self-probe         :", _probe_text(report), end="")
        if not report.ok:
            return EXIT_CHECK_FAILED
        print("\nServing. Press Ctrl-C (or send SIGTERM) to stop.", flush=True)
        latch.wait()
        return EXIT_OK
    finally:
        if provider is not None:
            provider.stop()
        if openbao is not None:
            openbao.close()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)


# --- probe -------------------------------------------------------------------------------------


def _probe_text(report: ProbeReport) -> str:
    if not report.ok:
        return f"FAILED: {report.problem}\n"
    lines = [f"ok: key_id {report.status_key_id}, ciphertext {report.ciphertext_bytes} bytes"]
    for name, summary in report.latency_ms.items():
        lines.append(
            f"  {name:8s} p50 {summary['p50']:.3f} ms  p99 {summary['p99']:.3f} ms"
            f"  max {summary['max']:.3f} ms"
        )
    return "\n".join(lines) + "\n"


def cmd_probe(args: argparse.Namespace) -> int:
    report = run_probe(args.socket, timeout=args.timeout, rounds=args.rounds)
    _emit(report.as_dict(), args.output, _probe_text(report))
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


# --- config / version ----------------------------------------------------------------------------


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "schema":
        schema = Config.model_json_schema(by_alias=True)
        sys.stdout.write(orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        print(
            f"bao-kms-provider config check: --config FILE (or {ENV_CONFIG}) is required",
            file=sys.stderr,
        )
        return EXIT_USAGE
    config = load_config(path)
    _emit(
        {"valid": True, "config": config.model_dump(mode="json", by_alias=True)},
        args.output,
        f"{path}: valid\n",
    )
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    import grpc

    data = {
        "version": __version__,
        "codec": _codec.IMPLEMENTATION,
        "grpcio": grpc.__version__,
        "python": sys.version.split()[0],
    }
    _emit(data, args.output, f"bao-kms-provider {__version__} (codec: {_codec.IMPLEMENTATION})\n")
    return EXIT_OK


def _seconds(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("must be a whole number of at least 1")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bao-kms-provider", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="serve KMS v2 on the configured Unix socket")
    serve.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="run an embedded OpenBao dev server and the provider on it")
    dev.add_argument("--socket", help="socket path (default: in a fresh temporary directory)")
    dev.add_argument("--workdir", help="directory for the dev config, token and OpenBao files")
    dev.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    dev.set_defaults(func=cmd_dev)

    probe = sub.add_parser("probe", help="live Status/Encrypt/Decrypt round trip via the socket")
    probe.add_argument("--socket", required=True)
    probe.add_argument("--timeout", type=_seconds, default=3.0, help="per call (default 3s)")
    probe.add_argument(
        "--rounds", type=_positive, default=1, help="round trips, for latency figures"
    )
    probe.add_argument("--output", choices=["text", "json"], default="text")
    probe.set_defaults(func=cmd_probe)

    config = sub.add_parser("config", help="check a config file or print its JSON Schema")
    config.add_argument("action", choices=["check", "schema"])
    config.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    config.add_argument("--output", choices=["text", "json"], default="text")
    config.set_defaults(func=cmd_config)

    version = sub.add_parser("version", help="print the version")
    version.add_argument("--output", choices=["text", "json"], default="text")
    version.set_defaults(func=cmd_version)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as error:
        print(f"bao-kms-provider: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader went away (`... | head`): not a bug; keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - a bug: say so without its message or a traceback
        if not logging.getLogger("bao_kms").handlers:
            configure_logging("error")
        log.error(
            "internal error",
            extra={
                "error_type": type(error).__name__,
                "stack": "".join(traceback.format_tb(error.__traceback__)),
            },
        )
        print(
            f"bao-kms-provider: internal error ({type(error).__name__}); please report it",
            file=sys.stderr,
        )
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
