#!/usr/bin/env bash
# Collector and store benchmarks against the peers, on the same input in the
# same run (see BENCHMARKS.md for the figures and how to read them):
#
#   1. ingest: the highest UDP rate each collector stores with zero loss,
#      and its CPU seconds per million records: hopscope serve, nfcapd
#      (nfdump), nfacctd (pmacct), GoFlow2 (to a file), all fed by the same
#      paced IPFIX sender (crates/collector/examples/blast.rs, ~27 records a
#      datagram as softflowd sends them);
#   2. queries over QUERY_FLOWS stored flows: top 10 sources by bytes and the
#      full 5-tuple aggregation against nfdump, a one-hour series in 1-minute
#      buckets, and bytes on disk per flow against nfdump's compressed files.
#
# Needs nfdump, pmacct and Go (GoFlow2 is `go install`ed); sends only to
# 127.0.0.1. Environment: RATES, SECONDS_PER_RATE, QUERY_FLOWS, TOOLS, WORK,
# PHASES ("ingest query"; REUSE=1 queries the flows a previous run stored).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hopscope-target}"
RATES="${RATES:-270000 540000 810000 1080000 1620000}"
SECONDS_PER_RATE="${SECONDS_PER_RATE:-5}"
QUERY_FLOWS="${QUERY_FLOWS:-10000000}"
TOOLS="${TOOLS:-hopscope nfcapd nfacctd goflow2}"
PHASES="${PHASES:-ingest query}"
WORK="${WORK:-/var/tmp/hopscope-bench}"
PORT=39555
HTTP=39556

cargo build --release -q -p hopscope
cargo build --release -q -p hopscope-collector --example blast
HS="$CARGO_TARGET_DIR/release/hopscope"
BLAST="$CARGO_TARGET_DIR/release/examples/blast"
GOFLOW2="${GOFLOW2:-$(go env GOPATH)/bin/goflow2}"
if [[ " $TOOLS " == *" goflow2 "* ]] && [ ! -x "$GOFLOW2" ]; then
    go install github.com/netsampler/goflow2/v2/cmd/goflow2@v2.2.6
fi
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }
mkdir -p "$WORK"

# start_<tool> DIR: starts the collector on 127.0.0.1:$PORT under /usr/bin/time
start_hopscope() {
    "$TIME" -f "%U %S %M" -o "$1/time" "$HS" serve --data-dir "$1/data" --udp "127.0.0.1:$PORT" \
        --tcp none --http "127.0.0.1:$HTTP" --flush-interval 2s 2>"$1/log" &
}
count_hopscope() {
    "$HS" query --data-dir "$1/data" -a flows --csv --source raw | tail -n 1
}
start_nfcapd() {
    mkdir -p "$1/data"
    "$TIME" -f "%U %S %M" -o "$1/time" nfcapd -b 127.0.0.1 -p "$PORT" -w "$1/data" -t 3600 -B 33554432 >"$1/log" 2>&1 &
}
count_nfcapd() {
    nfdump -R "$1/data" -o csv 2>/dev/null | awk -F, 'found {print $1; exit} /^flows,bytes/ {found=1}'
}
start_nfacctd() {
    mkdir -p "$1/data"
    cat >"$1/nfacctd.conf" <<EOF
daemonize: false
nfacctd_ip: 127.0.0.1
nfacctd_port: $PORT
nfacctd_pipe_size: 33554432
plugins: print
print_output: csv
print_output_file: $1/data/flows-%s.csv
print_refresh_time: 2
print_cache_entries: 1000003
aggregate: src_host, dst_host, src_port, dst_port, proto
EOF
    "$TIME" -f "%U %S %M" -o "$1/time" nfacctd -f "$1/nfacctd.conf" >"$1/log" 2>&1 &
}
count_nfacctd() {
    # one line per unique 5-tuple, and every flow sent is unique; headers out
    cat "$1"/data/flows-*.csv 2>/dev/null | grep -vc '^SRC_IP' || true
}
start_goflow2() {
    mkdir -p "$1/data"
    "$TIME" -f "%U %S %M" -o "$1/time" "$GOFLOW2" -listen "netflow://127.0.0.1:$PORT" -format json \
        -transport file -transport.file "$1/data/flows.json" -addr 127.0.0.1:$HTTP >"$1/log" 2>&1 &
}
count_goflow2() {
    wc -l <"$1/data/flows.json"
}

# the pid of the collector under /usr/bin/time
collector_pid() { pgrep -P "$1" | head -n 1; }

# stop TIMER_PID: TERM to the collector, and after 10 s KILL to it and its
# children (nfacctd's print plugin outlives a TERM to its core process)
stop_collector() {
    local timer=$1 pid
    pid=$(collector_pid "$timer")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 20); do
        kill -0 "$timer" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$timer" 2>/dev/null; then
        pkill -KILL -P "$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$timer" 2>/dev/null || true
}

