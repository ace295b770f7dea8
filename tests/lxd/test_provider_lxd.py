"""`provider: lxd` end to end against the real daemon: one cluster of five containers on a bridge the
test's topology makes relevo create (NAT, routing and firewall off), reached from this host only through
the balancer's proxy devices on loopback and, for the controller's probes, on that bridge. The checks
share the cluster, in order: up, traffic, stats, a crash and a failback under open-loop load, a hang,
and destroy leaving LXD as it was."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest

from relevo import lifecycle
from relevo.controller import daemon
from relevo.doctor_addresses import topology_checks
from relevo.lxd.client import LXDClient
from relevo.providers.base import Fault, NodeState
from relevo.providers.lxd import LXDProvider
from relevo.render.haproxy import GUEST_ACCOUNT
from relevo.scenarios.catalogue import catalogue
from relevo.scenarios.catalogue import names as catalogue_names
from relevo.scenarios.checks import Thresholds
from relevo.scenarios.faults import unsupported
from relevo.scenarios.runner import LoadOverride, run_one
from relevo.topology import load_topology
from tests.accounts import parent_and_worker_accounts, ps_argv
from tests.pages import logged_in_page

from ..integration.test_dashboard import assert_request_log_charted
from .conftest import (
    LXDCluster,
    TierImage,
    assert_no_failures,
    finish,
    get,
    lxc_listings,
    lxd_inventory,
    open_load,
    served,
    up_on_lxd,
    wait_until,
)
from .test_client_real import _client_certificate, http_status

pytestmark = [pytest.mark.lxd, pytest.mark.timeout(900)]

TAG = f"{os.getpid() % 1_000_000}"
STANDBY_CPU = 0.5  # web2bck's capacity.cpu: its container's CPU limit


@pytest.fixture(scope="module")
def lxd_cluster(
    lxd: LXDClient, tier_image: TierImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LXDCluster]:
    """The seed's five nodes as containers, up; destroyed (and the test image removed) at the end,
    whatever happened."""
    body = (
        # Short probe and check timeouts and hold (as the integration tier's): a partition of 2.5 s
        # is seen and failed over within it, a failback is done within a short run.
        "standby: {hold: 1s}\nhealth: {timeout: 500ms}\ncontroller: {probe_timeout: 500ms}\n"
        "nodes:\n  web1: {role: web}\n  web2: {role: web}\n"
        "  web1bck: {role: standby, standby_for: web1}\n"
        f"  web2bck: {{role: standby, standby_for: web2, capacity: {{cpu: {STANDBY_CPU}}}}}\n"
    )
    with up_on_lxd(lxd, tier_image, tmp_path_factory.mktemp("lxd"), "rt", body) as up:
        yield LXDCluster.of(up, lxd)


def in_service(running: LXDCluster, server: str) -> bool:
    return running.cluster.haproxy_servers().get(server) is not None and (
        running.cluster.haproxy_servers()[server].health == "UP"
    )


def test_up_makes_five_containers_with_the_standbys_stopped(lxd_cluster: LXDCluster) -> None:
    """`up` creates one container per node; the balancer and primaries run, the standbys are STOPPED,
    and the bridge relevo made has NAT and routing off."""
    running = lxd_cluster
    assert running.statuses() == {
        "ha1": "Running",
        "web1": "Running",
        "web2": "Running",
        "web1bck": "Stopped",
        "web2bck": "Stopped",
    }
    provider = running.cluster.provider_for("web1")
    [network] = [n for n in running.client.networks() if n["name"] == provider.network_name]  # type: ignore[attr-defined]
    assert network["config"]["ipv4.nat"] == "false" and network["config"]["ipv4.routing"] == "false"
    assert running.cluster.statuses(running.topology.node_names)["web1bck"] is NodeState.STOPPED


def test_gets_through_the_balancer_container_are_answered_by_both_primaries(lxd_cluster: LXDCluster) -> None:
    """GETs to the frontend's loopback proxy are answered 200 by web1 and by web2."""
    answers = [get(lxd_cluster.url) for _ in range(20)]
    assert {status for status, _ in answers} == {200}
    assert {server for _, server in answers} == {"web1", "web2"}


