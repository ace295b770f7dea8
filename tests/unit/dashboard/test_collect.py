"""The dashboard's data: HAProxy's counters into rates, each node's condition, the journal as it grows,
and what it says when a source cannot be reached."""

from __future__ import annotations

import json
from pathlib import Path

from relevo.controller.events import Event, EventKind, EventLog
from relevo.dashboard.collect import Collector, JournalTail, layout, parse_stat
from relevo.errors import RuntimeAPIError
from relevo.providers.base import NodeState
from relevo.topology import load_topology, parse_topology

NODES = """
nodes:
  web1: {role: web}
  web2: {role: web}
  web1bck: {role: standby, standby_for: web1}
  web2bck: {role: standby, standby_for: web2}
"""
HEADER = "# pxname,svname,scur,stot,status,check_status,req_tot,hrsp_5xx,ereq,econ,eresp,rtime,rtime_max,\n"


def stat_text(requests: dict[str, int], status: dict[str, str], errors: int = 0, rtime: int = 3) -> str:
    lines = [HEADER, f"www,FRONTEND,7,100,OPEN,,{sum(requests.values())},{errors},0,,,,,\n"]
    for name, count in requests.items():
        lines.append(f"web,{name},1,{count},{status.get(name, 'UP')},L7OK,{count},0,,0,0,{rtime},9,\n")
    lines.append(f"web,BACKEND,2,100,UP,,{sum(requests.values())},0,,0,0,{rtime},12,\n")
    return "".join(lines)


class FakeRuntime:
    def __init__(self) -> None:
        self.text: str | None = None

    def command(self, line: str) -> str:
        assert line == "show stat"
        if self.text is None:
            raise RuntimeAPIError("HAProxy's Runtime API at admin.sock did not answer: refused")
        return self.text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def collector(tmp_path, states=None):
    path = tmp_path / "relevo.yaml"
    path.write_text(f"name: t\nnetwork: 127.9.7.0/24\n{NODES}")
    topology = load_topology(path)
    running = dict.fromkeys(topology.node_names, NodeState.RUNNING) | {"web1bck": NodeState.STOPPED}
    runtime, clock = FakeRuntime(), Clock()
    made = Collector(
        topology=topology,
        states=lambda names: {n: (states or running)[n] for n in names},
        runtimes={"ha1": runtime},
        clock=clock,
    )
    return made, runtime, clock, topology


def test_parse_stat_reads_servers_frontend_and_backend():
    """`show stat` lines become counters keyed by (proxy, server), FRONTEND and BACKEND included."""
    found = parse_stat(stat_text({"web1": 5, "web2": 7}, {"web2": "MAINT"}, errors=2))
    assert found[("web", "web1")].requests == 5
    assert found[("web", "web2")].status == "MAINT"
    assert found[("www", "FRONTEND")].errors == 2
    assert found[("web", "BACKEND")].rtime_max_ms == 12


def test_rates_are_counter_differences_over_the_sample_interval(tmp_path):
    """Requests/s per server and errors/s are the counters' growth between two samples, divided by the
    time between them; a counter that went back (HAProxy restarted) gives 0, not a negative rate."""
    made, runtime, clock, _ = collector(tmp_path)
    runtime.text = stat_text({"web1": 100, "web2": 100, "web1bck": 0, "web2bck": 0}, {})
    assert made.sample()["point"] is None  # one reading gives no rate yet
    clock.now += 0.5
    runtime.text = stat_text({"web1": 150, "web2": 110, "web1bck": 0, "web2bck": 0}, {}, errors=3)
    point = made.sample()["point"]
    assert point["rps"] == {"web1": 100.0, "web2": 20.0, "web1bck": 0.0, "web2bck": 0.0}
    assert point["errors"] == 6.0
    clock.now += 0.5
    runtime.text = stat_text({"web1": 1, "web2": 1, "web1bck": 0, "web2bck": 0}, {})
    assert made.sample()["point"]["rps"]["web1"] == 0.0


