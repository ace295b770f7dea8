"""Where `relevo up` spends its time on LXD (a benchmark, not a test).

Each run brings the seed's five nodes up from the cached base image on a fresh cluster (every container
created), then `down` and `up` again (the containers exist: only started), then `destroy`. Every LXD
request relevo makes is timed (the client's `request`, wrapped here) and named by what relevo was doing,
so the table says, per kind of request, how many were sent, their summed time and the wall-clock span
from the first sent to the last answered; and, per node, when its first and last request were. The
progress lines of `up` are printed with their offsets, which gives the time between its steps.

    sudo .venv/bin/python benchmarks/lxd_up.py [--runs 1] [--subnet 10.213.251.0/24] [--name lxdup]
        [--image ALIAS] [--temperature cold] [--pair] [--pool POOL]

LXD must be running (`sudo scripts/lxd-daemon start`) and the base image imported (`relevo image build`
then `relevo image import`, or any `up`). Everything a run creates is destroyed at its end.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relevo import lifecycle
from relevo.lxd.client import LXDClient
from relevo.topology import load_topology

SUBNET = "10.213.251.0/24"


@dataclass(frozen=True)
class Sent:
    what: str  # relevo's own words for the request ("start instance 'lxdup-web1'")
    started: float
    ended: float


class Tracer:
    """Every LXDClient request of this process, timed (a thread-safe list)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[Sent] = []

    @contextmanager
    def tracing(self) -> Iterator[None]:
        original = LXDClient.request
        tracer = self

        def timed(client: LXDClient, method: str, path: str, *, what: str, **kw: Any) -> Any:
            started = time.monotonic()
            try:
                return original(client, method, path, what=what, **kw)
            finally:
                with tracer.lock:
                    tracer.sent.append(Sent(what, started, time.monotonic()))

        LXDClient.request = timed  # type: ignore[method-assign]
        try:
            yield
        finally:
            LXDClient.request = original  # type: ignore[method-assign]

    def take(self) -> list[Sent]:
        with self.lock:
            sent, self.sent = self.sent, []
        return sent


QUOTED = re.compile(r"'([^']*)'")


def kind_of(what: str) -> str:
    """A request's kind: its words without the instance's name ("start instance"), a pushed file by its
    directory, a command by its program."""
    text = QUOTED.sub("", what).strip()
    text = re.sub(r"^push (\S+) into", lambda m: f"push file {Path(m.group(1)).parent}/", text)
    text = re.sub(r"^read (\S+) in", lambda m: f"read file {Path(m.group(1)).parent}/", text)
    return re.sub(r"\s+", " ", text).strip()


def node_of(what: str, prefix: str) -> str:
    for name in QUOTED.findall(what):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return "-"


def report(title: str, seconds: float, sent: list[Sent], steps: list[tuple[float, str]], prefix: str) -> None:
    origin = min([s.started for s in sent] + [t for t, _ in steps] or [0.0])
    print(f"\n== {title}: {seconds:.2f} s, {len(sent)} LXD requests")
    for at, line in steps:
        print(f"  {at - origin:7.2f} s  {line}")
    by_kind: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        by_kind[kind_of(s.what)].append(s)
    print(f"  {'request':44} {'n':>3} {'summed s':>9} {'span s':>13}")
    for kind, group in sorted(by_kind.items(), key=lambda kv: -sum(s.ended - s.started for s in kv[1])):
        summed = sum(s.ended - s.started for s in group)
        first, last = min(s.started for s in group) - origin, max(s.ended for s in group) - origin
        print(f"  {kind[:44]:44} {len(group):3d} {summed:9.2f} {first:6.2f}-{last:6.2f}")
    by_node: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        by_node[node_of(s.what, prefix)].append(s)
    print(f"  {'node':10} {'first s':>8} {'last s':>8} {'requests':>9}")
    for node, group in sorted(by_node.items()):
        first, last = min(s.started for s in group) - origin, max(s.ended for s in group) - origin
        print(f"  {node:10} {first:8.2f} {last:8.2f} {len(group):9d}")


def timed_up(topology: Any, tracer: Tracer, title: str, prefix: str) -> float:
    steps: list[tuple[float, str]] = []
    started = time.monotonic()
    lifecycle.up(topology, progress=lambda line: steps.append((time.monotonic(), line)))
    seconds = time.monotonic() - started
    steps.append((time.monotonic(), "serving"))
    report(title, seconds, tracer.take(), steps, prefix)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--subnet", default=SUBNET, help=f"the bridge's subnet (default {SUBNET})")
    parser.add_argument("--name", default="lxdup", help="the cluster's name: its containers' prefix")
    parser.add_argument("--image", default=None, help="LXD image alias (default: relevo/bookworm)")
    parser.add_argument("--temperature", default="cold", help="the standbys' temperature")
    parser.add_argument("--pair", action="store_true", help="two balancers sharing a VIP (keepalived)")
    parser.add_argument(
        "--pool", default=None, help="the LXD storage pool (default: the provider's, default)"
    )
    args = parser.parse_args()
    tracer = Tracer()
    figures: dict[str, list[float]] = defaultdict(list)
    with tracer.tracing(), tempfile.TemporaryDirectory(prefix="relevo-lxd-up-") as work:
        for run in range(1, args.runs + 1):
            workdir = Path(work) / f"run{run}"
            workdir.mkdir()
            text = (
                f"name: {args.name}\nprovider: lxd\nnetwork: {args.subnet}\n"
                f"standby: {{temperature: {args.temperature}}}\n"
            )
            options = {"image": args.image, "storage_pool": args.pool}
            given = ", ".join(f"{k}: '{v}'" for k, v in options.items() if v)
            if given:
                text += f"providers:\n  lxd: {{{given}}}\n"
            if args.pair:
                text += "balancer: {name: ha1, peer: ha2}\n"
            (workdir / "relevo.yaml").write_text(text)
            topology = load_topology(workdir / "relevo.yaml")
            prefix = f"{args.name}-"
            try:
                figures["up, containers created"].append(timed_up(topology, tracer, f"run {run}: up", prefix))
                started = time.monotonic()
                lifecycle.down(topology)
                figures["down"].append(time.monotonic() - started)
                tracer.take()
                figures["up, containers existing"].append(
                    timed_up(topology, tracer, f"run {run}: up again", prefix)
                )
            finally:
                started = time.monotonic()
                lifecycle.destroy(topology)
                figures["destroy"].append(time.monotonic() - started)
                tracer.take()
    print(f"\n{'step':26} {'median s':>9} {'worst s':>8}  runs")
    for step, values in figures.items():
        ordered = sorted(values)
        print(f"{step:26} {ordered[len(ordered) // 2]:9.2f} {ordered[-1]:8.2f}  {len(values)}")


if __name__ == "__main__":
    main()
