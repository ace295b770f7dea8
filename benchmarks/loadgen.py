"""relevo bench against wrk, ab -k and Locust (FastHttpUser), in one go, on the same local target.

    python benchmarks/loadgen.py                     # starts its own cluster (HAProxy + 2 Apache) on loopback
    python benchmarks/loadgen.py --target URL        # or loads a target you started
    python benchmarks/loadgen.py --duration 5 --connections 100

For each number of connections every tool runs for the same time, one after the other. Printed per run:
requests per second (the tool's own count over its own run time) and the generator's CPU time per
request (user + system, from getrusage of the finished child processes: the tool and every process it
waited for). Then relevo's ratios to each peer; the aim is >= 0.9x wrk's and >= 3x Locust's req/s, and
at most 2x wrk's CPU per request. Locust is installed into .venv-bench on first use (pip install locust);
if that fails the benchmark says so and goes on without it. All traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_VENV = ROOT / ".venv-bench"
RELEVO = [sys.executable, "-m", "relevo"]
OPEN_TIMEOUT_S = 2.0  # the open-model run's request timeout: the run must end by duration + this
NETWORK = "127.199.201.0/24"
LOCUSTFILE = """
from locust import FastHttpUser, constant, task


class Visitor(FastHttpUser):
    wait_time = constant(0)

    @task
    def home(self):
        self.client.get("/")
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    tool: str
    connections: int
    requests: int
    rps: float
    cpu_s: float
    errors: int = 0
    note: str = ""

    @property
    def cpu_us_per_request(self) -> float:
        return self.cpu_s / self.requests * 1e6 if self.requests else float("nan")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measured(command: list[str], timeout_s: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a generator to its end; its CPU is the growth of our finished children's CPU."""
    before = children_cpu_s()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    return done, children_cpu_s() - before


def run_relevo(
    url: str, connections: int, duration: int, workers: int | None, rate: float | None = None
) -> Result:
    command = [*RELEVO, "bench", url, "-c", str(connections), "-d", f"{duration}s"]
    command += ["--json"] + (["-w", str(workers)] if workers else [])
    command += ["--rate", f"{rate:g}", "--timeout", f"{OPEN_TIMEOUT_S:g}s"] if rate else []
    began = time.monotonic()
    done, cpu = measured(command, duration * 3 + 60)
    wall = time.monotonic() - began
    if done.returncode != 0:
        raise RuntimeError(f"relevo bench failed: {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    name = ("relevo" if workers is None else f"relevo -w{workers}") + (f" --rate {rate:g}" if rate else "")
    note = f"{data['meta']['workers']} workers, {data['meta']['event_loop']}"
    if rate:
        limit = duration + OPEN_TIMEOUT_S
        note += f", dropped {data['dropped']}, ran {wall:.2f} s (limit {limit:g} s + start-up)"
    return Result(
        tool=name,
        connections=connections,
        requests=data["samples"],
        rps=data["throughput_rps"],
        cpu_s=cpu,
        errors=data["errors"],
        note=note,
    )


def relevo_startup_cpu_s(url: str) -> float:
    """CPU of a one-request run: the interpreter and imports, paid once per run whatever its length."""
    done, cpu = measured([sys.executable, "-m", "relevo", "bench", url, "-c", "1", "-n", "1", "-q"], 60)
    return cpu if done.returncode == 0 else float("nan")


def run_wrk(url: str, connections: int, duration: int) -> Result:
    done, cpu = measured(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", url], duration + 60)
    requests = int(re.search(r"(\d+) requests in", done.stdout).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    return Result(
        tool="wrk -t1",
        connections=connections,
        requests=requests,
        rps=rps,
        cpu_s=cpu,
        errors=int(errors.group(1)) if errors else 0,
    )


def run_ab(url: str, connections: int, duration: int) -> Result:
    # -t bounds the time; -n only lifts ab's default cap of 50,000 requests under -t.
    command = ["ab", "-k", "-q", "-r", "-c", str(connections), "-t", str(duration), "-n", "100000000", url]
    done, cpu = measured(command, duration + 60)
    complete = re.search(r"Complete requests:\s+(\d+)", done.stdout)
    if complete is None:
        raise RuntimeError(f"ab failed: {(done.stdout + done.stderr)[-1000:]}")
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"Failed requests:\s+(\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    return Result(
        tool="ab -k",
        connections=connections,
        requests=int(complete.group(1)),
        rps=rps,
        cpu_s=cpu,
        errors=failed,
    )


def locust_binary() -> Path | None:
    """Locust in its own venv (it pins gevent and friends we want nowhere near relevo's)."""
    binary = BENCH_VENV / "bin" / "locust"
    if binary.exists():
        return binary
    print(f"installing Locust into {BENCH_VENV} ...", file=sys.stderr)
    try:
        if not (BENCH_VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True, timeout=300)
        pip = [str(BENCH_VENV / "bin" / "pip"), "install", "-q", "locust"]
        done = subprocess.run(pip, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise OSError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pip failed")
    except (subprocess.SubprocessError, OSError) as exc:
        print(f"Locust could not be installed ({exc}); going on without it", file=sys.stderr)
        return None
    return binary if binary.exists() else None


def run_locust(url: str, connections: int, duration: int) -> Result | None:
    binary = locust_binary()
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        locustfile = Path(tmp) / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        prefix = Path(tmp) / "stats"
        command = [
            str(binary),
            "-f",
            str(locustfile),
            "--headless",
            "-u",
            str(connections),
            "-r",
            str(connections),
            "--run-time",
            f"{duration}s",
            "--host",
            url.rstrip("/"),
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        done, cpu = measured(command, duration + 120)
        stats = Path(f"{prefix}_stats.csv")
        if not stats.exists():
            print(f"Locust did not run: {done.stderr[-1000:]}", file=sys.stderr)
            return None
        lines = stats.read_text().splitlines()
    header = lines[0].split(",")
    row = next(line.split(",") for line in lines[1:] if ",Aggregated," in f",{line},")
    values = dict(zip(header, row, strict=False))
    return Result(
        tool="Locust FastHttpUser",
        connections=connections,
        requests=int(values["Request Count"]),
        rps=float(values["Requests/s"]),
        cpu_s=cpu,
        errors=int(values["Failure Count"]),
    )


@contextmanager
def own_cluster(network: str = NETWORK) -> Iterator[str]:
    """A cluster of relevo's own (HAProxy + web1, web2) on loopback, stopped afterwards."""
    sys.path.insert(0, str(ROOT / "src"))
    from relevo import lifecycle
    from relevo.topology import load_topology

    workdir = Path(tempfile.mkdtemp(prefix="relevo-bench-", dir="/tmp"))
    path = workdir / "relevo.yaml"
    path.write_text(
        f"name: bench\nnetwork: {network}\nnodes:\n  web1: {{role: web}}\n  web2: {{role: web}}\n"
    )
    topology = load_topology(path)
    print(f"starting a cluster in {workdir} ...", file=sys.stderr)
    lifecycle.up(topology, controller=False)
    try:
        yield topology.balancer.frontend.url + "/"
    finally:
        lifecycle.down(topology)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", help="URL to load (default: start a cluster on --network)")
    parser.add_argument("--network", default=NETWORK, help=f"the cluster's loopback /24 (default {NETWORK})")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument("--connections", default="100,1000", help="comma-separated (default 100,1000)")
    parser.add_argument("--skip-locust", action="store_true", help="do not run (or install) Locust")
    parser.add_argument(
        "--open-rate", type=float, default=5000.0, help="the open model's rate, req/s (default 5000)"
    )
    args = parser.parse_args()
    if args.target and not re.match(r"http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/]", args.target):
        parser.error("--target must be on the loopback range (127.0.0.0/8 or localhost)")
    levels = [int(c) for c in args.connections.split(",")]
    results: list[Result] = []
    open_vs_closed: list[Result] = []
    with own_cluster(args.network) if not args.target else _given(args.target) as url:
        print(f"target {url}, {args.duration} s per run", file=sys.stderr)
        for tool in ("wrk", "ab"):
            if not shutil.which(tool):
                print(f"{tool} is not installed: left out", file=sys.stderr)
        warm_up = [*RELEVO, "bench", url, "-c", "10", "-d", "1s", "-q"]
        subprocess.run(warm_up, capture_output=True, check=False, timeout=60)
        startup_s = relevo_startup_cpu_s(url)
        # The open model at a fixed rate beside the closed model, both on one worker: CPU per request.
        for runner in (
            lambda: run_relevo(url, 100, args.duration, 1),
            lambda: run_relevo(url, 100, args.duration, 1, rate=args.open_rate),
        ):
            try:
                open_vs_closed.append(runner())
            except (RuntimeError, subprocess.SubprocessError, ValueError) as exc:
                print(f"  a run failed: {exc}", file=sys.stderr)
        for connections in levels:
            runners: list[Callable[[], Result | None]] = [
                lambda c=connections: run_relevo(url, c, args.duration, None),
                # One worker per core too, to show why the default keeps half the cores for a local target.
                lambda c=connections: run_relevo(url, c, args.duration, os.cpu_count() or 1),
            ]
            # Peers that are not installed are left out, said once.
            if shutil.which("wrk"):
                runners.append(lambda c=connections: run_wrk(url, c, args.duration))
            if shutil.which("ab"):
                runners.append(lambda c=connections: run_ab(url, c, args.duration))
            if not args.skip_locust:
                runners.append(lambda c=connections: run_locust(url, c, args.duration))
            for runner in runners:
                try:
                    result = runner()
                except (RuntimeError, subprocess.SubprocessError, AttributeError, ValueError) as exc:
                    print(f"  a run failed: {exc}", file=sys.stderr)
                    continue
                if result is not None:
                    results.append(result)
                    print(
                        f"  {result.tool:22s} c={connections:<5d} {result.rps:10,.0f} req/s", file=sys.stderr
                    )
                time.sleep(1)  # let TIME_WAIT sockets and the servers settle between tools
        parsers = compare_parsers(url)
    report(results, levels, startup_s)
    report_open(open_vs_closed, startup_s)
    print(parsers)


def compare_parsers(url: str, responses: int = 200_000) -> str:
    """CPU per response of relevo's hand-written parser and of httptools (llhttp, what uvicorn uses) on
    one real response of the target, fed whole, interleaved three times; httptools is not a dependency
    of relevo (`pip install httptools` into the venv to include it)."""
    sys.path.insert(0, str(ROOT / "src"))
    import urllib.parse

    from relevo.loadgen.http import ResponseParser, header_key

    where = urllib.parse.urlsplit(url)
    raw = b""
    with socket.create_connection((where.hostname or "127.0.0.1", where.port or 80), timeout=5) as sock:
        sock.sendall(f"GET {where.path or '/'} HTTP/1.1\r\nHost: {where.netloc}\r\n\r\n".encode())
        while not (b"\r\n\r\n" in raw and ResponseParser(b"x").feed(raw)):
            raw += sock.recv(65536)
    hand = ResponseParser(header_key("X-Served-By"))

    def ours() -> None:
        hand.reset(no_body=False)
        hand.feed(raw)

    runners = {"relevo's parser": ours}
    try:
        import httptools  # type: ignore[import-not-found]
    except ImportError:
        note = "  httptools is not installed (pip install httptools): left out"
    else:
        note = f"  httptools {httptools.__version__}"

        class Callbacks:
            served: bytes | None = None
            done = False

            def on_header(self, name: bytes, value: bytes) -> None:
                if name.lower() == b"x-served-by":
                    self.served = value

            def on_message_complete(self) -> None:
                self.done = True

        callbacks = Callbacks()
        llhttp = httptools.HttpResponseParser(callbacks)

        def theirs() -> None:
            llhttp.feed_data(raw)
            llhttp.get_status_code()
            llhttp.should_keep_alive()

        runners["httptools"] = theirs
    best: dict[str, float] = {}
    for _ in range(3):
        for name, runner in runners.items():
            began = time.process_time()
            for _ in range(responses):
                runner()
            best[name] = min(best.get(name, float("inf")), (time.process_time() - began) / responses * 1e6)
    lines = [f"\nparsing one response ({len(raw)} bytes, fed whole), best of 3 x {responses:,}:", note]
    lines += [f"  {name:16s} {us:5.2f} µs CPU per response" for name, us in best.items()]
    return "\n".join(lines)


def report_open(runs: list[Result], startup_s: float) -> None:
    """CPU per request of the open model at a fixed rate beside the closed model's (one worker each);
    the aim is at most 1.5x."""
    if not runs:
        return
    print("\nopen model vs closed model, one worker, start-up CPU taken out:")
    steady = {}
    for r in runs:
        steady[r.tool] = (r.cpu_s - startup_s) / r.requests * 1e6 if r.requests else float("nan")
        print(f"  {r.tool:28s} {r.rps:9,.0f} req/s {steady[r.tool]:6.1f} µs CPU per request  {r.note}")
    closed = next((v for k, v in steady.items() if "--rate" not in k), None)
    opened = next((v for k, v in steady.items() if "--rate" in k), None)
    if closed and opened:
        print(f"  open / closed CPU per request: x{opened / closed:.2f} (aim: at most x1.5)")


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


def report(results: list[Result], levels: list[int], startup_s: float) -> None:
    print(
        f"\n{'tool':22s} {'conns':>5s} {'req/s':>10s} {'CPU µs/req':>11s} {'requests':>10s} {'errors':>7s}",
        " note",
    )
    for r in results:
        print(
            f"{r.tool:22s} {r.connections:5d} {r.rps:10,.0f} {r.cpu_us_per_request:11.1f} {r.requests:10,d} "
            f"{r.errors:7d}  {r.note}"
        )
    print(
        f"\nrelevo's start-up (interpreter and imports, once per run) costs {startup_s:.2f} s of CPU, "
        "included above; without it:"
    )
    for r in results:
        if r.tool.startswith("relevo") and r.requests:
            steady = (r.cpu_s - startup_s) / r.requests * 1e6
            print(f"  {r.tool:22s} c={r.connections:<5d} {steady:5.1f} µs CPU per request")
    print(
        "\nrelevo (default workers) against each peer:",
        "req/s ratio (higher is better), CPU per request ratio (lower is better)",
    )
    for connections in levels:
        ours = next((r for r in results if r.tool == "relevo" and r.connections == connections), None)
        if ours is None:
            continue
        for peer in (r for r in results if r.connections == connections and r.tool != "relevo"):
            print(
                f"  c={connections:<5d} vs {peer.tool:22s} req/s x{ours.rps / peer.rps:5.2f}   "
                f"CPU/request x{ours.cpu_us_per_request / peer.cpu_us_per_request:5.2f}"
            )


if __name__ == "__main__":
    main()