def test_the_daemons_that_serve_traffic_run_unprivileged_in_their_containers(lxd_cluster: LXDCluster) -> None:
    """In ha1 HAProxy's master is root (it reads the 0600 files) and its workers run as `haproxy`; in web1
    Apache's parent is root and its workers run as `www-data`: nothing that parses a request is root."""
    provider = lxd_cluster.cluster.provider_for("ha1")
    assert isinstance(provider, LXDProvider)

    def accounts(node: str, command: str) -> tuple[set[str], set[str]]:
        return parent_and_worker_accounts(provider.host.run(node, ps_argv(command), what="list"))

    assert accounts("ha1", "haproxy") == ({"root"}, {GUEST_ACCOUNT[0]})
    assert accounts("web1", "apache2") == ({"root"}, {"www-data"})


def test_the_stats_page_on_loopback_needs_the_credentials(lxd_cluster: LXDCluster) -> None:
    """The stats GUI answers on its loopback address with the generated credentials only: 401 without
    them or with a wrong password, 200 with them; and the Runtime API answers through the socket mapped
    into the state directory (0600)."""
    running = lxd_cluster
    stats = running.topology.balancer.stats
    assert stats.address.startswith("127.")
    assert get(stats.url + "/stats")[0] == 401
    secrets = json.loads(running.cluster.paths.secrets.read_text())
    assert get(stats.url + "/stats", auth=(secrets["stats_user"], secrets["stats_password"] + "x"))[0] == 401
    assert get(stats.url + "/stats", auth=(secrets["stats_user"], secrets["stats_password"]))[0] == 200
    assert running.cluster.paths.runtime_socket.stat().st_mode & 0o777 == 0o600
    assert set(running.cluster.haproxy_servers()) == {"web1", "web2", "web1bck", "web2bck"}


def test_doctor_counts_the_running_cluster_s_ports_bridge_and_names_as_its_own(
    lxd_cluster: LXDCluster,
) -> None:
    """On the running cluster doctor's address checks all pass: the proxy ports are held by this
    cluster's balancer, the route to the bridge is its own, the containers' names and addresses too."""
    checks = {c.name: c for c in topology_checks(lxd_cluster.topology)}
    assert checks["ha1 frontend"].detail.endswith("held by this cluster's ha1")
    assert {n: c.ok for n, c in checks.items()} == dict.fromkeys(
        ["ha1 frontend", "ha1 stats", "bridge subnet", "LXD names", "LXD addresses"], True
    )


def test_a_forced_stop_fails_over_and_a_restart_fails_back_with_no_failed_request(
    lxd_cluster: LXDCluster,
) -> None:
    """Under open-loop load: web1's container force-stopped → web1bck started and serving, 0 failed;
    web1 started again → web1bck drained and stopped, 0 failed."""
    running = lxd_cluster
    with open_load(running.url) as load:
        wait_until(lambda: served(load, "web1") > 20 and served(load, "web2") > 20, "both primaries serve")
        running.cluster.fault("web1", Fault.CRASH)
        wait_until(lambda: served(load, "web1bck") > 20, "web1bck serves clients", explain=running.explain)
        assert running.statuses()["web1bck"] == "Running"
        result = finish(load)
    assert_no_failures(result)
    with open_load(running.url) as load:
        wait_until(lambda: served(load, "web1bck") > 20, "web1bck serves the load")
        lifecycle.locked_start(running.cluster, "web1")
        wait_until(
            lambda: running.statuses()["web1bck"] == "Stopped",
            "web1bck is drained and stopped",
            explain=running.explain,
        )
        before = served(load, "web1")
        wait_until(lambda: served(load, "web1") > before + 20, "web1 serves again")
        result = finish(load)
    assert_no_failures(result)


