#!/usr/bin/env bash
# Root-cause accuracy on a campaign of 240 simulated incidents (random
# paths of 3-12 hops with ECMP groups, NAT and clock offsets; loss or added
# delay at a random link; telemetry-loss decoys at other exporters), each
# metered by the probe, correlated and ranked as `serve` does: the share of
# incidents whose injected link is ranked first and in the first three, and
# how many decoys were blamed for network loss. Also the time the ranking
# takes per incident. See crates/analyze/tests/rca_campaign.rs.
#
#   bench/rca-accuracy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
cargo test -q --release -p hopscope-analyze --test rca_campaign -- --ignored --nocapture campaign_of_240 2>&1 \
    | grep -E '^(rca campaign|missed)'