def test_node_conditions_show_who_serves_in_whose_place(tmp_path):
    """A killed primary in MAINT is down, its standby UP is serving in its place, a stopped standby is
    idle, a DRAIN server is draining."""
    made, runtime, _clock, _ = collector(
        tmp_path,
        states={
            "ha1": NodeState.RUNNING,
            "web1": NodeState.STOPPED,
            "web2": NodeState.RUNNING,
            "web1bck": NodeState.RUNNING,
            "web2bck": NodeState.STOPPED,
        },
    )
    runtime.text = stat_text(
        {"web1": 0, "web2": 0, "web1bck": 0, "web2bck": 0},
        {"web1": "MAINT", "web2": "DRAIN", "web2bck": "MAINT"},
    )
    nodes = made.sample()["nodes"]
    assert nodes["web1"]["condition"] == "down"
    assert nodes["web1bck"]["condition"] == "serving"
    assert nodes["web1bck"]["serving_for"] == "web1"
    assert nodes["web2"]["condition"] == "draining"
    assert nodes["web2bck"]["condition"] == "idle"
    assert nodes["web2bck"]["serving_for"] is None


def test_an_unreachable_haproxy_is_named_and_the_rest_still_shown(tmp_path):
    """With HAProxy not answering, the sample says so, has no chart point, still shows the provider's
    states; once HAProxy answers again the next samples have points again."""
    made, runtime, clock, _ = collector(tmp_path)
    update = made.sample()
    assert "did not answer" in update["unreachable"]["haproxy ha1"]
    assert "controller" in update["unreachable"]  # no controller runs here either
    assert update["point"] is None
    assert update["nodes"]["web2"]["state"] == "running"
    assert update["nodes"]["web2"]["condition"] == "unknown"  # running; HAProxy's view unknown
    assert update["nodes"]["ha1"]["haproxy"] == "not answering"
    runtime.text = stat_text({"web1": 0, "web2": 0, "web1bck": 0, "web2bck": 0}, {})
    clock.now += 0.5
    assert "haproxy ha1" not in made.sample()["unreachable"]
    clock.now += 0.5
    assert made.sample()["point"] is not None


def test_history_keeps_the_last_minutes_only(tmp_path):
    """Points older than the window are dropped, so memory stays bounded however long it runs."""
    made, runtime, clock, _ = collector(tmp_path)
    made.history_s = 10.0
    runtime.text = stat_text({"web1": 0, "web2": 0, "web1bck": 0, "web2bck": 0}, {})
    for _ in range(100):
        made.sample()
        clock.now += 0.5
    assert len(made.series) <= 21
    assert made.series[0]["t"] >= clock.now - 0.5 - 10.0


def test_journal_tail_follows_appends_and_rotation(tmp_path):
    """The journal's existing lines come first, then each new line exactly once, including the lines
    written just before a rotation and those after it."""
    path = tmp_path / "events.jsonl"
    log = EventLog(path, max_bytes=600)

    def event(n: int) -> Event:
        return Event(kind=EventKind.HEALTH, node="web1", from_="up", to="down", reason=f"n{n}")

    log.append(event(0))
    tail = JournalTail(path)
    assert [e["reason"] for e in tail.start()] == ["n0"]
    assert tail.new() == []
    seen = []
    for n in range(1, 12):  # 600 bytes hold about three lines: this rotates several times
        log.append(event(n))
        seen += [e["reason"] for e in tail.new()]
    assert seen == [f"n{n}" for n in range(1, 12)]


def test_journal_tail_skips_a_torn_line_and_waits_for_a_partial_one(tmp_path):
    """A line still being written is read once it is whole; a damaged line is skipped."""
    path = tmp_path / "events.jsonl"
    path.write_text("")
    tail = JournalTail(path)
    tail.start()
    with path.open("a") as handle:
        handle.write('{"kind": "health", "no')
    assert tail.new() == []
    with path.open("a") as handle:
        handle.write('de": "web1"}\n{broken\n' + json.dumps({"kind": "failover"}) + "\n")
    assert [e["kind"] for e in tail.new()] == ["health", "failover"]


def test_snapshot_has_the_layout_history_and_journal(tmp_path):
    """A page that (re)connects gets the balancers as a list, each standby with its primary, the
    charts' history and the journal so far."""
    made, runtime, clock, topology = collector(tmp_path)
    EventLog(topology.state_dir / "events.jsonl").append(
        Event(kind=EventKind.FAILOVER, node="web1bck", from_="maint", to="ready", reason="web1 is down")
    )
    runtime.text = stat_text({"web1": 0, "web2": 0, "web1bck": 0, "web2bck": 0}, {})
    made.sample()
    clock.now += 0.5
    made.sample()
    snapshot = made.snapshot()
    assert [b["name"] for b in snapshot["topology"]["balancers"]] == ["ha1"]
    pairs = {n["name"]: n["standby_for"] for n in snapshot["topology"]["nodes"]}
    assert pairs["web1bck"] == "web1"
    assert len(snapshot["series"]) == 1
    assert [e["kind"] for e in snapshot["journal"]] == ["failover"]


