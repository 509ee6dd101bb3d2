#!/usr/bin/env python3
"""The throughput matrix of issue 16: payload sizes x shapes, PubSubX beside NATS (and Redis,
Mosquitto), and beside the ceiling (pubsubx-ceiling: the same bytes moved with no broker logic).

usage: bench/matrix.py --server BIN --ceiling BIN --xbench BIN [options]
  --runs N            runs per cell and broker (default 3; the table shows medians)
  --peers LIST        nats,redis,mosquitto or none (default nats); missing ones are skipped
  --sizes LIST        payload bytes (default 16,256,1024,4096,16384,65536)
  --shapes LIST       PUBSxSUBS (default 1x1,1x10,10x1,4x4,1x100)
  --ceiling-modes L   shared,copy (default shared): copy also measures the ceiling with one
                      copy of every message per subscriber, as PubSubX's queues do;
                      none leaves the ceiling out
  --out DIR           results.jsonl, matrix.md and broker logs (default: a new /tmp directory)
  --baseline BIN      also measure another pubsubx-server (label 'baseline'), for A/B checks

Every broker listens on loopback, pinned to CPU 0; xbench runs on CPU 1. The runs of one cell
alternate between the brokers, so a drift of the machine reaches all of them alike. A cell's
message count keeps its run near a second for PubSubX: at most 1,000,000 messages, 3,000,000
deliveries and 2 GB delivered. The flow-control window is 10,000 messages or 1 MiB of frames,
whichever is less: the most a subscriber may be behind stays within PubSubX's default
--max-queue (2 MiB) and NATS's pending limit (64 MB), so no broker drops or cuts anyone off,
and every broker runs with its defaults.

Medians and ratios use only runs that delivered everything; a cell where any run of either
side did not is shown, and not counted towards a goal. Exit status: 0 when every run of every
broker delivered everything, 1 otherwise."""
import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict

BROKER_CPU, HARNESS_CPU = "0", "1"
PROTOCOLS = {"pubsubx": "pubsubx", "baseline": "pubsubx", "ceiling": "pubsubx",
             "ceiling-copy": "pubsubx", "nats": "nats", "redis": "redis", "mosquitto": "mqtt"}
PEER_BINARIES = {"nats": "nats-server", "redis": "redis-server", "mosquitto": "mosquitto"}
MAX_MSGS, MAX_DELIVERIES, MAX_DELIVERED_BYTES = 1_000_000, 3_000_000, 2_000_000_000
WINDOW_MSGS, WINDOW_BYTES = 10_000, 1 << 20


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Brokers:
    """Starts each broker pinned to BROKER_CPU on its own port and stops them all by PID."""

    def __init__(self, out):
        self.out = out
        self.running = {}  # label -> (process, port)

    def start(self, label, command):
        port = free_port()
        argv = ["taskset", "-c", BROKER_CPU] + [a.replace("{port}", str(port)) for a in command]
        log = open(os.path.join(self.out, f"{label}.log"), "ab")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(100):
            if port_open(port):
                self.running[label] = (process, port)
                return
            if process.poll() is not None:
                break
            time.sleep(0.1)
        process.kill()
        raise SystemExit(f"bench/matrix: {label} did not start on port {port} "
                         f"(log: {self.out}/{label}.log)")

    def stop_all(self):
        for process, _ in self.running.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.running.clear()


def broker_commands(args):
    """label -> command line with {port}, for every broker this run measures."""
    limit = f"{65536}"
    commands = {"pubsubx": [args.server, "{port}", "--quiet"]}
    if args.baseline:
        commands["baseline"] = [args.baseline, "{port}", "--quiet"]
    for mode in [] if args.ceiling_modes == "none" else args.ceiling_modes.split(","):
        commands["ceiling" if mode == "shared" else f"ceiling-{mode}"] = [
            args.ceiling, "{port}", "--mode", mode]
    for peer in [] if args.peers == "none" else args.peers.split(","):
        binary = PEER_BINARIES.get(peer)
        if binary is None:
            raise SystemExit(f"bench/matrix: unknown peer {peer} (nats, redis, mosquitto)")
        if not any(os.access(os.path.join(d, binary), os.X_OK)
                   for d in os.environ.get("PATH", "").split(":") + ["/usr/sbin"]):
            print(f"bench/matrix: {binary} is not installed; skipping {peer}", file=sys.stderr)
            continue
        if peer == "nats":
            commands[peer] = ["nats-server", "-a", "127.0.0.1", "-p", "{port}"]
        elif peer == "redis":
            commands[peer] = ["redis-server", "--port", "{port}", "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--maxclients", limit]
        else:
            conf = os.path.join(args.out, "mosquitto-{port}.conf")
            commands[peer] = ["sh", "-c", f"printf 'listener {{port}} 127.0.0.1\\n"
                              f"allow_anonymous true\\npersistence false\\n' > {conf}"
                              f" && exec mosquitto -c {conf}"]
    return commands


