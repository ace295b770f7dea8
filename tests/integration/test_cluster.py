"""The local provider for real: HAProxy and Apache processes on loopback, driven through relevo."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.errors import RelevoError
from relevo.procs import group_members
from relevo.providers.base import Fault, NodeState
from relevo.topology import load_topology

from .conftest import RunningCluster, make_topology_file, start_cluster, stop_cluster, wait_until

pytestmark = pytest.mark.integration


def relevo_cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(path), *args], capture_output=True, text=True, check=False
    )


def test_frontend_balances_round_robin(running_cluster: RunningCluster):
    """Two GETs through the frontend are answered by two different web servers."""
    served = []
    for _ in range(2):
        status, headers = running_cluster.get()
        assert status == 200
        served.append(headers["X-Served-By"])
    assert sorted(served) == ["web1", "web2"]


def test_each_node_serves_its_own_page(running_cluster: RunningCluster):
    """Each web node's page names the node, like the seed's containers."""
    import urllib.request

    node = running_cluster.topology.node("web2")
    with urllib.request.urlopen(node.endpoint.url + "/", timeout=5) as response:
        assert "served by web2" in response.read().decode()


def test_stats_need_the_generated_credentials(running_cluster: RunningCluster):
    """Stats and metrics answer 401 without credentials and 200 with the generated ones."""
    assert running_cluster.get(running_cluster.stats_url)[0] == 401
    assert running_cluster.get(running_cluster.metrics_url)[0] == 401
    assert running_cluster.get(running_cluster.stats_url, auth=("admin", "wrong"))[0] == 401
    assert running_cluster.get(running_cluster.stats_url, auth=running_cluster.credentials)[0] == 200
    status, headers = running_cluster.get(running_cluster.metrics_url, auth=running_cluster.credentials)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")


def test_secrets_and_runtime_socket_are_private(running_cluster: RunningCluster):
    """The secrets file, the config holding the password and the Runtime API socket are mode 0600."""
    paths = running_cluster.cluster.paths
    for path in (paths.secrets, paths.haproxy_cfg, paths.runtime_socket):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(paths.root.stat().st_mode) == 0o700


def test_standbys_are_stopped_and_in_maint(running_cluster: RunningCluster):
    """After up, standbys are created but stopped, and HAProxy keeps them in MAINT."""
    health = running_cluster.health()
    for name in ("web1bck", "web2bck"):
        assert running_cluster.cluster.status(name) is NodeState.STOPPED
        assert health[name] == "MAINT"
    assert health["web1"] == health["web2"] == "UP"


def test_killed_server_is_marked_down_and_requests_go_on(running_cluster: RunningCluster):
    """SIGKILL web1: HAProxy marks it DOWN, and every request is then answered by web2."""
    running_cluster.cluster.fault("web1", Fault.CRASH)
    assert running_cluster.cluster.status("web1") is NodeState.STOPPED
    wait_until(lambda: running_cluster.health()["web1"] == "DOWN", "web1 is DOWN", timeout_s=10)
    answers = [running_cluster.get() for _ in range(20)]
    assert [status for status, _ in answers] == [200] * 20
    assert {headers["X-Served-By"] for _, headers in answers} == {"web2"}


def test_hang_and_resume(running_cluster: RunningCluster):
    """SIGSTOP pauses every process of the node (a hang); SIGCONT resumes it."""
    cluster = running_cluster.cluster
    cluster.fault("web2", Fault.HANG)
    assert cluster.status("web2") is NodeState.PAUSED
    wait_until(lambda: running_cluster.health()["web2"] == "DOWN", "hung web2 is DOWN", timeout_s=10)
    cluster.fault("web2", Fault.RESUME)
    assert cluster.status("web2") is NodeState.RUNNING
    wait_until(lambda: running_cluster.health()["web2"] == "UP", "web2 is UP again", timeout_s=10)


def test_start_and_stop_a_standby(running_cluster: RunningCluster):
    """`start` runs a standby's Apache (it answers on its own address), `stop` ends it."""
    import urllib.request

    cluster = running_cluster.cluster
    cluster.start("web1bck")
    assert cluster.status("web1bck") is NodeState.RUNNING
    url = running_cluster.topology.node("web1bck").endpoint.url + "/health"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
    cluster.stop("web1bck")
    assert cluster.status("web1bck") is NodeState.STOPPED


def test_up_is_idempotent(running_cluster: RunningCluster):
    """A second `up` starts nothing and keeps the same processes."""
    before = running_cluster.recorded_groups()
    result = lifecycle.up(running_cluster.topology, controller=False)
    assert result.started == ()
    assert running_cluster.recorded_groups() == before