def test_a_pair_s_counters_add_up_and_a_silent_balancer_is_named(tmp_path):
    """With two balancers both taking traffic, a server's rate is the sum of both HAProxy's counters;
    when one stops answering it alone is named unreachable and shown down, the other still counts."""
    path = tmp_path / "relevo.yaml"
    path.write_text(f"name: t\nnetwork: 127.9.5.0/24\nbalancer: {{name: ha1, peer: ha2}}\n{NODES}")
    topology = load_topology(path)
    first, second, clock = FakeRuntime(), FakeRuntime(), Clock()
    made = Collector(
        topology=topology,
        states=lambda names: dict.fromkeys(names, NodeState.RUNNING),
        runtimes={"ha1": first, "ha2": second},
        clock=clock,
    )
    zero = {"web1": 0, "web2": 0, "web1bck": 0, "web2bck": 0}
    first.text = second.text = stat_text(zero, {})
    made.sample()
    clock.now += 1.0
    first.text = stat_text(zero | {"web1": 30}, {})
    second.text = stat_text(zero | {"web1": 20}, {})
    update = made.sample()
    assert update["point"]["rps"]["web1"] == 50.0
    assert [b["name"] for b in made.snapshot()["topology"]["balancers"]] == ["ha1", "ha2"]
    second.text = None
    update = made.sample()
    assert list(update["unreachable"]) == ["haproxy ha2", "controller"]
    assert update["nodes"]["ha2"]["condition"] == "down"
    assert update["nodes"]["ha1"]["condition"] == "serving"


def test_a_run_in_progress_is_on_the_charts_with_its_faults(tmp_path):
    """A bench or scenarios run's feed puts its responses/s, failures/s and p50/p99 on the chart points
    (even while HAProxy does not answer), its faults as markers, and says a run is in progress; a point
    older than a second is not drawn again, and the run's end is said."""
    from relevo.loadgen.engine import LoadProgress, RecentLatency
    from relevo.loadgen.feed import LiveFeed
    from relevo.paths import StatePaths

    made, _runtime, clock, topology = collector(tmp_path)
    path = StatePaths(topology.state_dir).load_feed
    path.parent.mkdir(parents=True, exist_ok=True)
    feed = LiveFeed(path, clock=clock)
    feed.begin("relevo bench")

    def report(done: int, failed: int, p50: float, p99: float) -> None:
        recent = RecentLatency(count=10, p50_ms=p50, p99_ms=p99)
        feed.progress(
            LoadProgress(
                elapsed_s=0, done=done, failed=failed, active=1, expected=None, duration_s=None, recent=recent
            )
        )

    report(0, 0, 1.0, 2.0)
    clock.now += 0.5
    report(400, 2, 1.5, 30.0)
    feed.marker("kill web1", "crash", at=clock.now)
    update = made.sample()  # HAProxy does not answer (no stat text): the run's point is drawn anyway
    assert update["run"]["what"] == "relevo bench" and "ended" not in update["run"]
    assert update["point"]["load"] == {"rps": 800.0, "errors": 4.0, "p50_ms": 1.5, "p99_ms": 30.0, "n": 10}
    assert update["point"]["rps"] == {} and update["point"]["errors"] is None
    told = [(m["kind"], m["label"]) for m in update["markers"]]
    assert told == [("run", "run started"), ("fault", "kill web1")]
    assert [m["label"] for m in made.snapshot()["markers"]] == ["run started", "kill web1"]
    clock.now += 1.5
    assert made.sample()["point"] is None  # the run's last point is 1.5 s old, HAProxy still silent
    feed.end()
    update = made.sample()
    assert update["run"]["ended"] == clock.now
    assert update["markers"][-1]["label"] == "run ended"


def test_the_picture_of_a_pair_names_its_vip():
    """An LXD pair's picture has both balancers and the VIP the page shows above them (its network's .10
    by default); a single balancer's has none."""
    pair = parse_topology(
        f"name: t\nprovider: lxd\nnetwork: 10.209.5.0/24\nbalancer: {{name: ha1, peer: ha2}}\n{NODES}",
        source=None,
        state_dir=Path("/x/.relevo"),
    )
    picture = layout(pair)
    assert ([b["name"] for b in picture["balancers"]], picture["vip"]) == (["ha1", "ha2"], "10.209.5.10")
    single = parse_topology(
        f"name: t\nnetwork: 127.9.7.0/24\n{NODES}", source=None, state_dir=Path("/x/.relevo")
    )
    assert layout(single)["vip"] is None