def cell_messages(size, pubs, subs):
    msgs = min(MAX_MSGS, MAX_DELIVERIES // subs, MAX_DELIVERED_BYTES // (size * subs))
    return max(pubs, msgs - msgs % pubs)  # an even split over the publishers


def window(size):
    return max(1, min(WINDOW_MSGS, WINDOW_BYTES // (size + 64)))


def run_cell(args, label, port, pid, size, pubs, subs):
    case = f"{pubs}x{subs}-{size}B"
    argv = ["taskset", "-c", HARNESS_CPU, args.xbench, "throughput", "--proto", PROTOCOLS[label],
            "--port", str(port), "--pid", str(pid), "--pubs", str(pubs), "--subs", str(subs),
            "--size", str(size), "--msgs", str(cell_messages(size, pubs, subs)),
            "--window", str(window(size)), "--timeout", "120", "--label", label, "--case", case]
    done = subprocess.run(argv, capture_output=True, text=True)
    try:
        row = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        row = {"label": label, "case": case, "complete": False, "lost": -1,
               "first_error": done.stderr.strip()[-300:]}
    row.update(size=size, pubs=pubs, subs=subs)
    return row


def complete(row):
    return bool(row.get("complete")) and row.get("lost") == 0


def median_of(rows, field):
    """The median over the complete runs: a stalled run's rate says nothing."""
    values = [r[field] for r in rows if complete(r) and isinstance(r.get(field), (int, float))]
    return statistics.median(values) if values else None


def all_complete(rows):
    return bool(rows) and all(complete(r) for r in rows)


def rate_text(value):
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"


def cpu_text(rows):
    broker, harness = median_of(rows, "broker_cpu_pct"), median_of(rows, "harness_cpu_pct")
    if broker is None or harness is None:
        return ""
    return f" ({broker:.0f}/{harness:.0f}%)"


def figure(rows):
    """A cell's text: median delivered msgs/s, MB/s, broker/harness CPU, and what went wrong."""
    rate = median_of(rows, "delivered_per_s")
    text = rate_text(rate)
    if rate is not None:
        text += f", {median_of(rows, 'MB_per_s'):.0f} MB/s{cpu_text(rows)}"
    lost = sum(max(0, r.get("lost", 0)) for r in rows)
    failed = sum(1 for r in rows if not r.get("complete"))
    if lost or failed:
        text += f" **lost {lost}, {failed} of {len(rows)} incomplete**"
    return text


INCOMPLETE = "incomplete"


def ratio(ours_rows, theirs_rows):
    """PubSubX over a peer in one cell: None without the peer's runs, INCOMPLETE unless every
    run on both sides delivered everything."""
    if not theirs_rows:
        return None
    if not all_complete(ours_rows) or not all_complete(theirs_rows):
        return INCOMPLETE
    return median_of(ours_rows, "delivered_per_s") / median_of(theirs_rows, "delivered_per_s")


def ratio_text(ours_rows, theirs_rows, goal):
    value = ratio(ours_rows, theirs_rows) if ours_rows else None
    if value is None:
        return "-"
    if value == INCOMPLETE:
        return "(incomplete runs)"
    return f"{value:.2f}" + ("" if value >= goal else " (below)")


def runs_by_cell(results):
    """(label, size, pubs, subs) -> that cell's runs of that broker."""
    cells = defaultdict(list)
    for row in results:
        cells[(row["label"], row["size"], row["pubs"], row["subs"])].append(row)
    return cells


def table(results, labels, sizes, shapes):
    by_cell = runs_by_cell(results)
    peers = [label for label in labels if label not in ("pubsubx", "ceiling")]
    head = ["payload", "shape", "PubSubX"] + peers + ["ceiling", "vs NATS", "of ceiling"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for size in sizes:
        for pubs, subs in shapes:
            rows = {label: by_cell[(label, size, pubs, subs)] for label in labels}
            cells = [f"{size} B", f"{pubs}x{subs}", figure(rows["pubsubx"])]
            cells += [figure(rows[label]) for label in peers]
            cells.append(figure(rows.get("ceiling", [])) if "ceiling" in labels else "-")
            cells.append(ratio_text(rows["pubsubx"], rows.get("nats", []), 1.5))
            cells.append(ratio_text(rows["pubsubx"], rows.get("ceiling", []), 0.7))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goals_text(results, sizes, shapes):
    """Issue 16's goals over the cells: at least 1.5x NATS and 0.7 of the ceiling."""
    by_cell = runs_by_cell(results)
    lines = []
    for peer, goal in (("nats", 1.5), ("ceiling", 0.7)):
        ratios, unmeasured = {}, []
        for size in sizes:
            for pubs, subs in shapes:
                value = ratio(by_cell[("pubsubx", size, pubs, subs)],
                              by_cell[(peer, size, pubs, subs)])
                cell = f"{size} B {pubs}x{subs}"
                if value == INCOMPLETE:
                    unmeasured.append(cell)
                elif value is not None:
                    ratios[cell] = value
        if ratios or unmeasured:
            short = [f"{cell} ({value:.2f})" for cell, value in ratios.items() if value < goal]
            lines.append(f"PubSubX / {peer} >= {goal}: {len(ratios) - len(short)} of "
                         f"{len(ratios) + len(unmeasured)} cells"
                         + (f"; short: {', '.join(short)}" if short else "")
                         + (f"; not measured (a run did not deliver everything): "
                            f"{', '.join(unmeasured)}" if unmeasured else ""))
    return "\n" + "\n".join(lines) if lines else ""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--ceiling")
    parser.add_argument("--xbench", required=True)
    parser.add_argument("--baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peers", default="nats")
    parser.add_argument("--sizes", default="16,256,1024,4096,16384,65536")
    parser.add_argument("--shapes", default="1x1,1x10,10x1,4x4,1x100")
    parser.add_argument("--ceiling-modes", default="shared")
    parser.add_argument("--out")
    args = parser.parse_args()
    args.out = args.out or tempfile.mkdtemp(prefix="pubsubx-matrix.")
    os.makedirs(args.out, exist_ok=True)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",")]
        args.shape_list = [tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")]
    except ValueError:
        parser.error("--sizes takes numbers, --shapes takes PUBSxSUBS like 1x10")
    if any(len(s) != 2 or min(s) < 1 for s in args.shape_list) or min(args.size_list) < 16:
        parser.error("shapes need at least one publisher and subscriber, sizes at least 16 B")
    if args.ceiling_modes != "none" and not set(args.ceiling_modes.split(",")) <= {"shared", "copy"}:
        parser.error("--ceiling-modes takes shared and/or copy, or none")
    return args


def stop_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # through main's finally: every broker is stopped


def main():
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    args = parse_args()
    brokers = Brokers(args.out)
    commands = broker_commands(args)
    results_path = os.path.join(args.out, "results.jsonl")
    results = []
    started = time.monotonic()
    try:
        for label, command in commands.items():
            brokers.start(label, command)
        with open(results_path, "a") as results_file:
            for size in args.size_list:
                for pubs, subs in args.shape_list:
                    for run in range(args.runs):
                        for label in commands:
                            process, port = brokers.running[label]
                            row = run_cell(args, label, port, process.pid, size, pubs, subs)
                            results.append(row)
                            results_file.write(json.dumps(row) + "\n")
                            results_file.flush()
                            print(f"  {label} {row['case']} run {run + 1}: "
                                  f"{rate_text(row.get('delivered_per_s'))} msgs/s, "
                                  f"lost {row.get('lost')}", file=sys.stderr)
    finally:
        brokers.stop_all()
    labels = list(commands)
    text = (f"Medians of {args.runs} runs: delivered msgs/s, payload MB/s, (broker/harness CPU "
            f"% of one core); {time.monotonic() - started:.0f} s.\n\n"
            + table(results, labels, args.size_list, args.shape_list))
    with open(os.path.join(args.out, "matrix.md"), "w") as out:
        out.write(text + "\n")
    print(text)
    print(goals_text(results, args.size_list, args.shape_list))
    print(f"\nraw results and logs: {args.out}")
    failed = sorted({r["label"] for r in results if not complete(r)})
    if failed:
        print(f"runs that did not deliver everything: {', '.join(failed)} (see the table)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
