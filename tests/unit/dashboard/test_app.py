"""The dashboard's endpoints through Starlette's test client: credentials on everything, the CSRF token
on a button's POST, the data the page is built from, and the pushes' format."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from relevo.dashboard.app import Dashboard, Hub, create_app, sse
from relevo.errors import RelevoError
from tests.waiting import wait_until

from .test_collect import collector, stat_text

AUTH = ("admin", "s3cret")


@pytest.fixture
def made(tmp_path):
    coll, runtime, _clock, topology = collector(tmp_path)
    runtime.text = stat_text({"web1": 0, "web2": 0, "web1bck": 0, "web2bck": 0}, {})
    done = []

    def perform(topology, node, action):
        if node == "web2" and action == "start":
            raise RelevoError("web2: port 8080 is taken")
        done.append((node, action))
        return f"{action} {node}"

    dashboard = Dashboard(
        topology=topology, collector=coll, credentials=lambda: AUTH, actions=True, perform=perform
    )
    return dashboard, done


@dataclass
class Answer:
    status_code: int
    headers: Any
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Client:
    """urllib against a real uvicorn on a loopback port of its own (as httpx tests its clients)."""

    base: str

    def request(self, method, path, *, auth=None, headers=None) -> Answer:
        request = urllib.request.Request(self.base + path, method=method, headers=headers or {})
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Answer(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read().decode())

    def get(self, path, **kwargs) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path, **kwargs) -> Answer:
        return self.request("POST", path, **kwargs)


@contextlib.contextmanager
def serving(dashboard) -> Iterator[Client]:
    # The lifespan (the sampler task) is off: the tests sample by hand, so what they see is fixed.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(dashboard), lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "uvicorn serves")
    try:
        yield Client(f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def http(made) -> Iterator[Client]:
    with serving(made[0]) as client:
        yield client


def test_every_route_needs_the_credentials(made, http):
    """No credentials or a wrong password gets 401 with a Basic challenge, on the page, its data and
    its static files alike."""
    _dashboard, _ = made
    for path in ("/", "/api/state", "/api/stream", "/static/uPlot.iife.min.js"):
        assert http.get(path).status_code == 401
        refused = http.get(path, auth=("admin", "wrong"))
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic ")
    assert http.post("/api/nodes/web1/kill", auth=("admin", "wrong")).status_code == 401


def test_the_page_carries_its_csrf_token_and_the_vendored_chart_library(made, http):
    """The page names its CSRF token and loads uPlot from the dashboard itself, never from elsewhere."""
    dashboard, _ = made
    page = http.get("/", auth=AUTH)
    assert page.status_code == 200
    assert f'content="{dashboard.csrf}"' in page.text
    assert 'src="static/uPlot.iife.min.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text
    script = http.get("/static/uPlot.iife.min.js", auth=AUTH)
    assert script.status_code == 200 and "uPlot" in script.text[:200]
    assert http.get("/static/uPlot.LICENSE", auth=AUTH).text.startswith("The MIT License")


def test_state_has_the_picture_the_charts_and_the_nodes(made, http):
    """/api/state is the snapshot a page starts from: layout, history, journal, latest node views."""
    dashboard, _ = made
    dashboard.collector.sample()
    dashboard.collector.clock.now += 0.5
    dashboard.collector.sample()
    state = http.get("/api/state", auth=AUTH).json()
    assert [n["name"] for n in state["topology"]["nodes"]] == ["web1", "web2", "web1bck", "web2bck"]
    assert len(state["series"]) == 1
    assert state["latest"]["nodes"]["web1bck"]["condition"] == "idle"
    assert state["actions"] is True


def test_a_post_without_the_csrf_token_is_refused(made, http):
    """A button's POST with the credentials but without (or with a wrong) CSRF token does nothing."""
    _dashboard, done = made
    assert http.post("/api/nodes/web1/kill", auth=AUTH).status_code == 403
    wrong = http.post("/api/nodes/web1/kill", auth=AUTH, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403
    assert done == []


def test_a_post_with_the_token_acts_and_is_marked(made, http):
    """With the credentials and the token the action is done, answered, and kept as a fault marker that
    the next push carries."""
    dashboard, done = made
    answer = http.post("/api/nodes/web1/kill", auth=AUTH, headers={"X-CSRF-Token": dashboard.csrf})
    assert answer.status_code == 200 and answer.json() == {"ok": True, "done": "kill web1"}
    assert done == [("web1", "kill")]
    assert [(f["node"], f["action"]) for f in dashboard.faults] == [("web1", "kill")]
    assert http.get("/api/state", auth=AUTH).json()["faults"][0]["action"] == "kill"


def test_unknown_nodes_actions_and_failures_are_answered_plainly(made, http):
    """An unknown node or action is 404, an admin state for the balancer is refused, a failed action
    is 409 with its reason; none of them is done."""
    dashboard, done = made
    token = {"X-CSRF-Token": dashboard.csrf}
    assert http.post("/api/nodes/web9/kill", auth=AUTH, headers=token).status_code == 404
    assert http.post("/api/nodes/web1/explode", auth=AUTH, headers=token).status_code == 404
    assert http.post("/api/nodes/ha1/drain", auth=AUTH, headers=token).status_code == 404
    failed = http.post("/api/nodes/web2/start", auth=AUTH, headers=token)
    assert failed.status_code == 409 and "port 8080 is taken" in failed.json()["error"]
    assert done == []


def test_actions_off_in_the_topology_refuse_every_post(made, http):
    """`dashboard.actions: false` leaves the page read-only: every POST is refused."""
    dashboard, done = made
    dashboard.actions = False
    refused = http.post("/api/nodes/web1/kill", auth=AUTH, headers={"X-CSRF-Token": dashboard.csrf})
    assert refused.status_code == 403
    assert done == []
    assert "data-action" not in http.get("/", auth=AUTH).text


def test_the_stream_starts_with_the_whole_picture(made, http):
    """/api/stream is an event stream whose first event is the snapshot a page builds itself from."""
    request = urllib.request.Request(http.base + "/api/stream")
    request.add_header("Authorization", "Basic " + base64.b64encode(b"admin:s3cret").decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines: list[bytes] = []
        while len(lines) < 3 or lines[-1] != b"\n":
            lines.append(response.readline())
    assert lines[0] == b"retry: 1000\n"
    event = next(line for line in lines if line.startswith(b"event:"))
    data = next(line for line in lines if line.startswith(b"data:"))
    assert event == b"event: snapshot\n"
    assert json.loads(data.removeprefix(b"data: "))["topology"]["cluster"] == "t"


def test_sse_events_are_one_json_object_each():
    """A pushed event is `event:` and one `data:` line of JSON, ended by a blank line."""
    text = sse("update", {"t": 1.5, "nodes": {"web1": {"condition": "down"}}})
    head, data, blank, end = text.split("\n")
    assert head == "event: update" and blank == "" and end == ""
    assert json.loads(data.removeprefix("data: "))["nodes"]["web1"]["condition"] == "down"


def test_a_page_too_far_behind_gets_the_whole_picture_again():
    """A page whose queue is full is emptied and told to start over (None), instead of growing memory."""

    async def fill() -> list[object]:
        hub = Hub()
        queue: asyncio.Queue[dict[str, int] | None] = asyncio.Queue(maxsize=3)
        hub.queues.add(queue)
        for n in range(5):
            hub.publish({"n": n})
        return [queue.get_nowait() for _ in range(queue.qsize())]

    assert asyncio.run(fill()) == [None, {"n": 4}]
