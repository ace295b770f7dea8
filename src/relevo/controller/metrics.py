"""The controller's metrics in Prometheus's text format, made with `prometheus-client` (not by hand).

The loop tells `ControllerMetrics` two things (its `Listener` hooks): each journal record as it is
written, and each tick's duration with the snapshot `relevo status` reads. Everything here is derived
from those, so the metrics say what the journal says. `serve` exposes them at `/metrics` on loopback,
behind the cluster's generated credentials (as HAProxy's own `/metrics` is), from a thread of the
controller's process: a scrape never waits for a tick, and a tick never waits for a scrape.

Imported only by the running controller (`relevo watch`), so `import relevo` and `relevo bench` do not
pay for prometheus-client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

from relevo.model import Topology
from relevo.secrets import authorized

# Failover times here run from ~0.1 s (local, one tick) to ~15 s (a container on an emulated VM).
FAILOVER_BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0)
# A tick does a few probes and one Runtime API read: milliseconds, unless something hangs.
TICK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROCESS_STATES = ("running", "paused", "stopped", "missing", "unknown")
HEALTH_STATES = ("up", "down", "unknown")
ADMIN_STATES = ("ready", "drain", "maint", "unknown")


class ControllerMetrics:
    """The controller's counters, histograms and gauges, in a registry of their own."""

    def __init__(self, topology: Topology, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._primary_of = {n.name: n.standby_for for n in topology.standbys if n.standby_for}
        self._primaries = tuple(n.name for n in topology.primaries)
        r = self.registry
        self.failovers = Counter(
            "relevo_failovers",
            "Failovers: a standby put in service in its primary's place (node: the primary).",
            ["node", "standby"],
            registry=r,
        )
        self.failbacks = Counter(
            "relevo_failbacks", "Failbacks: a primary given its traffic back.", ["node"], registry=r
        )
        self.detection = Histogram(
            "relevo_detection_seconds",
            "From a primary's last passing probe to the controller's verdict that it is down.",
            ["node"],
            buckets=FAILOVER_BUCKETS_S,
            registry=r,
        )
        self.until_served = Histogram(
            "relevo_until_served_seconds",
            "From a primary's last passing probe (or its planned drain) to its standby in service.",
            ["node"],
            buckets=FAILOVER_BUCKETS_S,
            registry=r,
        )
        self.standby_start = Histogram(
            "relevo_standby_start_seconds",
            "From a standby's start to its first passing probe.",
            ["node"],
            buckets=FAILOVER_BUCKETS_S,
            registry=r,
        )
        self.actions_failed = Counter(
            "relevo_actions_failed",
            "Actions that failed (retried after a backoff), by node and action.",
            ["node", "action"],
            registry=r,
        )
        self.tick = Histogram(
            "relevo_tick_duration_seconds",
            "How long one controller tick took.",
            buckets=TICK_BUCKETS_S,
            registry=r,
        )
        self.journal_backlog = Gauge(
            "relevo_journal_backlog_events",
            "Journal events waiting in memory because the journal cannot be written.",
            registry=r,
        )
        self.journal_dropped = Gauge(
            "relevo_journal_dropped_events", "Journal events lost because the backlog was full.", registry=r
        )
        self.process = Gauge(
            "relevo_node_process_state",
            "1 for each node's process state as the provider reports it (0 for the other states).",
            ["node", "state"],
            registry=r,
        )
        self.health = Gauge(
            "relevo_node_health",
            "1 for each node's health by the controller's own probes (0 for the other states).",
            ["node", "state"],
            registry=r,
        )
        self.admin = Gauge(
            "relevo_node_admin_state",
            "1 for each node's admin state in HAProxy (ready, drain, maint; unknown when unread).",
            ["node", "state"],
            registry=r,
        )
        self.haproxy_answering = Gauge(
            "relevo_haproxy_answering", "1 while HAProxy's Runtime API answers the controller.", registry=r
        )
        self.ticks = Counter("relevo_ticks", "Controller ticks run.", registry=r)
        for name in self._primaries:  # each series exists from the start: increase() needs its 0
            self.failbacks.labels(node=name)
        for standby, primary in self._primary_of.items():
            self.failovers.labels(node=primary, standby=standby)

    # --- the loop's hooks (`relevo.controller.recorder.Listener`) --------------------------------
    def on_event(self, record: Mapping[str, Any]) -> None:
        kind, node = record.get("kind"), str(record.get("node", ""))
        durations = record.get("durations") or {}
        if kind == "failover":
            primary = self._primary_of.get(node, node)
            self.failovers.labels(node=primary, standby=node).inc()
            _observe(self.detection, primary, durations.get("detection_s"))
            _observe(self.until_served, primary, durations.get("until_served_s"))
            _observe(self.standby_start, node, durations.get("standby_start_s"))
        elif kind == "failback":
            self.failbacks.labels(node=node).inc()
        elif kind == "action-failed":
            self.actions_failed.labels(node=node, action=str(record.get("from", ""))).inc()
        elif kind == "standby-failed":
            self.actions_failed.labels(node=node, action="standby-start").inc()

    def on_tick(self, took_s: float, snapshot: Mapping[str, Any]) -> None:
        self.ticks.inc()
        self.tick.observe(took_s)
        journal = snapshot.get("journal") or {}
        self.journal_backlog.set(float(journal.get("pending") or 0))
        self.journal_dropped.set(float(journal.get("dropped") or 0))
        self.haproxy_answering.set(1.0 if snapshot.get("haproxy") else 0.0)
        for name, view in (snapshot.get("nodes") or {}).items():
            _one_hot(self.process, name, view.get("process") or "unknown", PROCESS_STATES)
            _one_hot(self.health, name, view.get("health") or "unknown", HEALTH_STATES)
            _one_hot(self.admin, name, view.get("admin") or "unknown", ADMIN_STATES)


def _observe(histogram: Histogram, node: str, value: object) -> None:
    if isinstance(value, int | float) and value >= 0:
        histogram.labels(node=node).observe(float(value))


def _one_hot(gauge: Gauge, node: str, state: str, states: Iterable[str]) -> None:
    for candidate in states:
        gauge.labels(node=node, state=candidate).set(1.0 if candidate == state else 0.0)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per scrape would drown the controller's log


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host = self.server.server_address[0]
        shown = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{shown}:{self.server.server_port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(
    metrics: ControllerMetrics, address: str, port: int, credentials: Callable[[], tuple[str, str]]
) -> MetricsServer:
    """Serve `/metrics` on address:port from a daemon thread; every request needs the credentials."""
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        user, password = credentials()
        if not authorized(environ.get("HTTP_AUTHORIZATION", ""), user, password):
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", 'Basic realm="relevo"'), ("Content-Type", "text/plain")],
            )
            return [b"the cluster's credentials are needed (its secrets file)\n"]
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"see /metrics\n"]
        result: Iterable[bytes] = exposition(environ, start_response)
        return result

    server = make_server(address, port, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return MetricsServer(server=server, thread=thread)
