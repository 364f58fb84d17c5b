#!/usr/bin/env bash
# The delay from a packet's observation to its journey being queryable:
# `hopscope demo --calm` (live exporters, the streaming correlator with its
# defaults: 10 s windows, 2 s path delay, 5 s lateness; a 2 s flush) is
# polled through the API, and each time a newer journey appears, the gap
# between now and that journey's last observation is one sample. A window's
# last packets wait the least (the window has just ended); its first wait a
# whole window more, so the samples are the best case of each window.
#
#   bench/journey-latency.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hopscope-target}"
SECONDS_RUN="${1:-120}"
PORT=39581
cargo build --release -q -p hopscope
bin="$CARGO_TARGET_DIR/release/hopscope"
data="$(mktemp -d)"
"$bin" demo --calm --duration "$((SECONDS_RUN + 5))s" --http "127.0.0.1:$PORT" --data-dir "$data" 2>/dev/null &
demo=$!
trap 'kill -INT $demo 2>/dev/null || true; wait $demo 2>/dev/null || true; rm -rf "$data"' EXIT
/usr/bin/python3 - "$PORT" "$SECONDS_RUN" <<'PY'
import datetime, json, statistics, sys, time, urllib.request
port, seconds = int(sys.argv[1]), float(sys.argv[2])
def ns(text):
    # RFC 3339 with nanoseconds, as the API writes times
    head, frac = text.rstrip("Z").split(".")
    t = datetime.datetime.fromisoformat(head).replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * 10**9 + int(frac.ljust(9, "0")[:9])
newest, samples = 0, []
end = time.time() + seconds
while time.time() < end:
    try:
        url = f"http://127.0.0.1:{port}/api/journeys?sort=time&limit=200&since=2m"
        rows = json.load(urllib.request.urlopen(url, timeout=5))["journeys"]
    except Exception:
        time.sleep(0.5)
        continue
    now = time.time_ns()
    ends = [ns(r["time_end_ns"]) for r in rows if "flow-totals" not in r["flags"]]
    if ends and max(ends) > newest:
        if newest:
            samples.append((now - max(ends)) / 1e9)
        newest = max(ends)
    time.sleep(0.2)
if not samples:
    sys.exit("no journeys appeared")
print(f"journeys queryable after their last observation: {len(samples)} windows, "
      f"min {min(samples):.1f} s, median {statistics.median(samples):.1f} s, max {max(samples):.1f} s")
PY