ingest() {
    local tool=$1 rate=$2 dir="$WORK/ingest/$1-$2"
    rm -rf "$dir"; mkdir -p "$dir"
    "start_$tool" "$dir"
    local timer=$!
    sleep 2
    local records=$((rate * SECONDS_PER_RATE))
    "$BLAST" --to "127.0.0.1:$PORT" --records "$records" --rate "$rate" --seed "$rate" >"$dir/sent"
    sleep 4 # let each collector drain its buffers and write
    stop_collector "$timer"
    local stored
    stored=$("count_$tool" "$dir")
    read -r user sys rss < <(tail -n 1 "$dir/time")
    local cpu_per_m
    cpu_per_m=$(awk -v u="$user" -v s="$sys" -v n="$stored" 'BEGIN { if (n > 0) printf "%.2f", (u + s) / n * 1e6; else print "-" }')
    printf "%-9s %9d rec/s  sent %9d  stored %9d  lost %8d  cpu %6s s/M records  peak %5d MiB\n" \
        "$tool" "$rate" "$records" "$stored" $((records - stored)) "$cpu_per_m" $((rss / 1024)) | tee -a "$WORK/ingest.txt"
    [ "$stored" -eq "$records" ]
}

if [[ " $PHASES " == *" ingest "* ]]; then
echo "== 1. ingest to disk, zero loss ($SECONDS_PER_RATE s per rate)"
: >"$WORK/ingest.txt"
for tool in $TOOLS; do
    best=0
    for rate in $RATES; do
        if ingest "$tool" "$rate"; then best=$rate; else break; fi
    done
    echo "$tool: highest zero-loss rate $best records/s" | tee -a "$WORK/ingest.txt"
done
fi
[[ " $PHASES " == *" query "* ]] || exit 0

echo "== 2. queries over $QUERY_FLOWS flows (hopscope store vs nfdump files)"
q="$WORK/query"
if [ "${REUSE:-0}" != 1 ]; then
rm -rf "$q"; mkdir -p "$q/hs" "$q/nf/data"
"$HS" serve --data-dir "$q/hs/data" --udp "127.0.0.1:$PORT" --tcp none --http none --flush-interval 5s 2>/dev/null &
hs=$!
# nfdump's files LZ4-compressed (-y), its fast compression
nfcapd -b 127.0.0.1 -p $((PORT + 2)) -w "$q/nf/data" -t 3600 -B 33554432 -y >/dev/null 2>&1 &
nf=$!
sleep 2
# the same flows to both, at a rate both store without loss
"$BLAST" --to "127.0.0.1:$PORT" --records "$QUERY_FLOWS" --rate 300000 --seed 7 &
sender=$!
"$BLAST" --to "127.0.0.1:$((PORT + 2))" --records "$QUERY_FLOWS" --rate 300000 --seed 7
wait "$sender" 
sleep 5
kill -TERM "$hs" "$nf"; wait "$hs" "$nf" 2>/dev/null || true
echo "stored: hopscope $(count_hopscope "$q/hs"), nfdump $(count_nfcapd "$q/nf")" | tee "$WORK/query.txt"
fi

timed() { # label, command...
    local label=$1; shift
    "$TIME" -f "%e %M" -o "$q/t" "$@" >"$q/out-${label//[ \/]/_}" 2>&1
    read -r secs rss <"$q/t"
    printf "%-28s %7.2f s  %6d MiB\n" "$label" "$secs" $((rss / 1024)) | tee -a "$WORK/query.txt"
}
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
for round in 1 2; do
    echo "-- round $round"
    timed "nfdump top10 srcip/bytes" nfdump -R "$q/nf/data" -s srcip/bytes -n 10
    timed "hopscope top10 src/bytes" "$HS" query --data-dir "$q/hs/data" -g src_addr -a bytes -n 10
    timed "nfdump 5-tuple aggregate" nfdump -R "$q/nf/data" -A srcip,dstip,srcport,dstport,proto -O bytes -n 10
    timed "hopscope 5-tuple aggregate" "$HS" query --data-dir "$q/hs/data" -g src_addr,dst_addr,src_port,dst_port,proto -a bytes -n 10
    timed "hopscope 1h series, 1m" "$HS" query --data-dir "$q/hs/data" --bucket 1m -a flows,bytes,bps
done
hs_bytes=$(du -sb "$q/hs/data/flows" | cut -f1)
nf_bytes=$(du -sb "$q/nf/data" | cut -f1)
awk -v h="$hs_bytes" -v n="$nf_bytes" -v f="$QUERY_FLOWS" 'BEGIN {
    printf "bytes per flow: hopscope %.1f, nfdump %.1f (ratio %.2f)\n", h / f, n / f, h / n }' | tee -a "$WORK/query.txt"
