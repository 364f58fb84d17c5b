#!/usr/bin/env python3
"""Checks what hopscope made of the journeys lab against its truth (the nft
drop counters in R2 and on R3's r3-r2b member, the relay's delays, the
NATs at R1 and R3, the two R2-R3 links). Run by scripts/lab:

  lab-check.py live SEGMENTS.json R2_DROPS,MEMBER_DROPS DELAY_MS BACK_MS POINT...
      the live serve's /api/journeys/segments: points named by their
      probes, one-way delays with the configured 1 us bound, each loss on
      its segment on both bases, flow records joined across both NATs, the
      two links one set of parallel paths
  lab-check.py rebuilt SEGMENTS.json R2_DROPS,MEMBER_DROPS DELAY_MS BACK_MS ESTIMATED.json JOURNEYS.jsonl
      `hopscope journeys` over the same store: the same from the clocks the
      probes announced; with --estimate-clocks, estimates whose bound holds
      the truth and an exact round trip; NAT at R1 and R3, hop order both ways
  lab-check.py table OUT R2_DROPS,MEMBER_DROPS DELAY_MS BACK_MS
      the accuracy table of a kept run (bench/journeys-accuracy.sh)
"""
import json
import re
import sys

failed = 0


def check(ok, what):
    global failed
    print(("ok   " if ok else "FAIL ") + what)
    failed += not ok


# R2 drops in both directions, whichever link to R3 a flow takes
INSIDE_R2 = {(a, b) for x in ("r2:r2-r3", "r2:r2-r3b") for (a, b) in (("r2:r2-r1", x), (x, "r2:r2-r1"))}
# R3 drops from B into the r3-r2b link only
INTO_MEMBER = {("r3:r3-b", "r3:r3-r2b")}
FORWARD_WIRE, BACK_WIRE = ("r1:r1-r2", "r2:r2-r1"), ("r2:r2-r1", "r1:r1-r2")
MEMBERS = (["r2:r2-r3", "r3:r3-r2"], ["r2:r2-r3b", "r3:r3-r2b"])


