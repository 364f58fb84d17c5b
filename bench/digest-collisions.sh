#!/usr/bin/env bash
# Digest collisions per profile and payload prefix, on captures (the CESNET
# FlowTest set, one point of the journeys lab's recorded run: the other
# points saw the same packets, and the interop synthetic capture) and on
# adversarial streams (NTP, DNS: constant payload prefixes, IP id 0).
# Prints the table that BENCHMARKS.md quotes.
#
#   bench/digest-collisions.sh
set -euo pipefail
cd "$(dirname "$0")/.."
data=tests/data
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
cargo run -q --release -p hopscope-probe --example digest_collisions -- \
    "$data"/flowtest/pcap/*.pcap "$data"/lab-run-loss-r2/a_a-r1.pcap \
    "$data"/interop/synthetic.pcap
