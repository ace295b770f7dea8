"""The dashboard's own CPU while a bench loads the cluster (a benchmark, not a test).

On a cluster brought up by `relevo up` (its dashboard running), with one page's event stream open (the
stream a browser holds: every update read as it is pushed), it reads the dashboard process's
utime+stime (/proc/PID/stat) for `--idle` seconds with no load, then during `relevo bench --rate RATE -d
DURATION -c CONNECTIONS` against the cluster's frontend (which also tells the dashboard its live points),
and prints each as a share of one core, with the rate the bench reached and the machine's load average,
and how much of the traffic HAProxy's request log (one datagram per request) brought to the dashboard.

    .venv/bin/python benchmarks/dashboard_cpu.py -f relevo.yaml [--rate 10000 | --closed] [--duration 20]
        [--idle 10] [--connections 200] [--replay 10000]

`--replay RATE` then sends RATE request lines a second, as HAProxy logs them, straight to the dashboard's
receiver: the request log's cost at a rate the cluster cannot reach on a small or shared machine (the
rest of the dashboard's work does not grow with the rate: it reads counters and a run's two lines a
second).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from relevo.dashboard.process import default_listen, running_pid
from relevo.model import Endpoint
from relevo.paths import StatePaths
from relevo.render.haproxy import ACCESS_LOG_FORMAT, access_log_receiver
from relevo.secrets import load_or_create_secrets
from relevo.topology import load_topology


def cpu_s(pid: int) -> float:
    """The process's user + system CPU seconds so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hold_stream(
    host: str,
    port: int,
    auth: str,
    stop: threading.Event,
    updates: list[int],
    logged: list[float],
    seen: list[tuple[float, float]],
) -> None:
    """Read the page's event stream until `stop`, counting updates (a page's cost to the server), and
    keep, for each point with both, the share of the run's responses/s that HAProxy's request log
    brought to the dashboard (below 1: datagrams the kernel dropped before the receiver read them), and
    every point's requests/s from the log (`seen`, with when it came)."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    connection.request("GET", "/api/stream", headers={"Authorization": auth})
    response = connection.getresponse()
    assert response.status == 200, response.status
    update = False
    while not stop.is_set():
        line = response.fp.readline()
        if not line:
            break
        if line.startswith(b"event: "):
            update = line.startswith(b"event: update")
            updates[0] += update
        elif update and line.startswith(b"data: "):
            point = json.loads(line[6:]).get("point") or {}
            log, load = point.get("log"), point.get("load")
            if log:
                seen.append((time.monotonic(), log["rps"]))
            if log and load and load.get("rps"):
                logged.append(log["rps"] / load["rps"])
    connection.close()


def measure(pid: int, action: Callable[[], str]) -> tuple[float, float, str]:
    """CPU share of one core of process `pid` while `action` runs, the wall time, and its output."""
    began_cpu, began = cpu_s(pid), time.monotonic()
    output = action()
    wall = time.monotonic() - began
    return (cpu_s(pid) - began_cpu) / wall * 100, wall, output


def idle_for(seconds: float) -> str:
    time.sleep(seconds)
    return ""


def run_bench(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode not in (0, 1):  # 1: a threshold or errors, still a measured run
        sys.exit(f"the bench failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def replay(target: Endpoint, rate: float, duration_s: float) -> str:
    """Send `rate` request lines a second, as HAProxy would log them, to the dashboard's receiver for
    `duration_s` (bounded in count and time; loopback only): the log path's cost at a rate the cluster
    itself cannot reach here. Paced in 10 ms batches on the monotonic clock."""
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    line = ACCESS_LOG_FORMAT.replace("%Ta", "3").replace("%ST", "200").encode() + b"\n"
    total = int(rate * duration_s)
    sent, began = 0, time.monotonic()
    with socket.socket(family, socket.SOCK_DGRAM) as sender:
        sender.connect((target.address, target.port))
        while sent < total:
            due = min(total, int((time.monotonic() - began) * rate) + int(rate / 100))
            for _ in range(due - sent):
                with contextlib.suppress(OSError):  # ECONNREFUSED when no receiver listens: counted anyway
                    sender.send(line)
            sent = due
            time.sleep(0.01)
    return f"{sent} lines in {time.monotonic() - began:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-f", "--file", type=Path, default=Path("relevo.yaml"))
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10)
    parser.add_argument("--closed", action="store_true", help="the closed model (-c users), not --rate")
    parser.add_argument(
        "--replay", type=float, default=0, help="then send this many log lines/s straight to the receiver"
    )
    args = parser.parse_args()
    topology = load_topology(args.file)
    pid = running_pid(topology)
    if pid is None:
        sys.exit("no dashboard runs for this cluster: `relevo up` first")
    secrets = load_or_create_secrets(StatePaths(topology.state_dir).secrets)
    auth = "Basic " + base64.b64encode(f"{secrets.stats_user}:{secrets.stats_password}".encode()).decode()
    host, port = default_listen(topology)
    stop, updates, logged, seen = threading.Event(), [0], list[float](), list[tuple[float, float]]()
    stream = threading.Thread(
        target=hold_stream, args=(host, port, auth, stop, updates, logged, seen), daemon=True
    )
    stream.start()
    time.sleep(1)
    idle, idle_s, _ = measure(pid, lambda: idle_for(args.idle))
    idle_updates = updates[0]
    bench = [
        *(sys.executable, "-m", "relevo", "-f", str(args.file), "bench", "--json"),
        *(() if args.closed else ("--rate", f"{args.rate:g}")),
        *("-d", f"{args.duration:g}s", "-c", str(args.connections)),
    ]
    loaded, loaded_s, output = measure(pid, lambda: run_bench(bench))
    bench_updates = updates[0]
    if args.replay:
        target = access_log_receiver(topology)
        began = time.monotonic()
        replayed, replayed_s, what = measure(pid, lambda: replay(target, args.replay, args.duration))
        # Skip the first second (the window fills) and the points after the end.
        during = sorted(r for t, r in seen if began + 1.5 < t <= began + replayed_s)
    stop.set()
    total = json.loads(output)  # the Summary Report's TOTAL row, and more
    reached = total["throughput_rps"]
    print(
        f"dashboard pid {pid}, one event stream open, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(f"idle:   {idle:5.2f} % of one core over {idle_s:.1f} s ({idle_updates} updates pushed)")
    print(
        f"bench:  {loaded:5.2f} % of one core over {loaded_s:.1f} s ({updates[0] - idle_updates} updates "
        f"pushed; {' '.join(bench[2:])}: {total['samples']} samples, ~{reached:,.0f} req/s reached, "
        f"{total['errors']} errors)"
    )
    if args.replay:
        print(
            f"replay: {replayed:5.2f} % of one core over {replayed_s:.1f} s ({updates[0] - bench_updates} "
            f"updates pushed; {what} sent to the request log's receiver, {args.replay:,.0f}/s asked; "
            f"the page's log requests/s: median {during[len(during) // 2] if during else 0:,.0f}, lowest "
            f"{during[0] if during else 0:,.0f})"
        )
    if logged:
        middle = sorted(logged)[len(logged) // 2]
        print(
            f"HAProxy's request log: the dashboard received {middle:.0%} of the run's responses/s "
            f"(median of {len(logged)} points; lowest {min(logged):.0%})"
        )


if __name__ == "__main__":
    main()
