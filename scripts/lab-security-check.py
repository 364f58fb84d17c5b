#!/usr/bin/env python3
"""The security lab's judge (scripts/lab-security).

watch URL OUT STOP: polls /api/detections, writing when each (rule,
subject) first fired (wall clock) to OUT, until the file STOP exists.

check LIVE RECOMPUTED ATTACKS SEEN STATUS: every attack raised exactly one
alert of its rule naming its subject, nothing else fired, the recomputation
over the store found the same, and prints each alert's delay from its
attack's start."""

import json
import os
import sys
import time
import urllib.request


def watch(url, out, stop):
    seen = {}
    while not os.path.exists(stop):
        try:
            with urllib.request.urlopen(url + "/api/detections?since=1h", timeout=2) as r:
                d = json.load(r)
            for e in d["events"]:
                if e["state"] == "firing":
                    key = e["rule"] + " " + e["labels"]["subject"]
                    if key not in seen:
                        seen[key] = time.time()
                        with open(out, "w") as f:
                            json.dump(seen, f)
        except Exception:
            pass
        time.sleep(0.5)


def check(live_path, recomputed_path, attacks_path, seen_path, status_path):
    live = json.load(open(live_path))
    recomputed = json.load(open(recomputed_path))
    attacks = {}
    for line in open(attacks_path):
        what, at = line.rsplit(" ", 1)
        attacks[what] = float(at)
    seen = json.load(open(seen_path))
    fired = [e for e in live["events"] if e["state"] == "firing"]
    keys = sorted(e["rule"] + " " + e["labels"]["subject"] for e in fired)
    for e in fired:
        print(f"lab: {e['rule']}: {e['summary']}")
    failures = []
    if keys != sorted(attacks):
        failures.append(f"alerts {keys}, attacks {sorted(attacks)}")
    again = sorted(
        e["rule"] + " " + e["labels"]["subject"]
        for e in recomputed["events"]
        if e["state"] == "firing"
    )
    if again != sorted(attacks):
        failures.append(f"recomputed {again}, attacks {sorted(attacks)}")
    for what, at in sorted(attacks.items(), key=lambda kv: kv[1]):
        if what in seen:
            print(f"lab: {what}: in the API {seen[what] - at:.1f} s after the attack began")
    stats = json.load(open(status_path)).get("detection", {}).get("stats", {})
    print(f"lab: the detector read {stats.get('records')} flow records")
    if failures:
        for f in failures:
            print("lab: FAILED:", f, file=sys.stderr)
        sys.exit(1)
    print(f"lab: {len(attacks)} attacks, {len(keys)} alerts, each naming its source or target")


if __name__ == "__main__":
    if sys.argv[1] == "watch":
        watch(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        check(*sys.argv[2:7])
