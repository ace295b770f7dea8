"""A real cluster (HAProxy + Apache on loopback) per test, on addresses no other test uses."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.errors import RelevoError
from relevo.lxd.network import SUBNET_POOL
from relevo.model import Topology
from relevo.procs import ProcessRecord, group_members
from relevo.providers.base import NodeState
from relevo.topology import load_topology
from tests.conftest import short_dir
from tests.waiting import wait_until as wait_until  # the integration tests' import

# Each cluster gets its own 127.X.Y.0/24, so a cluster left behind by a crashed run never clashes. Under
# pytest-xdist each worker (gw0, gw1, ...) takes a block of its own beside its session's: two workers of
# one run never share a network, whatever their pids.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_SLOT = (os.getppid() % 25) * 8 + int(_WORKER[2:]) % 8 if _WORKER.startswith("gw") else os.getpid() % 200
_networks = itertools.count(_SLOT * 50)

SEED_NODES = """
nodes:
  web1: {role: web}
  web2: {role: web}
  web1bck: {role: standby, standby_for: web1}
  web2bck: {role: standby, standby_for: web2}
"""


# Never 127.213.x: the LXD tier, which scripts/test runs beside this one, listens there (its bridges are
# in lxd.network.SUBNET_POOL, 10.213.0.0/16, and the host reaches a container at 127 + the rest of its
# address: providers/lxd_rules.host_address).
LXD_TIER_OCTET = SUBNET_POOL.network_address.packed[1]


def next_network() -> str:
    n = next(_networks) % 60000
    second = 210 + n // 250 % 40
    second += second >= LXD_TIER_OCTET
    return f"127.{second}.{n % 250 + 1}.0/24"


def skip_without_daemons() -> None:
    for tool in ("haproxy", "apache2"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            pytest.fail(f"{tool} is not installed: the integration tier needs it (.ci/run installs it)")


@dataclass
class RunningCluster:
    topology: Topology
    cluster: Cluster
    workdir: Path

    @property
    def frontend_url(self) -> str:
        return self.topology.balancer.frontend.url + "/"

    @property
    def stats_url(self) -> str:
        return self.topology.balancer.stats.url + "/stats"

    @property
    def metrics_url(self) -> str:
        return self.topology.balancer.stats.url + "/metrics"

    @property
    def credentials(self) -> tuple[str, str]:
        data = json.loads(self.cluster.paths.secrets.read_text())
        return data["stats_user"], data["stats_password"]

    def health(self) -> dict[str, str]:
        """Each server's health as HAProxy sees it now."""
        return {name: stat.health for name, stat in self.cluster.haproxy_servers().items()}

    def get(self, url: str | None = None, *, auth: tuple[str, str] | None = None) -> tuple[int, Message]:
        """One GET; returns the status and the headers, looked up case-insensitively (errors included)."""
        request = urllib.request.Request(url or self.frontend_url)
        if auth:
            import base64

            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
                return response.status, response.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers

    def recorded_groups(self) -> list[int]:
        """Process groups of every node relevo recorded as started (to check nothing is left behind)."""
        groups = []
        for name in self.topology.node_names:
            record = ProcessRecord.load(self.cluster.paths.pid_file(name))
            if record is not None:
                groups.append(record.pgid)
        return groups


def make_topology_file(workdir: Path, extra: str = "", *, nodes: str = SEED_NODES) -> Path:
    """A topology in `workdir` on a fresh loopback network; `extra` adds top-level YAML sections."""
    path = workdir / "relevo.yaml"
    path.write_text(f"name: test\nnetwork: {next_network()}\n{extra}\n{nodes}")
    return path


# Shorter probe and check timeouts and hold than the defaults, for the modules whose runs must be short:
# a failback after 1 s, a hung node declared down `fall` x 0.5 s after its hang.
SHORT_WAITS = "standby: {hold: 1s}\nhealth: {timeout: 500ms}\ncontroller: {probe_timeout: 500ms}\n"


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    with short_dir() as workdir:
        yield workdir


def start_cluster(path: Path, *, controller: bool = False) -> RunningCluster:
    skip_without_daemons()
    topology = load_topology(path)
    lifecycle.up(topology, controller=controller)
    return RunningCluster(topology=topology, cluster=Cluster(topology), workdir=path.parent)


def stop_cluster(running: RunningCluster) -> None:
    """Stop everything and check that no process of the cluster is left."""
    groups = running.recorded_groups()
    lifecycle.down(running.topology)
    leftovers = {pgid: group_members(pgid) for pgid in groups if group_members(pgid)}
    assert not leftovers, f"processes left running after down: {leftovers}"
    for name in running.topology.node_names:
        assert running.cluster.status(name) is not NodeState.RUNNING


@contextlib.contextmanager
def cluster_in_short_dir(
    extra: str = SHORT_WAITS,
    *,
    nodes: str = SEED_NODES,
    controller: bool = True,
    tmpfs_size: str | None = None,
) -> Iterator[RunningCluster]:
    """A cluster (the seed's layout with the controller and SHORT_WAITS unless told) in a short_dir of
    its own, for a module to share; every fault healed, the cluster stopped and its directory removed at
    the end."""
    with short_dir(tmpfs_size=tmpfs_size) as workdir:
        running = start_cluster(make_topology_file(workdir, extra, nodes=nodes), controller=controller)
        try:
            yield running
        finally:
            with contextlib.suppress(RelevoError):
                running.cluster.heal_all()
            stop_cluster(running)


@pytest.fixture
def running_cluster(cluster_dir: Path) -> Iterator[RunningCluster]:
    """The seed's layout, up (without the failover controller), torn down after the test."""
    running = start_cluster(make_topology_file(cluster_dir))
    try:
        yield running
    finally:
        stop_cluster(running)


@pytest.fixture
def controlled(running_cluster: RunningCluster) -> Iterator[RunningCluster]:
    """The seed's cluster with the failover controller running in the background (as `relevo up` runs it)."""
    from relevo.controller import daemon

    topology = running_cluster.topology
    daemon.start_background(topology)
    try:
        wait_until(lambda: bool(daemon.controller_status(topology)["ticking"]), "the controller ticks")
        yield running_cluster
    finally:
        daemon.stop_background(topology)
