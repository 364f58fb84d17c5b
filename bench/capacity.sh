#!/usr/bin/env bash
# Capacity planning at scale, against numpy on the same work: a month of
# 5-minute samples (8640) in and out for 10,000 links, each link's 95th
# percentile per direction and per day (nearest rank). hopscope's figure
# is criterion's `capacity/judge_10k_links_month` (which also fits each
# link's forecast and ranks the links); numpy's the same percentiles over
# arrays of the same shape, in one process, timed after the arrays exist.
# `capacity/read_200_links_month_from_parquet` gives the cost of reading
# SNMP readings from the store, per reading.
#
#   bench/capacity.sh        (HOPSCOPE_NUMPY_PYTHON: a python with numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/hopscope-target}"
PY="${HOPSCOPE_NUMPY_PYTHON:-$CARGO_TARGET_DIR/venv-duckdb/bin/python}"
lscpu | grep "Model name"
cargo bench -q -p hopscope-analyze --bench capacity 2>&1 | grep -E "^capacity/|time:" | grep -v "change"
"$PY" - <<'PY'
import time
import numpy as np
links, per_day, days = 10_000, 288, 30
n = per_day * days
rng = np.random.default_rng(1)
hours = (np.arange(n) % per_day) / 12.0
daily = 0.55 + 0.45 * np.cos(2 * np.pi * (hours - 14.0) / 24.0)
level = 1e9 * (0.2 + 0.6 * (np.arange(links) % 97) / 97.0)
runs = []
for _ in range(3):
    inbound = level[:, None] * daily[None, :] * rng.uniform(0.9, 1.1, (links, n))
    outbound = 0.4 * inbound
    start = time.perf_counter()
    for a in (inbound, outbound):
        np.percentile(a, 95, axis=1, method="inverted_cdf")
        np.percentile(a.reshape(links, days, per_day), 95, axis=2, method="inverted_cdf")
    runs.append(time.perf_counter() - start)
print(f"numpy {np.__version__}: the same percentiles, 10,000 links x 8640 samples x 2 directions: "
      f"{min(runs):.3f} s (best of 3; {', '.join(f'{r:.3f}' for r in runs)})")
PY
