#!/usr/bin/env bash
# Serial Status/Encrypt/Decrypt latency through the socket, as `probe` measures it.
# Runs `bao-kms-provider dev` (a real OpenBao dev server) once per round, alternating the
# compiled and pure codecs so warm-up and drift hit both alike; prints p50/p99 per round.
#   benchmarks/probe_latency.sh [ROUNDS_PER_CODEC=3] [CALLS=1000]
set -euo pipefail
rounds=${1:-3}
calls=${2:-1000}
work=$(mktemp -d)
trap 'kill -INT "${dev:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT

one() {
  local codec=$1 dev_env=()
  [ "$codec" = pure ] && dev_env=(BAO_KMS_NO_EXTENSIONS=1)
  rm -rf "$work/dev"
  env "${dev_env[@]}" bao-kms-provider dev --workdir "$work/dev" >"$work/dev.out" 2>&1 &
  dev=$!
  for _ in $(seq 150); do grep -q '^Serving' "$work/dev.out" 2>/dev/null && break; sleep 0.2; done
  bao-kms-provider probe --socket "$work/dev/kms.sock" --rounds "$calls" --output json \
    | python3 -c '
import json, sys
report = json.load(sys.stdin)
cells = ("{} p50 {:.3f} p99 {:.3f} ms".format(k, v["p50"], v["p99"])
         for k, v in report["latency_ms"].items())
print("{:8s} ok={}  ".format(sys.argv[1], report["ok"]) + "  ".join(cells))' "$codec"
  kill -INT "$dev"; wait "$dev" || true
}

for _ in $(seq "$rounds"); do one pure; one compiled; done