def test_a_frozen_container_is_replaced(lxd_cluster: LXDCluster) -> None:
    """web2's container frozen (the hang fault: connects, never answers) → web2bck started and serving."""
    running = lxd_cluster
    running.cluster.fault("web2", Fault.HANG)
    assert running.statuses()["web2"] == "Frozen"
    wait_until(lambda: in_service(running, "web2bck"), "web2bck is in service", explain=running.explain)
    answers = {get(running.url)[1] for _ in range(20)}
    assert "web2bck" in answers and "web2" not in answers
    failovers = [e["node"] for e in daemon.recent_events(running.topology, 50) if e["kind"] == "failover"]
    assert failovers == ["web1bck", "web2bck"]


@pytest.fixture
def dashboard(lxd_cluster: LXDCluster) -> Iterator[tuple[str, tuple[str, str]]]:
    """`relevo up`'s dashboard of the module's cluster, started in the background as `up` starts it,
    and stopped by its PID afterwards: its URL and the cluster's credentials."""
    from relevo.dashboard import process

    running = lxd_cluster
    _pid, url = process.start_background(running.topology)
    secrets = json.loads(running.cluster.paths.secrets.read_text())
    try:
        yield url, (secrets["stats_user"], secrets["stats_password"])
    finally:
        process.stop_background(running.topology)


def test_the_dashboard_shows_the_containers_states(
    lxd_cluster: LXDCluster, dashboard: tuple[str, tuple[str, str]], tmp_path: Path
) -> None:
    """`relevo up`'s dashboard on an LXD cluster, opened once in Chromium: every node's state on the page
    is its container's (a frozen one shown as frozen), the controller runs, and the page has no
    buttons (actions are off by default for containers)."""
    from playwright.sync_api import sync_playwright

    running = lxd_cluster
    url, (user, password) = dashboard
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = logged_in_page(browser, user, password)
            page.goto(url)
            page.wait_for_selector('.node[data-node="controller"][data-condition="serving"]', timeout=20_000)

            def shown() -> dict[str, str]:
                found: dict[str, str] = page.evaluate(
                    """() => Object.fromEntries([...document.querySelectorAll('.node[data-node]')]
                      .filter((n) => n.dataset.node !== "controller")
                      .map((n) => [n.dataset.node, n.querySelector('.state').textContent]))"""
                )
                return found

            def agrees() -> bool:
                wanted = {n: s.lower() for n, s in running.statuses().items()}
                return shown() == {n: wanted[n] for n in shown()} and len(shown()) == 5

            wait_until(
                agrees,
                "the page shows each container's state",
                timeout_s=20.0,
                explain=lambda: f" (page {shown()}, LXD {running.statuses()})",
            )
            assert page.locator("button[data-action]").count() == 0
            page.screenshot(path=tmp_path / "dashboard-lxd.png", full_page=True)
        finally:
            browser.close()


def test_the_dashboard_charts_haproxys_request_log_from_the_balancer_container(
    lxd_cluster: LXDCluster, dashboard: tuple[str, tuple[str, str]]
) -> None:
    """With no relevo run in progress, GETs through the balancer container reach the dashboard's data
    endpoint as HAProxy's own request log, carried out of the container by its `relevo-log` proxy
    device: p50 <= p99 in ms, no errors, from no more requests than were sent (without the device,
    no point ever has the log: checked by removing it)."""
    url, credentials = dashboard
    assert_request_log_charted(lambda: get(lxd_cluster.url)[0], url, credentials)


def test_a_node_s_cpu_capacity_is_its_container_s_cpu_limit(lxd_cluster: LXDCluster) -> None:
    """web2bck's `capacity.cpu: 0.5` is its container's limits.cpu (1) and limits.cpu.allowance
    (50ms/100ms), which the kernel enforces on the running container as a 50 ms CFS quota per 100 ms;
    web2, with no capacity set, has no limit."""
    running = lxd_cluster
    instance = running.client.instance(running.container("web2bck"))
    assert instance.status == "Running"  # web2bck serves since the hang test
    assert (instance.config.get("limits.cpu"), instance.config.get("limits.cpu.allowance")) == (
        "1",
        "50ms/100ms",
    )
    assert "limits.cpu.allowance" not in running.client.instance(running.container("web2")).config
    assert cfs_quota_us(instance.pid) == (50_000, 100_000)


