"""What LXD operations cost through relevo's client, on this machine: image build and import, container
create, start → Apache answering on the bridge, list, freeze/unfreeze, force-stop, delete.

    sudo .venv/bin/python benchmarks/lxd_client.py [--runs 3] [--rebuild]

Uses the running LXD daemon, or starts one with scripts/lxd-daemon and stops it afterwards. Creates an
isolated bridge (NAT and routing off: the containers reach nothing else; the host reaches them only on
it), a profile, an image alias and one container per run, and removes them all. Path measured: host →
container bridge address, port 80.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import http.client
import ipaddress
import os
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from relevo.lxd.build import build_image, import_image
from relevo.lxd.client import LXDClient
from relevo.lxd.errors import LXDError, LXDUnreachableError
from relevo.lxd.network import free_subnet, isolated_bridge

REPO = Path(__file__).resolve().parents[1]


def answers(address: str) -> bool:
    conn = http.client.HTTPConnection(address, 80, timeout=0.5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def timed(samples: dict[str, list[float]], label: str, action: Callable[[], object]) -> None:
    started = time.perf_counter()
    action()
    samples[label].append(time.perf_counter() - started)


def remove_instance(client: LXDClient, name: str) -> None:
    with contextlib.suppress(LXDError):
        client.stop(name, force=True)
    client.delete_instance(name)


def one_container(
    client: LXDClient,
    samples: dict[str, list[float]],
    name: str,
    address: str,
    alias: str,
    profile: str,
    *,
    first: bool,
) -> None:
    """One container's life, each step timed: create, push its interface file, start until Apache
    answers on the bridge, list, exec, freeze, unfreeze, force-stop, delete."""
    label = "create (first from image)" if first else "create"
    timed(samples, label, lambda: client.create_instance(name, image=alias, profiles=[profile]))
    text = f"auto cnet0\niface cnet0 inet static\n    address {address}/24\n"
    interfaces = "/etc/network/interfaces.d/cnet0"
    timed(samples, "push file", lambda: client.push_file(name, interfaces, text.encode()))
    started = time.perf_counter()
    client.start(name)
    samples["start (operation done)"].append(time.perf_counter() - started)
    deadline = time.monotonic() + 120
    while not answers(address):
        if time.monotonic() > deadline:
            raise SystemExit(f"Apache in {name} did not answer within 120 s")
        time.sleep(0.01)
    samples["start → Apache answering"].append(time.perf_counter() - started)
    timed(samples, "list instances (recursion=2)", client.instances)
    timed(samples, "exec true", lambda: client.exec(name, ["true"]))
    timed(samples, "freeze", lambda: client.freeze(name))
    timed(samples, "unfreeze", lambda: client.unfreeze(name))
    timed(samples, "stop --force", lambda: client.stop(name, force=True))
    timed(samples, "delete", lambda: client.delete_instance(name))


def run(client: LXDClient, runs: int, rebuild: bool, samples: dict[str, list[float]]) -> None:
    built = build_image(rebuild=rebuild, progress=lambda line: None)
    samples["image build (cached)" if built.cached else "image build (debootstrap)"].append(built.seconds)
    tag = str(os.getpid())
    alias, network, profile = f"relevo-bench/{tag}", f"rlvb{tag}"[:15], f"relevo-bench-{tag}"
    subnet = free_subnet(start=os.getpid() + 7)
    undo: list[Callable[[], None]] = []
    try:
        imported = import_image(client, built.path, alias)
        samples["image import" if imported.uploaded else "image import (present)"].append(imported.seconds)
        undo.append(lambda: client.delete_alias(alias))
        if imported.uploaded:
            undo.append(lambda: client.delete_image(imported.fingerprint))
        client.create_network(network, isolated_bridge(ipaddress.IPv4Interface(f"{subnet[1]}/24")))
        undo.append(lambda: client.delete_network(network))
        nic = {"type": "nic", "nictype": "bridged", "parent": network, "name": "cnet0"}
        root = {"type": "disk", "path": "/", "pool": "default"}
        client.create_profile(profile, devices={"root": root, "cnet0": nic})
        undo.append(lambda: client.delete_profile(profile))
        for i in range(runs):
            name = f"relevo-bench-{tag}-{i}"
            undo.append(lambda name=name: remove_instance(client, name))
            one_container(client, samples, name, str(subnet[10 + i]), alias, profile, first=i == 0)
            undo.pop()
    finally:
        for action in reversed(undo):
            with contextlib.suppress(LXDError):
                action()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="build the image again (debootstrap)")
    args = parser.parse_args()
    # The `lxd` test tier's lock (tests/lxd/conftest.py): a test session running at the same time checks
    # that LXD ends as it began, and shares the base image; one user of the daemon at a time.
    lock = Path("/run/relevo/lxd-tier.lock")
    lock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    handle = lock.open("a")
    print("waiting for the LXD test tier's lock", flush=True)
    fcntl.flock(handle, fcntl.LOCK_EX)
    pidfile = Path(tempfile.mkdtemp(prefix="relevo-bench-")) / "lxd.pid"
    try:
        LXDClient().server()
    except LXDUnreachableError:
        subprocess.run([str(REPO / "scripts/lxd-daemon"), "start", str(pidfile)], check=True, timeout=120)
    samples: dict[str, list[float]] = defaultdict(list)
    try:
        run(LXDClient(), args.runs, args.rebuild, samples)
    finally:
        if pidfile.exists():
            subprocess.run([str(REPO / "scripts/lxd-daemon"), "stop", str(pidfile)], check=False, timeout=60)
        pidfile.parent.rmdir()
        handle.close()
    print(f"{'operation':<32}{'n':>3}{'median s':>11}{'worst s':>10}")
    for label, values in samples.items():
        print(f"{label:<32}{len(values):>3}{statistics.median(values):>11.3f}{max(values):>10.3f}")


if __name__ == "__main__":
    main()