def test_status_json_through_the_cli(running_cluster: RunningCluster):
    """`relevo status --json` reports URLs and each node's role, state and health."""
    import json

    result = relevo_cli(running_cluster.workdir / "relevo.yaml", "status", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["frontend_url"] == running_cluster.frontend_url
    assert report["stats_url"] == running_cluster.stats_url
    nodes = {n["name"]: n for n in report["nodes"]}
    assert set(nodes) == {"ha1", "web1", "web2", "web1bck", "web2bck"}
    assert (nodes["web1"]["role"], nodes["web1"]["state"], nodes["web1"]["health"]) == (
        "web",
        "running",
        "UP",
    )
    assert (nodes["web2bck"]["state"], nodes["web2bck"]["health"]) == ("stopped", "MAINT")


def test_cli_kill_reaches_the_node(running_cluster: RunningCluster):
    """`relevo kill web1 --signal STOP` pauses web1 and `--signal CONT` resumes it."""
    path = running_cluster.workdir / "relevo.yaml"
    assert relevo_cli(path, "kill", "web1", "--signal", "STOP").returncode == 0
    assert running_cluster.cluster.status("web1") is NodeState.PAUSED
    assert relevo_cli(path, "kill", "web1", "-s", "cont").returncode == 0
    assert running_cluster.cluster.status("web1") is NodeState.RUNNING
    bad = relevo_cli(path, "kill", "web9")
    assert bad.returncode == 2
    assert "no node 'web9'" in bad.stderr


def test_down_leaves_no_process(cluster_dir: Path):
    """`down` stops every process of every node, found by the process groups relevo recorded."""
    running = start_cluster(make_topology_file(cluster_dir))
    groups = running.recorded_groups()
    assert len(groups) == 3  # ha1, web1, web2
    assert all(group_members(pgid) for pgid in groups)
    stop_cluster(running)
    assert not any(group_members(pgid) for pgid in groups)
    assert running.cluster.paths.secrets.exists()  # down removes no file


def test_failed_bring_up_leaves_nothing_running(cluster_dir: Path):
    """When web2's port is taken, `up` fails, says why, and stops what it had started."""
    path = make_topology_file(cluster_dir)
    topology = load_topology(path)
    web2 = topology.node("web2")
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind((web2.address, web2.port))
    blocker.listen()
    try:
        with pytest.raises(RelevoError, match="web2"):
            lifecycle.up(topology, controller=False)
    finally:
        blocker.close()
    cluster = Cluster(topology)
    for name in topology.node_names:
        assert cluster.status(name) is not NodeState.RUNNING, name


def test_missing_tool_is_reported_with_the_install_command(cluster_dir: Path, monkeypatch):
    """Without haproxy on PATH, relevo says exactly what to install."""
    from relevo import commands
    from relevo.errors import MissingToolError
    from relevo.providers import tools

    monkeypatch.setattr(commands, "SEARCH_PATH", str(cluster_dir))
    tools.find_haproxy.cache_clear()
    try:
        with pytest.raises(MissingToolError, match="apt-get install haproxy apache2"):
            tools.find_haproxy()
    finally:
        tools.find_haproxy.cache_clear()


def test_up_and_down_through_the_cli(cluster_dir: Path):
    """`relevo up` prints the URLs and where the credentials are; `relevo down` stops it all."""
    path = make_topology_file(cluster_dir)
    result = relevo_cli(path, "up", "--no-controller")
    try:
        assert result.returncode == 0, result.stderr
        topology = load_topology(path)
        assert topology.balancer.frontend.url in result.stdout
        assert "secrets.json" in result.stdout
    finally:
        down = relevo_cli(path, "down")
    assert down.returncode == 0, down.stderr
    assert "ha1" in down.stdout
    assert (cluster_dir / ".relevo" / "secrets.json").exists()


def test_no_server_left_gives_the_custom_503_page(running_cluster: RunningCluster):
    """With both primaries dead (and no controller), HAProxy answers with the seed's 503 page."""
    import urllib.error
    import urllib.request

    for name in ("web1", "web2"):
        running_cluster.cluster.fault(name, Fault.CRASH)
    wait_until(
        lambda: running_cluster.health()["web2"] == "DOWN" == running_cluster.health()["web1"],
        "both primaries are DOWN",
        timeout_s=10,
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(running_cluster.frontend_url, timeout=5)
    body = info.value.read().decode()
    assert info.value.code == 503
    assert "Sitio no disponible" in body
    assert "Site unavailable" in body
