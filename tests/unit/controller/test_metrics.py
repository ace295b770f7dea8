"""The controller's Prometheus metrics: what each journal record and tick adds, and their server's
credentials."""

from __future__ import annotations

import base64
import urllib.error
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from relevo.controller.events import Event, EventKind
from relevo.controller.metrics import ControllerMetrics, serve
from relevo.secrets import load_or_create_secrets
from relevo.topology import load_topology

from .fakes import NODES


@pytest.fixture
def metrics(tmp_path):
    path = tmp_path / "relevo.yaml"
    path.write_text(f"name: t\nnetwork: 127.9.6.0/24\n{NODES}")
    return ControllerMetrics(load_topology(path))


def samples(metrics: ControllerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def record(kind: EventKind, node: str, **durations: float) -> dict[str, object]:
    event = Event(kind=kind, node=node, from_="maint", to="ready", reason="r", durations=durations)
    return event.record(1000.0)


def test_every_failover_series_starts_at_zero(metrics):
    """Before anything happens each primary's failover and failback counters exist with 0, so that
    Prometheus's increase() sees the first failover as an increase."""
    found = samples(metrics)
    assert found[("relevo_failovers_total", (("node", "web1"), ("standby", "web1bck")))] == 0
    assert found[("relevo_failbacks_total", (("node", "web2"),))] == 0


def test_a_failover_counts_for_its_primary_with_its_times(metrics):
    """A failover record (its node is the standby) counts for the primary it replaced and observes its
    detection, time until served and standby start in the histograms."""
    metrics.on_event(
        record(EventKind.FAILOVER, "web1bck", detection_s=0.1, until_served_s=0.3, standby_start_s=0.2)
    )
    metrics.on_event(record(EventKind.FAILBACK, "web1"))
    found = samples(metrics)
    assert found[("relevo_failovers_total", (("node", "web1"), ("standby", "web1bck")))] == 1
    assert found[("relevo_failbacks_total", (("node", "web1"),))] == 1
    assert found[("relevo_detection_seconds_count", (("node", "web1"),))] == 1
    assert found[("relevo_detection_seconds_bucket", (("le", "0.1"), ("node", "web1")))] == 1
    assert found[("relevo_until_served_seconds_sum", (("node", "web1"),))] == pytest.approx(0.3)
    assert found[("relevo_until_served_seconds_bucket", (("le", "0.2"), ("node", "web1")))] == 0
    assert found[("relevo_standby_start_seconds_count", (("node", "web1bck"),))] == 1


def test_failed_actions_count_by_node_and_action(metrics):
    """action-failed records count by node and the action that failed; a standby that failed to start too."""
    failed = Event(kind=EventKind.ACTION_FAILED, node="web1bck", from_="start", to="failed", reason="x")
    metrics.on_event(failed.record(1.0))
    metrics.on_event(failed.record(2.0))
    metrics.on_event(record(EventKind.STANDBY_FAILED, "web2bck"))
    found = samples(metrics)
    assert found[("relevo_actions_failed_total", (("action", "start"), ("node", "web1bck")))] == 2
    assert found[("relevo_actions_failed_total", (("action", "standby-start"), ("node", "web2bck")))] == 1


def test_a_tick_sets_durations_states_and_the_journal_backlog(metrics):
    """Each tick observes its duration and sets node states one-hot, HAProxy's answer and the backlog."""
    snapshot = {
        "haproxy": True,
        "journal": {"pending": 7, "dropped": 2},
        "nodes": {"web1": {"process": "paused", "health": "down", "admin": "maint"}},
    }
    metrics.on_tick(0.004, snapshot)
    found = samples(metrics)
    assert found[("relevo_tick_duration_seconds_count", ())] == 1
    assert found[("relevo_tick_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert found[("relevo_journal_backlog_events", ())] == 7
    assert found[("relevo_journal_dropped_events", ())] == 2
    assert found[("relevo_haproxy_answering", ())] == 1
    assert found[("relevo_node_process_state", (("node", "web1"), ("state", "paused")))] == 1
    assert found[("relevo_node_process_state", (("node", "web1"), ("state", "running")))] == 0
    assert found[("relevo_node_health", (("node", "web1"), ("state", "down")))] == 1
    assert found[("relevo_node_admin_state", (("node", "web1"), ("state", "maint")))] == 1


def get(url: str, auth: tuple[str, str] | None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_metrics_are_served_only_with_the_credentials(metrics):
    """/metrics answers the text format with the credentials, 401 without them or with a wrong one."""
    server = serve(metrics, "127.0.0.1", 0, lambda: ("admin", "pw"))
    try:
        assert get(server.url, None)[0] == 401
        assert get(server.url, ("admin", "nope"))[0] == 401
        status, text = get(server.url, ("admin", "pw"))
        assert status == 200
        assert 'relevo_failovers_total{node="web1",standby="web1bck"} 0.0' in text
        assert get(server.url.replace("/metrics", "/other"), ("admin", "pw"))[0] == 404
    finally:
        server.close()


def test_the_loop_tells_the_metrics_each_failover_it_journals(tmp_path):
    """Wired into the controller (its listener hook), a killed primary's failover shows up as one more
    failover for that primary, with the journal's detection time."""
    from relevo.providers.base import Fault

    from .fakes import World, controller, events, run, topology

    topo = topology(tmp_path)
    world = World.seed(topo)
    ctl = controller(topo, world)
    ctl.listener = ControllerMetrics(topo)
    run(world, ctl, 1.0)
    world.fault("web1", Fault.CRASH)
    run(world, ctl, 3.0)
    assert len(events(topo, "failover")) == 1
    found = samples(ctl.listener)
    assert found[("relevo_failovers_total", (("node", "web1"), ("standby", "web1bck")))] == 1
    assert found[("relevo_detection_seconds_count", (("node", "web1"),))] == 1


def free_port(address: str) -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def test_a_reload_moves_the_metrics_listener_when_its_port_changed(tmp_path):
    """SIGHUP's re-read topology with another `controller.metrics_port`: the old port is let go, the new
    one serves the same counters; the same port keeps the same server; 0 turns it off."""
    from relevo.controller.daemon import MetricsListener

    net = "127.199.79"
    first, second = free_port(f"{net}.2"), free_port(f"{net}.2")

    def topology(port: int):
        path = tmp_path / "relevo.yaml"
        path.write_text(f"name: t\nnetwork: {net}.0/24\ncontroller: {{metrics_port: {port}}}\n{NODES}")
        return load_topology(path)

    before = topology(first)
    (before.state_dir).mkdir()
    listener = MetricsListener(before)
    try:
        assert listener.server is not None and listener.metrics is not None
        secrets = load_or_create_secrets(before.state_dir / "secrets.json")
        auth = (secrets.stats_user, secrets.stats_password)
        assert get(f"http://{net}.2:{first}/metrics", auth)[0] == 200
        kept = listener.server
        listener.follow(topology(first))
        assert listener.server is kept
        metrics = listener.metrics
        listener.follow(topology(second))
        assert listener.metrics is metrics
        assert get(f"http://{net}.2:{second}/metrics", auth)[0] == 200
        with pytest.raises(urllib.error.URLError):
            get(f"http://{net}.2:{first}/metrics", auth)
        listener.follow(topology(0))
        assert listener.server is None
        with pytest.raises(urllib.error.URLError):
            get(f"http://{net}.2:{second}/metrics", auth)
    finally:
        listener.close()
