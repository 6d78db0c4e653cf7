"""Regenerate the Python stubs for proto/kms/v2/api.proto into src/bao_kms/_proto/.

The include mapping makes protoc see the file as ``bao_kms/_proto/api.proto`` so the generated
modules import each other by their package path. The proto package stays ``v2``, which is what
puts ``/v2.KeyManagementService/...`` on the wire. Run: ``python proto/generate.py [OUT_ROOT]``
(grpcio-tools pinned in the ``test`` extra, so regeneration is byte-stable).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = HERE / "kms" / "v2" / "api.proto"
DEFAULT_OUT = HERE.parent / "src"


def generate(out_root: Path) -> None:
    from grpc_tools import protoc

    args = [
        "protoc",
        f"-Ibao_kms/_proto={PROTO.parent}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        str(PROTO),
    ]
    (out_root / "bao_kms" / "_proto").mkdir(parents=True, exist_ok=True)
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
