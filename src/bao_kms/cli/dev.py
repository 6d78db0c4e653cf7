"""``dev``: an embedded OpenBao dev server and the provider on it, for a first run.

Everything it starts stops with it. On a stop signal (SIGTERM, SIGINT, SIGHUP) it drains the
provider, stops OpenBao by PID and removes its temporary directory. If it is SIGKILLed the
kernel kills OpenBao (``PR_SET_PDEATHSIG``, see :mod:`bao_kms.embedded`; that is why OpenBao
is started from this, the main, thread), and the next ``dev`` removes the directory left
behind (:mod:`._dev_workdir`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import time
from pathlib import Path

import yaml

from ..api.probe import run_probe
from ..config import load_config
from ..errors import SocketError
from ..logs import configure_logging
from ..manifests import encryption_configuration, openbao_policy
from ._arguments import socket_argument
from ._dev_workdir import create_workdir, remove_abandoned
from ._output import EXIT_CHECK_FAILED, EXIT_OK, EXIT_RUNTIME, fail
from .probe import probe_text
from .signals import SignalLatch

#: how long the provider may take to report healthy before the self-probe runs anyway
HEALTHY_TIMEOUT = 15.0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dev", help="run an embedded OpenBao dev server and the provider on it"
    )
    parser.add_argument(
        "--socket",
        type=socket_argument,
        help="socket path or unix:///path (default: in a fresh temporary directory)",
    )
    parser.add_argument("--workdir", help="directory for the dev config, token and OpenBao files")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"]
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..embedded import EmbeddedOpenBaoError

    configure_logging(args.log_level)
    with SignalLatch() as latch:
        try:
            return _dev(args, latch)
        except (EmbeddedOpenBaoError, SocketError, OSError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            fail("dev", reason)
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

    remove_abandoned()
    own_workdir = args.workdir is None
    workdir = create_workdir() if own_workdir else Path(args.workdir)
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    socket_path = Path(args.socket) if args.socket else workdir / "kms.sock"
    openbao: EmbeddedOpenBao | None = None
    provider: Provider | None = None
    try:
        openbao = EmbeddedOpenBao(workdir=workdir / "openbao")
        openbao.start()
        openbao.setup_transit("transit", "kms")
        token = openbao.create_token(openbao_policy("transit", "kms"))
        token_file = workdir / "openbao-token"
        _write_private(token_file, token)
        document = {
            # free loopback ports: a second dev, or dev beside a real provider, must not clash
            "server": {
                "socketPath": str(socket_path),
                "socketMode": "0660",
                "healthAddress": "127.0.0.1:0",
                "metricsAddress": "127.0.0.1:0",
            },
            # its own dev server on loopback: the one place plain http is chosen for the user
            "openbao": {
                "addresses": [openbao.address],
                "timeout": "2s",
                "allowInsecureHttp": True,
            },
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
        _write_private(config_file, yaml.safe_dump(document, sort_keys=False))
        provider = Provider(load_config(config_file))
        provider.start()
        deadline = time.monotonic() + HEALTHY_TIMEOUT
        while not provider.monitor.health().ok and time.monotonic() < deadline:
            if latch.received is not None:
                return EXIT_OK
            time.sleep(0.1)
        report = run_probe(str(socket_path))
        print(f"OpenBao dev server : {openbao.address} (pid {openbao.pid})")
        print(f"KMS socket         : {socket_path}")
        print(f"config             : {config_file}")
        for path, address in sorted(provider.ops.addresses.items()):
            print(f"{path:<19}: http://{address}{path}")
        print("\nEncryptionConfiguration for kube-apiserver:\n")
        print(encryption_configuration("bao-kms-dev", str(socket_path)))
        print("self-probe         :", probe_text(report), end="")
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