def loss(where, segments, drops):
    """Both bases count every drop on its segment and none elsewhere:
    packets (every forwarded packet selected, 1/1) and whole-flow totals
    (the probes' flow records compared, joined across both NATs)."""
    for truth_name, lossy, dropped in (("inside R2", INSIDE_R2, drops[0]),
                                       ("from B into r3-r2b", INTO_MEMBER, drops[1])):
        check(dropped > 0, f"nft dropped {dropped} packets {truth_name}")
        for basis in ("packets", "flow totals"):
            mine = [s for s in segments if s["basis"] == basis and (s["from"], s["to"]) in lossy]
            lost = sum(s["lost"] for s in mine)
            # give or take packets of flows too short to follow across two points
            check(abs(lost - dropped) <= max(2, dropped // 20),
                  f"{where}, {basis}: lost {truth_name}: {lost}, nft counter: {dropped}")
            sent = sum(s["sent"] for s in mine)
            for s in mine:
                truth = dropped / max(1, sent)
                check(s["ratio_low"] <= truth * 1.5 and s["ratio_high"] >= truth / 1.5,
                      f"{where}, {basis}: {s['from']} > {s['to']}: {s['lost']}/{s['sent']}, "
                      f"interval [{s['ratio_low']:.4f}, {s['ratio_high']:.4f}] near {truth:.4f}")
    for basis in ("packets", "flow totals"):
        mine = [s for s in segments if s["basis"] == basis]
        elsewhere = [s for s in mine if (s["from"], s["to"]) not in INSIDE_R2 | INTO_MEMBER and s["lost"] > 0]
        check(not elsewhere,
              f"{where}, {basis}: no loss elsewhere: {[(s['from'], s['to'], s['lost']) for s in elsewhere]}")
        pairs = {(s["from"], s["to"]) for s in mine if s["sent"] > 0}
        across = ({p for p in pairs if p[1] == "r3:r3-b"}, {p for p in pairs if p[0] == "r3:r3-b"})
        check(all(across), f"{where}, {basis}: followed across R3's NAT both ways: {sorted(across[0] | across[1])}")


def parallel(where, pooled):
    """The two R2-R3 links are one set of parallel paths each way, on each
    basis, and R3's drop into r3-r2b shows on that member only."""
    for basis in ("packets", "flow totals"):
        sets = {(e["fork"], e["join"]): e for e in pooled["ecmp"] if e["basis"] == basis}
        forward, back = sets.get(("r2:r2-r1", "r3:r3-b")), sets.get(("r3:r3-b", "r2:r2-r1"))
        vias = lambda e: sorted(m["via"] for m in e["members"]) if e else None
        check(vias(forward) == sorted(MEMBERS),
              f"{where}, {basis}: parallel paths r2:r2-r1 > r3:r3-b via {vias(forward)}")
        check(vias(back) == sorted([list(reversed(m)) for m in MEMBERS]),
              f"{where}, {basis}: parallel paths r3:r3-b > r2:r2-r1 via {vias(back)}")
        if back and len(back["members"]) == 2:
            a, b = sorted(back["members"], key=lambda m: m["via"])  # via r3-r2, via r3-r2b
            # point estimates: few flows may take a member, so intervals are wide
            check(b["ratio"] > a["ratio"] + 0.01,
                  f"{where}, {basis}: the lossy member stands out: via {a['via'][0]} {a['lost']}/{a['sent']}, "
                  f"via {b['via'][0]} {b['lost']}/{b['sent']}")


def packet_segments(segments):
    return {(s["from"], s["to"]): s for s in segments
            if s["basis"] == "packets" and s["delay_median_ns"] is not None}


def measured(where, segments, delay_ms, back_ms, bound_ns):
    """One clock: each direction's own delay, measured, with the clocks' bound."""
    by = packet_segments(segments)
    for pair, truth_ms in ((FORWARD_WIRE, delay_ms), (BACK_WIRE, back_ms)):
        s = by.get(pair)
        d = s and s["delay_median_ns"] / 1e6
        check(s is not None and s["delay_kind"] == "one-way" and s["delay_bound_ns"] == bound_ns
              and truth_ms * 0.95 <= d <= truth_ms * 1.3 + 0.3,
              f"{where}: {pair[0]} > {pair[1]}: {s and s['delay_kind']} (bound {s and s['delay_bound_ns']} ns) "
              f"median {d} ms, truth {truth_ms} ms")
    for pair, s in by.items():
        if pair not in (FORWARD_WIRE, BACK_WIRE):
            check(s["delay_median_ns"] < 2e6,
                  f"{where}: {pair[0]} > {pair[1]}: median {s['delay_median_ns'] / 1e6:.3f} ms (no added delay)")


def estimated(where, segments, delay_ms, back_ms):
    """Offsets estimated from both directions: the split is symmetric, it
    must say so, with a bound that holds the truth, and the round trip
    stays exact."""
    by = packet_segments(segments)
    for pair, truth_ms in ((FORWARD_WIRE, delay_ms), (BACK_WIRE, back_ms)):
        s = by.get(pair)
        ok = s is not None and s["delay_kind"] == "estimated" and s["delay_bound_ns"] is not None
        d = s and s["delay_median_ns"] / 1e6
        check(ok and abs(d - truth_ms) <= s["delay_bound_ns"] / 1e6 + 0.3,
              f"{where}: {pair[0]} > {pair[1]}: {s and s['delay_kind']} median {d} ms "
              f"± {s and (s['delay_bound_ns'] or 0) / 1e6} ms, truth {truth_ms} ms")
        rtt = s and s["rtt_median_ns"]
        check(rtt is not None and (delay_ms + back_ms) * 0.95 <= rtt / 1e6 <= (delay_ms + back_ms) * 1.3 + 0.5,
              f"{where}: round trip over {pair[0]} > {pair[1]}: {rtt and rtt / 1e6} ms, truth {delay_ms + back_ms} ms")


def between_a_and_b(journeys):
    """The journeys of the lab's traffic between A and B: not the probes'
    own IPFIX to the collector (UDP to port 4739), which a probe sees
    leave, nor R3's datagram a second to B (port 7001), seen at r3-b alone."""
    port = lambda j: j["tuple"].split(" > ")[1].split(" ")[0].rsplit(":", 1)[-1]
    return [j for j in journeys if port(j) not in ("4739", "7001")]


def nat_and_order(journeys):
    forwards = {("r1:r1-a", "r1:r1-r2", "r2:r2-r1", *m, "r3:r3-b") for m in MEMBERS}
    traffic = between_a_and_b(journeys)
    for basis, of_basis in (("packets", lambda j: "flow-totals" not in j["flags"]),
                            ("flow totals", lambda j: "flow-totals" in j["flags"])):
        mine = [j for j in traffic if of_basis(j)]
        nat = [t for j in mine for t in j.get("nat", [])]
        at = {t["at"] for t in nat}
        check(at and at <= {"r1:r1-a", "r1:r1-r2", "r3:r3-b", "r3:r3-r2", "r3:r3-r2b"}
              and any(a.startswith("r1:") for a in at) and any(a.startswith("r3:") for a in at),
              f"{basis}: NAT seen at R1 and R3 only: {sorted(at)}")
        for router, address in (("R1's R2-side", "198.18.12.1"), ("R3's B-side", "198.18.2.1")):
            check(any(address in t["after"] or address in t["before"] for t in nat),
                  f"{basis}: a translation uses {router} address {address}")
        whole = [j for j in mine if len(j["hops"]) == 6]
        # a window boundary may cut a flow so that a piece holds a packet or
        # two, all of them dropped by the nft rule inside R2: that piece
        # ends at R2's ingress (the pooled segments count its loss)
        cut_short = [j for j in mine if len(j["hops"]) == 3 and j["packets"] <= 3
                     and all(p["name"].startswith("r2:") for p in j["hops"][-1]["points"])]
        check(len(whole) + len(cut_short) == len(mine) and len(cut_short) <= 2,
              f"{basis}: every journey from A to B or back, the pings' too: "
              f"{len(whole)} of {len(mine)} cross all six points, {len(cut_short)} lost every packet on the way")
        paths = {tuple(p["name"] for h in j["hops"] for p in h["points"]) for j in whole}
        check(paths & forwards and {tuple(reversed(p)) for p in paths} & forwards,
              f"{basis}: hops ordered A -> B and B -> A")


def root_cause(report):
    """`hopscope rca` over the run: every segment it blames is one where
    nftables dropped packets (inside R2, or from B into the r3-r2b member),
    both places are among the first three, and nothing else scores."""
    injected = lambda s: s.startswith("r2:") and " > r2:" in s or s == "r3:r3-b > r3:r3-r2b"
    blamed = [c for c in report["candidates"] if c["score"] > 0]
    wrong = [c["segment"] for c in blamed if not injected(c["segment"])]
    check(blamed and not wrong, f"root cause: every segment blamed is one nftables dropped on: {wrong or 'yes'}")
    first = [c["segment"] for c in blamed[:3]]
    check(any(s.startswith("r2:") for s in first) and "r3:r3-b > r3:r3-r2b" in first,
          f"root cause: inside R2 and the lossy member among the first three: {first}")


def table(out, drops, delay_ms, back_ms):
    """The accuracy table of one lab run (bench/journeys-accuracy.sh), from
    what scripts/lab kept in OUT."""
    live = json.load(open(f"{out}/live-segments.json"))
    rebuilt = json.load(open(f"{out}/segments.json"))
    estimated_segments = json.load(open(f"{out}/segments-estimated.json"))["segments"]
    journeys = [json.loads(line) for line in open(f"{out}/journeys.json")]
    status = json.load(open(f"{out}/live-status.json"))
    # the wire's truth: what the relay really held frames for, each way
    relay = open(f"{out}/relay.log").read()
    m = re.search(r"held one way ([0-9.]+) ms, back ([0-9.]+) ms", relay)
    if not m:
        sys.exit(f"{out}/relay.log says no hold times: no truth to compare the delays with")
    truth = {FORWARD_WIRE: float(m.group(1)), BACK_WIRE: float(m.group(2))}
    rows = []
    forwards = {("r1:r1-a", "r1:r1-r2", "r2:r2-r1", *m, "r3:r3-b") for m in MEMBERS}
    both = forwards | {tuple(reversed(p)) for p in forwards}
    traffic = between_a_and_b(journeys)
    for basis, of_basis in (("packets", lambda j: "flow-totals" not in j["flags"]),
                            ("flow totals", lambda j: "flow-totals" in j["flags"])):
        mine = [j for j in traffic if of_basis(j)]
        ordered = sum(tuple(p["name"] for h in j["hops"] for p in h["points"]) in both for j in mine)
        rows.append((f"path order correct, {basis}", f"{ordered} of {len(mine)} journeys", "all"))
        rows.append((f"NAT sides stitched, {basis}", f"{sum(len(j['hops']) == 6 for j in mine)} of {len(mine)}", "all"))
    for where, pooled in (("live", live), ("rebuilt", rebuilt)):
        by = packet_segments(pooled["segments"])
        for pair in (FORWARD_WIRE, BACK_WIRE):
            s, t = by[pair], truth[pair]
            d = s["delay_median_ns"] / 1e6
            error_us = (d - t) * 1000
            ok = abs(error_us) <= max(20, t * 1000 * 0.02)
            rows.append((f"{where}: {pair[0]} > {pair[1]}, {s['delay_kind']} (bound {s['delay_bound_ns']} ns)",
                         f"{d:.3f} ms, the relay held {t:.3f} ms: {error_us:+.1f} µs ({'within' if ok else 'OUTSIDE'})",
                         "≤ max(20 µs, 2 %) of the truth"))
    by = packet_segments(estimated_segments)
    for pair in (FORWARD_WIRE, BACK_WIRE):
        s, t = by[pair], truth[pair]
        d, b = s["delay_median_ns"] / 1e6, s["delay_bound_ns"] / 1e6
        rows.append((f"estimated offsets: {pair[0]} > {pair[1]}",
                     f"{d:.2f} ± {b:.2f} ms, truth {t:.2f} ms {'inside' if abs(d - t) <= b else 'OUTSIDE'}; "
                     f"round trip {s['rtt_median_ns'] / 1e6:.2f} ms (truth {sum(truth.values()):.2f})",
                     "truth inside the bound"))
    for basis in ("packets", "flow totals"):
        for name, lossy, dropped in (("inside R2", INSIDE_R2, drops[0]), ("into r3-r2b", INTO_MEMBER, drops[1])):
            mine = [s for s in rebuilt["segments"] if s["basis"] == basis and (s["from"], s["to"]) in lossy]
            lost, sent = sum(s["lost"] for s in mine), sum(s["sent"] for s in mine)
            inside = all(s["ratio_low"] <= dropped / max(1, sent) <= s["ratio_high"] for s in mine)
            rows.append((f"loss {name}, {basis}", f"{lost} (nft {dropped}), truth inside every interval: {inside}",
                         "the drops, on their segment"))
        invented = [s for s in rebuilt["segments"] if s["basis"] == basis
                    and (s["from"], s["to"]) not in INSIDE_R2 | INTO_MEMBER and s["lost"] > 0]
        rows.append((f"loss invented elsewhere, {basis}", f"{len(invented)} segments", "none"))
        sets = [e for e in rebuilt["ecmp"] if e["basis"] == basis
                and sorted(m["via"] for m in e["members"]) in (sorted(MEMBERS), sorted([list(reversed(m)) for m in MEMBERS]))]
        rows.append((f"ECMP sets found, {basis}", f"{len(sets)} of 2 (one each way)", "all"))
    c = status.get("journeys", {})
    reports, implausible = c.get("reports", 0), c.get("implausible", 0)
    rows.append(("digest collisions rejected (live)",
                 f"{implausible} of {reports} reports ({implausible * 1e6 / max(1, reports):.0f} per million)", "counted"))
    print("| figure | measured | target |")
    print("|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


def main():
    if sys.argv[1] == "table":
        table(sys.argv[2], [int(x) for x in sys.argv[3].split(",")], float(sys.argv[4]), float(sys.argv[5]))
        return
    mode, path, delay_ms, back_ms = sys.argv[1], sys.argv[2], float(sys.argv[4]), float(sys.argv[5])
    drops = [int(x) for x in sys.argv[3].split(",")]
    pooled = json.load(open(path))
    segments = pooled["segments"]
    if mode == "live":
        points = set(sys.argv[6:])
        named = {n for s in segments for n in (s["from"], s["to"])}
        check(named and named <= points, f"live: every segment's points by their probes' names: {sorted(named)}")
        # the links carry ARP, which the probes leave out by choice: no
        # exporter may report it as packets missed, nor the correlator
        # explain loss away with it
        status = json.load(open(path.replace("live-segments.json", "live-status.json")))
        missed = {e["exporter"]: e["exporter_drops"] + e["lost_records"] for e in status["exporters"]}
        check(len(missed) == len(points) and not any(missed.values()),
              f"live: no telemetry loss reported by the {len(missed)} probes' exporters: {missed}")
        explained = sum(s["telemetry_explained"] for s in segments)
        check(explained == 0, f"live: no loss explained away as telemetry loss: {explained}")
        measured("live, one clock declared (1 us)", segments, delay_ms, back_ms, 1000)
        loss("live", segments, drops)
        parallel("live", pooled)
    else:
        measured("rebuilt, the clock the probes announced", segments, delay_ms, back_ms, 0)
        loss("rebuilt", segments, drops)
        parallel("rebuilt", pooled)
        estimated("rebuilt, every offset estimated", json.load(open(sys.argv[6]))["segments"], delay_ms, back_ms)
        nat_and_order([json.loads(line) for line in open(sys.argv[7])])
        root_cause(json.load(open(sys.argv[8])))
    print(f"lab ({mode}): " + ("all passed" if not failed else f"{failed} failed"))
    sys.exit(1 if failed else 0)


main()
