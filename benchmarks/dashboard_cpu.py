"""The dashboard's own CPU while a bench loads the cluster (a benchmark, not a test).

On a cluster brought up by `relevo up` (its dashboard running), with one page's event stream open (the
stream a browser holds: every update read as it is pushed), it reads the dashboard process's
utime+stime (/proc/PID/stat) for `--idle` seconds with no load, then during `relevo bench --rate RATE -d
DURATION -c CONNECTIONS` against the cluster's frontend (which also tells the dashboard its live points),
and prints each as a share of one core, with the rate the bench reached and the machine's load average,
and how much of the traffic HAProxy's request log (one datagram per request) brought to the dashboard.

    .venv/bin/python benchmarks/dashboard_cpu.py -f relevo.yaml [--rate 10000] [--duration 20] [--idle 10]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from relevo.dashboard.process import default_listen, running_pid
from relevo.paths import StatePaths
from relevo.secrets import load_or_create_secrets
from relevo.topology import load_topology


def cpu_s(pid: int) -> float:
    """The process's user + system CPU seconds so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hold_stream(
    host: str, port: int, auth: str, stop: threading.Event, updates: list[int], logged: list[float]
) -> None:
    """Read the page's event stream until `stop`, counting updates (a page's cost to the server), and
    keep, for each point with both, the share of the run's responses/s that HAProxy's request log
    brought to the dashboard (below 1: datagrams the kernel dropped before the receiver read them)."""
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
            if log and load and load.get("rps"):
                logged.append(log["rps"] / load["rps"])
    connection.close()


def measure(pid: int, seconds: float | None, run: list[str] | None) -> tuple[float, float, str]:
    """CPU share of one core over `seconds` of idling, or over `run` (a command) while it runs."""
    began_cpu, began = cpu_s(pid), time.monotonic()
    output = ""
    if run is None:
        assert seconds is not None
        time.sleep(seconds)
    else:
        done = subprocess.run(run, capture_output=True, text=True, timeout=600, check=False)
        output = done.stdout
        if done.returncode not in (0, 1):  # 1: a threshold or errors, still a measured run
            sys.exit(f"the bench failed ({done.returncode}):\n{done.stderr}")
    wall = time.monotonic() - began
    return (cpu_s(pid) - began_cpu) / wall * 100, wall, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-f", "--file", type=Path, default=Path("relevo.yaml"))
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--idle", type=float, default=10)
    args = parser.parse_args()
    topology = load_topology(args.file)
    pid = running_pid(topology)
    if pid is None:
        sys.exit("no dashboard runs for this cluster: `relevo up` first")
    secrets = load_or_create_secrets(StatePaths(topology.state_dir).secrets)
    auth = "Basic " + base64.b64encode(f"{secrets.stats_user}:{secrets.stats_password}".encode()).decode()
    host, port = default_listen(topology)
    stop, updates, logged = threading.Event(), [0], []
    stream = threading.Thread(target=hold_stream, args=(host, port, auth, stop, updates, logged), daemon=True)
    stream.start()
    time.sleep(1)
    idle, idle_s, _ = measure(pid, args.idle, None)
    idle_updates = updates[0]
    bench = [
        *(sys.executable, "-m", "relevo", "-f", str(args.file), "bench", "--json"),
        *("--rate", f"{args.rate:g}", "-d", f"{args.duration:g}s", "-c", str(args.connections)),
    ]
    loaded, loaded_s, output = measure(pid, None, bench)
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
    if logged:
        middle = sorted(logged)[len(logged) // 2]
        print(
            f"HAProxy's request log: the dashboard received {middle:.0%} of the run's responses/s "
            f"(median of {len(logged)} points; lowest {min(logged):.0%})"
        )


if __name__ == "__main__":
    main()