def cfs_quota_us(pid: int) -> tuple[int, int]:
    """The CFS quota and period of the cgroup holding `pid` (cgroup v1's cpu controller, or v2's cpu.max)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            group = Path("/sys/fs/cgroup") / controllers.split(",")[0] / path.lstrip("/")
            group = group if group.exists() else Path("/sys/fs/cgroup/cpu,cpuacct") / path.lstrip("/")
            quota = int((group / "cpu.cfs_quota_us").read_text())
            return quota, int((group / "cpu.cfs_period_us").read_text())
        if controllers == "":
            quota_text, period = (Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.max").read_text().split()
            return (-1 if quota_text == "max" else int(quota_text)), int(period)
    raise AssertionError(f"no cpu cgroup for PID {pid}")


@pytest.fixture
def https_remote(lxd_cluster: LXDCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The cluster's own daemon as the HTTPS remote `here`, as `lxc remote add` records one (lxc's
    config: address, client certificate, pinned server certificate), listening on loopback only while
    the test runs; the daemon's config and trust store are put back afterwards."""
    local = lxd_cluster.client
    conf = tmp_path / "lxc"
    (conf / "servercerts").mkdir(parents=True)
    cert, _key = _client_certificate(conf)
    (conf / "servercerts" / "here.crt").write_text(local.server()["environment"]["certificate"])
    port = 18443 + os.getpid() % 1000
    url = f"https://127.0.0.1:{port}"
    (conf / "config.yml").write_text(f"remotes:\n  here: {{addr: '{url}', protocol: lxd}}\n")
    monkeypatch.setenv("LXD_CONF", str(conf))
    previous = local.server()["config"].get("core.https_address", "")
    fingerprint = None
    try:
        local.update_server_config({"core.https_address": f"127.0.0.1:{port}"})
        fingerprint = local.trust_certificate(cert.read_text(), name=f"relevo-test-{TAG}")
        yield url
    finally:
        if fingerprint:
            local.untrust_certificate(fingerprint)
        local.update_server_config({"core.https_address": previous})


def test_a_node_on_an_https_remote_is_reached_through_it(lxd_cluster: LXDCluster, https_remote: str) -> None:
    """A node whose `options.remote` names an HTTPS remote is looked up, listed, and run in through that
    remote: the multi-host path, against this same daemon listening on loopback."""
    running = lxd_cluster
    source = running.topology.source
    assert source is not None
    network = running.cluster.provider_for("web1").network_name  # type: ignore[attr-defined]
    remote_file = source.with_name("relevo-remote.yaml")
    remote_file.write_text(
        source.read_text().replace(
            "  web2bck: {role: standby, standby_for: web2,",
            f"  web2bck: {{role: standby, standby_for: web2, options: {{remote: here, network: {network}}},",
        )
    )
    remote_topology = load_topology(remote_file)
    assert remote_topology.state_dir == running.topology.state_dir  # the same cluster, seen anew
    provider = LXDProvider(remote_topology)
    client, name = provider.placement.resolve("web2bck")
    assert client.endpoint.url == https_remote
    assert name == running.container("web2bck")
    assert provider.statuses(["web1", "web2bck"]) == {"web1": NodeState.RUNNING, "web2bck": NodeState.RUNNING}
    assert provider.host.run("web2bck", ["cat", "/etc/hostname"], what="read").strip() == name
    assert provider.host.read_file("web2bck", PurePosixPath("/var/www/relevo/health")) == "ok\n"


