#!/usr/bin/env bash
# Metering throughput: hopscope probe against softflowd and nfpcapd on the
# same pcap in the same run, in packets per CPU-second (user + system), and
# the ratios. Also the flow cache's memory per active flow.
#
#   bench/probe.sh [PACKETS] [FLOWS]      (default 1000000 packets, 100000 flows; ROUNDS=5)
#
# Needs softflowd and nfdump (Debian packages); installs them if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKETS="${1:-1000000}"
FLOWS="${2:-100000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="$CARGO_TARGET_DIR/bench-probe"
mkdir -p "$OUT"

for tool in softflowd nfpcapd; do
    if ! command -v "$tool" >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq softflowd nfdump time >/dev/null
    fi
done

cargo build --release -q -p hopscope
cargo build --release -q -p hopscope-probe --examples
BIN="$CARGO_TARGET_DIR/release"
PCAP="$OUT/synthetic-$PACKETS-$FLOWS.pcap"
[ -f "$PCAP" ] || "$BIN/examples/make_pcap" "$PCAP" "$PACKETS" "$FLOWS"

# a UDP sink on loopback for the exporters
PORT=$((40000 + RANDOM % 10000))
python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(('127.0.0.1', $PORT))
while True:
    s.recv(65535)
" &
SINK=$!
trap 'kill $SINK 2>/dev/null || true' EXIT
sleep 0.5

# cpu_seconds NAME COMMAND...: runs it, prints user+sys CPU seconds and peak RSS (KiB)
cpu_seconds() {
    local name=$1; shift
    /usr/bin/time -f "%U %S %M" -o "$OUT/$name.time" "$@" >"$OUT/$name.log" 2>&1
    awk '{ printf "%.3f %d\n", $1 + $2, $3 }' "$OUT/$name.time"
}

# Warm the page cache once so that no tool pays for reading the disk, then
# run the three tools in turn, ROUNDS times, and keep each tool's median:
# a neighbour's burst on this shared machine then skews one round, not the figure.
cat "$PCAP" >/dev/null
ROUNDS="${ROUNDS:-5}"
: >"$OUT/rounds.txt"
for round in $(seq "$ROUNDS"); do
    read -r HS HS_RSS < <(cpu_seconds hopscope "$BIN/hopscope" probe --pcap "$PCAP" \
        --export "udp://127.0.0.1:$PORT" --select 1/100 --active-timeout 3600s --idle-timeout 3600s)
    read -r SF SF_RSS < <(cpu_seconds softflowd softflowd -d -a -c none -r "$PCAP" \
        -n "127.0.0.1:$PORT" -v 10 -m 262144 -t maxlife=3600)
    rm -rf "$OUT/nfpcapd" && mkdir -p "$OUT/nfpcapd"
    read -r NF NF_RSS < <(cpu_seconds nfpcapd nfpcapd -r "$PCAP" -w "$OUT/nfpcapd" -e 3600,3600)
    echo "$round $HS $HS_RSS $SF $SF_RSS $NF $NF_RSS" | tee -a "$OUT/rounds.txt"
done
# median of column N of the rounds
median() { awk -v c="$1" '{ print $c }' "$OUT/rounds.txt" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
HS=$(median 2) HS_RSS=$(median 3) SF=$(median 4) SF_RSS=$(median 5) NF=$(median 6) NF_RSS=$(median 7)

rate() { awk -v p="$PACKETS" -v s="$1" 'BEGIN { printf "%.0f", p / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
echo "pcap: $PACKETS packets, $FLOWS flows ($PCAP); medians of $ROUNDS rounds"
printf "%-22s %10s %16s %10s\n" tool cpu_s packets/cpu_s peak_rss_kb
printf "%-22s %10s %16s %10s\n" "hopscope probe (1/100)" "$HS" "$(rate "$HS")" "$HS_RSS"
printf "%-22s %10s %16s %10s\n" "softflowd -r" "$SF" "$(rate "$SF")" "$SF_RSS"
printf "%-22s %10s %16s %10s\n" "nfpcapd -r" "$NF" "$(rate "$NF")" "$NF_RSS"
echo "ratio hopscope/softflowd: $(ratio "$HS" "$SF")x   hopscope/nfpcapd: $(ratio "$HS" "$NF")x"
# the same ratio round by round, to show its spread
awk '{ printf "round %d: %.2fx softflowd, %.2fx nfpcapd\n", $1, $4 / $2, $6 / $2 }' "$OUT/rounds.txt"
grep -h "frames read" "$OUT/hopscope.log" || true
"$BIN/examples/cache_memory" 1000000
