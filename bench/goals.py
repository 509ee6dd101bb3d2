#!/usr/bin/env python3
"""Prints the issue-4 goals as ratios from one bench/run: xbench's results.jsonl, medians.

usage: bench/goals.py RESULTS.jsonl
Throughput: PubSubX / NATS delivered msgs/s (goal >= 1.5x). Latency: PubSubX p99 against the
best peer's (goal: no worse). Memory: bytes per idle connection (goal <= 1024). Drain: time to
drain the lost client's queue against Mosquitto's (goal: no slower). Loss: none anywhere."""
import json
import statistics
import sys
from collections import defaultdict


def medians(path):
    values = defaultdict(list)
    lost = defaultdict(int)
    for line in open(path):
        row = json.loads(line)
        key = (row["label"], row["case"])
        for field in ("delivered_per_s", "p99_us", "bytes_per_conn", "drain_s"):
            if field in row:
                values[key + (field,)].append(row[field])
        lost[row["label"]] += row.get("lost", 0)
    return {key: statistics.median(v) for key, v in values.items()}, lost


def main():
    table, lost = medians(sys.argv[1])
    get = lambda label, case, field: table.get((label, case, field))
    peers = sorted({label for label, _, _ in table if label != "pubsubx"})
    verdicts = []

    def verdict(name, ok, text):
        verdicts.append(ok)
        print(f"  {'met   ' if ok else 'MISSED'} {name}: {text}")

    print("goals (issue 4), medians of this run:")
    for case in ("thr-1x1-16B", "thr-1x10-16B", "thr-1x1-128B"):
        ours, nats = get("pubsubx", case, "delivered_per_s"), get("nats", case, "delivered_per_s")
        if ours and nats:
            ratio = ours / nats
            verdict(case, ratio >= 1.5, f"{ours / 1e6:.2f} M vs NATS {nats / 1e6:.2f} M = {ratio:.2f}x")
    ours = get("pubsubx", "lat-10k/s", "p99_us")
    peer_p99 = {p: get(p, "lat-10k/s", "p99_us") for p in peers if get(p, "lat-10k/s", "p99_us")}
    if ours and peer_p99:
        best = min(peer_p99, key=peer_p99.get)
        verdict("p99 at 10k/s", ours <= peer_p99[best],
                f"{ours:.0f} us vs best peer {best} {peer_p99[best]:.0f} us")
    conns = [c for (_, c, f) in table if c.startswith("conns-") and f == "bytes_per_conn"]
    if conns:
        ours = get("pubsubx", conns[0], "bytes_per_conn")
        if ours:
            verdict("memory per idle connection", ours <= 1024, f"{ours:.0f} B (goal <= 1024)")
    drains = [c for (_, c, f) in table if c.startswith("offline-") and f == "drain_s"]
    if drains:
        ours, mosquitto = get("pubsubx", drains[0], "drain_s"), get("mosquitto", drains[0], "drain_s")
        if ours and mosquitto:
            verdict("lost-client drain", ours <= mosquitto,
                    f"{ours * 1e3:.1f} ms vs Mosquitto {mosquitto * 1e3:.1f} ms")
    verdict("zero loss", lost.get("pubsubx", 0) == 0, f"PubSubX lost {lost.get('pubsubx', 0)}")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
