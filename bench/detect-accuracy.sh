#!/bin/sh
# Detection accuracy over 200 labelled scenarios of the simulator
# (crates/analyze/tests/detect_campaign.rs): precision and recall per
# detection, and how many of each attack kind were found.
set -e
cd "$(dirname "$0")/.."
lscpu | grep 'Model name' || true
/usr/bin/time -f 'wall %e s, peak %M KiB' \
  cargo test --release -p hopscope-analyze --test detect_campaign -- --ignored --nocapture 2>&1 |
  grep -E 'precision|found|false alarm|per million|wall|test result'
