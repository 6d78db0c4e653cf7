"""``init``: write a node's set-up files from defaults or a small values file.

Never overwrites (every target is checked before the first is written, and each is created
with ``O_EXCL``) and never contacts OpenBao: the set-up script it writes is for an OpenBao
administrator to run. Identity labels not given are generated here, once.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..manifests import render_bundle
from ..manifests.values import load_values
from ._output import EXIT_ERROR, EXIT_OK, add_output_option, emit, fail


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write config, EncryptionConfigurations, policy, static pod and systemd unit",
    )
    parser.add_argument("--out", required=True, help="directory to write into (made if missing)")
    parser.add_argument("--values", help="YAML values file (see docs/install-kubeadm.md)")
    add_output_option(parser)
    parser.set_defaults(run=run)


def _write_new(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what the file is for
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)


def run(args: argparse.Namespace) -> int:
    values = load_values(args.values).with_identity()  # ConfigError: exit 3
    files = render_bundle(values)  # ConfigError when the result would not load: exit 3
    out = Path(args.out)
    existing = sorted(name for name in files if os.path.lexists(out / name))
    if existing:
        fail("init", f"refusing to overwrite existing files in {out}: {', '.join(existing)}")
        return EXIT_ERROR
    written = []
    try:
        for name, rendered in files.items():
            target = out / name
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            _write_new(target, rendered.text, rendered.mode)
            written.append(name)
    except OSError as error:
        fail("init", f"cannot write {out / name}: {error.strerror}")
        return EXIT_ERROR
    width = max(map(len, written))
    lines = [f"wrote {len(written)} files to {out}:"]
    lines += [f"  {name:{width}}  -> {files[name].destination}" for name in written]
    lines.append(
        "identity labels were generated once and are fixed forever: copy config.yaml to "
        "every control-plane node, never re-run init per node."
    )
    emit(
        {
            "out": str(out),
            "files": {name: files[name].destination for name in written},
        },
        args.output,
        "\n".join(lines) + "\n",
    )
    return EXIT_OK
