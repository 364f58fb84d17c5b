#!/usr/bin/env bash
# Journeys against the truth of a real network: runs the namespace lab
# (scripts/lab: NATs at R1 and R3, loss inside R2, loss on one of two
# parallel R2-R3 links next to R3's NAT, an asymmetric 10/2 ms wire, live
# UDP export to serve) and prints the accuracy table that BENCHMARKS.md
# quotes. Needs root.
#
#   bench/journeys-accuracy.sh [path/to/hopscope]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${1:-${CARGO_TARGET_DIR:-target}/release/hopscope}"
[ -x "$BIN" ] || cargo build -q --release -p hopscope
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
KEEP=1 scripts/lab run "$BIN" >"$log" 2>&1 || { tail -40 "$log"; exit 1; }
out="$(sed -n 's/^lab: kept //p' "$log")"
drops="$(sed -n 's/^lab: nft dropped \([0-9]*\) packets inside R2, \([0-9]*\) from B.*/\1,\2/p' "$log")"
python3 scripts/lab-check.py table "$out" "$drops" 10 2
rm -rf "$out"