def test_a_node_is_created_started_and_destroyed_on_an_https_remote(
    lxd_cluster: LXDCluster, https_remote: str, tmp_path: Path
) -> None:
    """A cluster whose web node lives on the remote `here`, on the network named there, at the address
    the topology gives it: `create` makes only the container there (recorded as here:NAME; no bridge, no
    profile), it serves at that address once started, and `destroy` removes it through the remote,
    leaving LXD as it was."""
    running = lxd_cluster
    before = lxd_inventory(running.client)
    network = running.cluster.provider_for("web1").network_name  # type: ignore[attr-defined]
    subnet = ipaddress.IPv4Network(running.topology.network)
    address = str(subnet[20])
    lxd = running.topology.provider_options("lxd")  # the tier's image and pool
    (tmp_path / "relevo.yaml").write_text(
        f"name: rr{TAG}\nprovider: lxd\nnetwork: {subnet}\n"
        f"providers:\n  lxd: {{image: '{lxd['image']}', storage_pool: {lxd['storage_pool']}}}\n"
        f"nodes:\n  web1: {{role: web, address: {address}, options: {{remote: here, network: {network}}}}}\n"
    )
    provider = LXDProvider(load_topology(tmp_path / "relevo.yaml"))
    try:
        provider.create("web1")
        assert provider.created.load() == {
            "instances": [f"here:rr{TAG}-web1"],
            "networks": [],
            "profiles": [],
        }
        instance = running.client.instance(f"rr{TAG}-web1")
        assert instance.devices["eth0"]["parent"] == network
        provider.start("web1")
        assert provider.statuses(["web1"]) == {"web1": NodeState.RUNNING}
        wait_until(lambda: http_status(address, port=8080) == 200, f"the remote node answers on {address}")
    finally:
        removed = provider.destroy()
    assert removed == [f"instance here:rr{TAG}-web1"]
    assert lxd_inventory(running.client) == before


# The whole catalogue on the module's cluster, one scenario per test so that each is reported on its own (a
# transient error in one fails that one only), run as `relevo scenarios` runs each of a row: its own
# preparation puts the cluster as it wants, and nothing puts it back in between (the runner does that once,
# after a row's last: here it would be undone at once by the next one's preparation, a controller restart
# and every node's files pushed again; at load 18-21 the twenty put-backs took ~175 s of the 353 s that 40
# preparations took). Short open-loop runs: every built-in fault happens by 6 s, and 10 s
# leaves a container's start of ~2 s and a failback's hold room; a layout with no fault (the seed's five:
# who serves, and nothing failed, or all 503) is judged on 4 s, 800 requests.
CATALOGUE_LOAD = LoadOverride(rate_rps=200, duration_s=10)
CATALOGUE_LOAD_UNFAULTED = LoadOverride(rate_rps=200, duration_s=4)


@pytest.mark.parametrize("name", catalogue_names())
def test_each_built_in_scenario_meets_its_expectation_or_is_skipped_with_a_reason(
    lxd_cluster: LXDCluster, name: str
) -> None:
    """Each of the twenty built-in scenarios (one balancer), in the catalogue's order, run by the scenarios
    runner on LXD: passed (its expectation and its steady state before and after met) or skipped with the
    provider's reason (as root on this host none is: the network faults enter the containers'
    namespaces, cpu-starve is the allowance); not failed."""
    running = lxd_cluster
    available, unavailable = catalogue(running.topology)
    assert name in available, unavailable.get(name)
    scenario = available[name]
    override = CATALOGUE_LOAD if scenario.faults else CATALOGUE_LOAD_UNFAULTED
    scenario = replace(scenario, load=override.apply(scenario.load))
    reasons = [r for r in (unsupported(running.cluster, f) for f in scenario.faults) if r]
    if reasons:
        assert os.geteuid() != 0, f"{name} skipped as root: {reasons}"
        return
    result = run_one(running.cluster, scenario, thresholds=Thresholds())
    broken = [v.what for v in result.verdicts if not v.ok]
    broken += [f"not steady {c.when}: {c.detail}" for c in result.steady if not c.ok]
    assert result.status != "failed", f"{name}: {broken}{running.explain()}"


def test_destroy_leaves_lxd_exactly_as_before(lxd_cluster: LXDCluster) -> None:
    """`relevo destroy` removes every container and the network relevo made, and nothing else: what
    `lxc list`, `lxc network list` and `lxc profile list` print, and every instance, network, profile,
    image, certificate and server setting the API shows, are what they were before `up`."""
    running = lxd_cluster
    lifecycle.destroy(running.topology)
    assert lxc_listings() == running.listed
    assert lxd_inventory(running.client) == running.before
    assert not running.cluster.paths.runtime_socket.exists()
