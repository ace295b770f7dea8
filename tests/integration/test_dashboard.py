"""The dashboard on a real cluster (HAProxy, Apache, the controller, `relevo up`'s dashboard process), in
Debian's Chromium driven by Playwright; and the controller's metrics scraped by a real Prometheus."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relevo.cluster import Cluster
from relevo.controller.events import read_events
from relevo.dashboard import process
from relevo.providers.base import Fault
from relevo.topology import load_topology
from tests.pages import logged_in_page

from .conftest import RunningCluster, make_topology_file, skip_without_daemons, stop_cluster, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"


def relevo(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def up_with_dashboard(cluster_dir: Path) -> Iterator[tuple[RunningCluster, str]]:
    """The seed's layout brought up by `relevo up` (controller and dashboard in the background), brought
    down by `relevo down`, which must stop the dashboard too."""
    skip_without_daemons()
    path = make_topology_file(cluster_dir)
    started = relevo(path, "up", "--json")
    topology = load_topology(path)
    running = RunningCluster(topology=topology, cluster=Cluster(topology), workdir=cluster_dir)
    try:
        assert started.returncode == 0, started.stderr
        url = json.loads(started.stdout)["dashboard_url"]
        assert url == process.dashboard_url(topology)
        yield running, url
    finally:
        down = relevo(path, "down", "--json")
        assert down.returncode == 0, down.stderr
        assert "dashboard" in json.loads(down.stdout)["stopped"]
        assert process.running_pid(topology) is None
        stop_cluster(running)


def artefact(tmp_path: Path, name: str) -> Path:
    """Where a screenshot is kept: $RELEVO_ARTEFACTS when set (CI uploads it), else the test's tmp_path."""
    folder = Path(os.environ.get("RELEVO_ARTEFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


FAILOVER_SHOWN = """() => {
  const cond = (n) => document.querySelector(`.node[data-node="${n}"]`)?.dataset.condition;
  return cond("web1") === "down" && cond("web1bck") === "serving"
    && document.querySelector('.node[data-node="web1bck"] .serving-for').textContent.includes("web1")
    && !!document.querySelector('#chart-rps .marker.kind-failover[data-node="web1bck"]')
    && !!document.querySelector('#journal li[data-kind="failover"][data-node="web1bck"]');
}"""

# A `relevo bench` in progress on the page: said in the header, its start marked on the chart, and its
# own points (responses/s, p50 and p99 of its last second) among the charts' data.
RUN_SHOWN = """() => document.getElementById("run").textContent.includes("run in progress: relevo bench")
  && !!document.querySelector('#chart-latency .marker.kind-run[data-label="run started"]')
  && state.series.some((p) => p.load && p.load.rps > 0 && p.load.p50_ms > 0 && p.load.p99_ms >= p.load.p50_ms)
"""
RUN_ENDED = """() => document.getElementById("run").hidden
  && !!document.querySelector('#chart-latency .marker.kind-run[data-label="run ended"]')"""

# The stop button's drain as the page shows it: the journal's operator line (web2 set to drain), its
# standby put in service for the planned maintenance, then web2 stopped. (The drain itself lasted ~0.3 s
# here, less than a push interval: the journal, not web2's box, is where it is sure to be seen.)
DRAIN_SHOWN = """() => {
  const lines = [...document.querySelectorAll('#journal li')].map((li) => li.textContent);
  return lines.some((t) => t.includes("operator") && t.includes("web2: ready → drain"))
    && lines.some((t) => t.includes("failover") && t.includes("web2bck: maint → ready")
                         && t.includes("planned"))
    && document.querySelector('.node[data-node="web2"]').dataset.condition === "down"
    && document.querySelector('.node[data-node="web2bck"]').dataset.condition === "serving"
    && document.querySelector('.node[data-node="web2bck"] .serving-for').textContent.includes("web2");
}"""


def test_page_shows_a_failover_and_drives_a_drain(up_with_dashboard, tmp_path):
    """Opened in Chromium at 1280 px, the page shows a `relevo bench` in progress (its p50/p99 on the
    charts, its start and end marked) and, within 2 s of `relevo kill web1` during it, web1 down,
    web1bck serving in its place, the failover marker on the chart and the journal line; web2's stop
    button drains web2 (its standby serves, then it stops); a wrong password gets 401 and a POST without
    the CSRF token is refused; nothing goes wrong on the console. Screenshots are kept."""
    from playwright.sync_api import sync_playwright

    running, url = up_with_dashboard
    user, password = running.credentials
    path = running.workdir / "relevo.yaml"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            wrong = logged_in_page(browser, user, "wrong")
            refused = wrong.goto(url)
            assert refused is not None and refused.status == 401
            wrong.context.close()

            page = logged_in_page(browser, user, password)
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(url)
            page.wait_for_selector('.node[data-node="web1"][data-condition="serving"]', timeout=10_000)
            page.wait_for_selector('.node[data-node="controller"][data-condition="serving"]', timeout=10_000)

            # A bench runs through the kill: its live responses/s and p50/p99 go on the same charts.
            bench = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relevo",
                    "-f",
                    str(path),
                    "bench",
                    "--rate",
                    "200",
                    "-d",
                    "8s",
                    "-c",
                    "20",
                    "-q",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                page.wait_for_function(RUN_SHOWN, timeout=10_000)
                killed = relevo(path, "kill", "web1")
                assert killed.returncode == 0, killed.stderr
                page.wait_for_function(FAILOVER_SHOWN, timeout=2_000)
                page.screenshot(path=artefact(tmp_path, "dashboard-failover.png"), full_page=True)
                assert bench.wait(timeout=60) == 0, bench.stderr.read() if bench.stderr else ""
            finally:
                if bench.poll() is None:
                    bench.kill()
                    bench.wait()
                if bench.stderr is not None:
                    bench.stderr.close()
            page.wait_for_function(RUN_ENDED, timeout=5_000)
            page.screenshot(path=artefact(tmp_path, "dashboard-failover-run.png"), full_page=True)

            assert problems == []
            status = page.evaluate(
                "() => fetch('api/nodes/web2/kill', {method: 'POST'}).then((r) => r.status)"
            )
            assert status == 403
            assert problems == [
                f"Failed to load resource: the server responded with a status of {status} (Forbidden)"
            ]
            problems.clear()
            assert running.cluster.status("web2").value == "running"

            page.click('.node[data-node="web2"] button[data-action="stop"]')
            page.wait_for_function(DRAIN_SHOWN, timeout=20_000)
            assert page.locator('#chart-rps .marker.kind-fault[data-node="web2"]').count() >= 1
            page.screenshot(path=artefact(tmp_path, "dashboard-drain.png"), full_page=True)
            assert problems == []
        finally:
            browser.close()
    operator = [e for e in read_events(running.cluster.paths.events) if e["kind"] == "operator"]
    assert [(e["node"], e["to"]) for e in operator][:1] == [("web2", "drain")]


def test_page_says_what_it_cannot_reach_and_catches_up(up_with_dashboard, tmp_path):
    """With the controller stopped and HAProxy hung, the page names both as unreachable and keeps
    showing the provider's states; once HAProxy is resumed and the controller started again the
    notices go away by themselves, on the same open page."""
    from playwright.sync_api import sync_playwright

    from relevo.controller import daemon

    running, url = up_with_dashboard
    user, password = running.credentials
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = logged_in_page(browser, user, password)
            page.goto(url)
            page.wait_for_selector('.node[data-node="web1"][data-condition="serving"]', timeout=10_000)
            daemon.stop_background(running.topology)
            running.cluster.fault("ha1", Fault.HANG)
            try:
                page.wait_for_function(
                    """() => !!document.querySelector('#unreachable li[data-source="haproxy ha1"]')
                      && !!document.querySelector('#unreachable li[data-source="controller"]')
                      && document.querySelector('.node[data-node="ha1"]').dataset.condition === "hung"
                      && document.querySelector('.node[data-node="web2"] .state').textContent
                         === "running" """,
                    timeout=10_000,
                )
                page.screenshot(path=artefact(tmp_path, "dashboard-unreachable.png"), full_page=True)
            finally:
                running.cluster.fault("ha1", Fault.RESUME)
                daemon.start_background(running.topology)
            page.wait_for_function(
                """() => !document.querySelector('#unreachable li')
                  && document.querySelector('.node[data-node="ha1"]').dataset.condition === "serving" """,
                timeout=20_000,
            )
        finally:
            browser.close()


def page_state(url: str, credentials: tuple[str, str]) -> dict[str, Any]:
    """The page's data endpoint (/api/state), as the page fetches it."""
    import base64

    request = urllib.request.Request(url + "api/state")
    token = base64.b64encode(":".join(credentials).encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state


def assert_request_log_charted(send: Callable[[], int], url: str, credentials: tuple[str, str]) -> None:
    """Requests sent by `send()` (it returns the answer's status) until the page's data endpoint has a
    point from HAProxy's own request log; that point's figures then: p50 <= p99 in ms, no errors/s,
    from no more requests than were sent, with the receiver listening and no relevo run in progress
    (nor its point). The local and the LXD tiers' check."""
    sent = 0
    found: list[dict[str, Any]] = []

    def sent_and_shown() -> bool:
        nonlocal sent
        for _ in range(10):  # a few requests per look; the looks are bounded by wait_until's timeout
            assert send() == 200
            sent += 1
        state = page_state(url, credentials)
        if "unreachable" not in state["latest"]:
            return False  # the dashboard has not sampled the cluster yet
        assert "haproxy's request log" not in state["latest"]["unreachable"]
        assert state["latest"]["run"] is None
        found.extend(p for p in state["series"] if p.get("log"))
        return bool(found)

    wait_until(sent_and_shown, "HAProxy's request log among the page's points", 30.0)
    point = found[-1]
    assert point["load"] is None
    logged = point["log"]
    assert 0 < logged["n"] <= sent
    assert logged["errors"] == 0.0
    assert 0 <= logged["p50_ms"] <= logged["p99_ms"]


def test_percentiles_from_haproxys_log_with_no_run_in_progress(up_with_dashboard):
    """With no relevo run writing its live feed, requests sent through the frontend reach the page's data
    endpoint from HAProxy's own request log (see assert_request_log_charted)."""
    running, url = up_with_dashboard
    assert_request_log_charted(lambda: running.get()[0], url, running.credentials)


def test_status_json_names_the_dashboard_and_the_controller_metrics(up_with_dashboard):
    """`relevo status --json` names `dashboard_url` (running) and `controller_metrics_url`."""
    running, url = up_with_dashboard
    shown = relevo(running.workdir / "relevo.yaml", "status", "--json")
    report = json.loads(shown.stdout)
    assert report["dashboard_url"] == url
    assert report["dashboard_running"] is True
    stats = running.topology.balancer.stats
    assert report["controller_metrics_url"] == f"http://{stats.address}:8406/metrics"
    code, _ = running.get(report["controller_metrics_url"], auth=running.credentials)
    assert code == 200
    assert running.get(report["controller_metrics_url"])[0] == 401


def test_a_topology_that_turns_the_dashboard_off_gets_none(cluster_dir):
    """`dashboard: {enabled: false}`: `relevo up` starts no dashboard (none holds its lock, nothing
    listens on its port) and names none, nor does `status --json`; the controller's metrics still are."""
    import socket

    skip_without_daemons()
    path = make_topology_file(cluster_dir, "dashboard: {enabled: false}\n")
    topology = load_topology(path)
    running = RunningCluster(topology=topology, cluster=Cluster(topology), workdir=cluster_dir)
    try:
        started = relevo(path, "up", "--json")
        assert started.returncode == 0, started.stderr
        shown = json.loads(started.stdout)
        assert shown["dashboard_url"] is None and shown["controller_metrics_url"]
        assert process.running_pid(topology) is None
        with (
            pytest.raises(ConnectionRefusedError),
            socket.create_connection((topology.balancer.stats.address, topology.dashboard.port), timeout=2),
        ):
            pass
        report = json.loads(relevo(path, "status", "--json").stdout)
        assert (report["dashboard_url"], report["dashboard_running"]) == (None, False)
        assert report["controller_metrics_url"] == shown["controller_metrics_url"]
    finally:
        down = relevo(path, "down", "--json")
        assert down.returncode == 0, down.stderr
        assert "dashboard" not in json.loads(down.stdout)["stopped"]
        stop_cluster(running)


def test_grafana_dashboard_queries_what_haproxy_exports(running_cluster):
    """Every haproxy_* metric docs/grafana-dashboard.json queries is one this HAProxy's exporter serves."""
    import base64
    import re

    from ..unit.controller.test_grafana import expressions

    request = urllib.request.Request(running_cluster.metrics_url)
    token = base64.b64encode(":".join(running_cluster.credentials).encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        exported = set(re.findall(r"^(haproxy_\w+)", response.read().decode(), re.MULTILINE))
    queried = {name for expr in expressions() for name in re.findall(r"\bhaproxy_\w+", expr)}
    assert queried and queried <= exported, f"not exported: {sorted(queried - exported)}"


# --- Prometheus ------------------------------------------------------------------------------------------
def query(base: str, promql: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5) as r:
        answer = json.loads(r.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def test_prometheus_sees_one_more_failover(controlled, tmp_path):
    """A real Prometheus scrapes the controller's /metrics with the cluster's credentials; after web1 is
    killed and its standby serves, its API reports relevo_failovers_total for web1 one higher."""
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.fail("prometheus is not installed: scripts/bootstrap --dev installs it (Debian's package)")
    running = controlled
    user, password = running.credentials
    target = running.topology.balancer.stats.address
    (tmp_path / "password").write_text(password)
    (tmp_path / "password").chmod(0o600)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: relevo\n"
        f"    basic_auth: {{username: {user}, password_file: {tmp_path / 'password'}}}\n"
        f"    static_configs: [{{targets: ['{target}:8406']}}]\n"
    )
    listen = f"{target}:9090"  # the cluster's own loopback address: no other test uses it
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={listen}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://{listen}"
    series = 'relevo_failovers_total{node="web1",job="relevo"}'

    def value() -> float | None:
        try:
            found = query(base, series)
        except OSError:
            return None
        return float(found[0]["value"][1]) if found else None

    try:
        wait_until(
            lambda: value() is not None,
            "Prometheus has scraped the controller",
            60.0,
            explain=lambda: (tmp_path / "prometheus.log").read_text()[-2000:],
        )
        before = value()
        running.cluster.fault("web1", Fault.CRASH)
        wait_until(
            lambda: any(e["kind"] == "failover" for e in read_events(running.cluster.paths.events)),
            "the controller journals the failover",
        )
        wait_until(
            lambda: value() == (before or 0) + 1,
            "Prometheus sees one more failover",
            30.0,
            explain=lambda: f" (it reports {value()})",
        )
        assert before == 0
        up = query(base, 'up{job="relevo"}')
        assert up and up[0]["value"][1] == "1"
    finally:
        server.send_signal(signal.SIGTERM)  # our own child, by its PID
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_an_edited_metrics_port_is_taken_up_by_the_reload(up_with_dashboard):
    """`controller.metrics_port` edited and `relevo up` run again: the running controller is reloaded
    (SIGHUP, not restarted), lets the old port go and serves its metrics on the new one."""
    import socket
    import urllib.error

    running, _url = up_with_dashboard
    path = running.workdir / "relevo.yaml"
    stats = running.topology.balancer.stats
    with socket.socket() as probe:
        probe.bind((stats.address, 0))
        port = probe.getsockname()[1]
    pid = json.loads(relevo(path, "status", "--json").stdout)["controller"]["pid"]
    path.write_text(path.read_text() + f"\ncontroller:\n  metrics_port: {port}\n")
    again = relevo(path, "up", "--json")
    assert again.returncode == 0, again.stderr
    changes = json.loads(again.stdout)["controller_changes"]
    assert any("metrics_port" in change for change in changes), changes
    assert json.loads(relevo(path, "status", "--json").stdout)["controller"]["pid"] == pid
    new = f"http://{stats.address}:{port}/metrics"

    def serves_new() -> bool:
        try:
            return running.get(new, auth=running.credentials)[0] == 200
        except OSError:
            return False

    wait_until(serves_new, "the metrics on the edited port")
    with pytest.raises(urllib.error.URLError):
        running.get(f"http://{stats.address}:8406/metrics", auth=running.credentials)
