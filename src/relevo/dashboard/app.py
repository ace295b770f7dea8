"""The dashboard's web app (Starlette, served by uvicorn): the page, its data, its pushes, its buttons.

Every request needs the cluster's generated credentials (HTTP Basic, as HAProxy's stats page); a button's
POST also needs the page's CSRF token (a header a page of another site cannot set on a request to this
one). One sampler task reads the cluster every `interval_s` in a worker thread and pushes the update to
every open page as a server-sent event; a page that (re)connects first gets the whole picture, so a
dashboard restarted, or a page that lost its connection, catches up by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import secrets as random_tokens
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

import anyio.to_thread
from jinja2 import Environment, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from relevo.dashboard.actions import ACTIONS, check, perform
from relevo.dashboard.collect import Collector
from relevo.errors import RelevoError
from relevo.model import Topology
from relevo.secrets import authorized

PUSH_INTERVAL_S = 0.5  # the bound: an update at least every 500 ms
KEEPALIVE_S = 15.0
QUEUE_MAX = 20  # updates a slow page may fall behind before it is sent the whole picture again
CSRF_HEADER = "x-csrf-token"


class BasicAuth:
    """Refuses every request without the cluster's credentials: 401 and a Basic challenge."""

    def __init__(self, app: ASGIApp, credentials: Callable[[], tuple[str, str]]) -> None:
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            user, password = self.credentials()
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not authorized(given, user, password):
                response = PlainTextResponse(
                    "the cluster's credentials are needed (user and password in its secrets file)\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="relevo dashboard"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass
class Hub:
    """The open pages' queues; the sampler puts each update in every one."""

    queues: set[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=set)

    def publish(self, update: dict[str, Any]) -> None:
        for queue in list(self.queues):
            try:
                queue.put_nowait(update)
            except asyncio.QueueFull:
                # Too far behind: empty it and say so; the page is sent the whole picture again.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@dataclass
class Dashboard:
    topology: Topology
    collector: Collector
    credentials: Callable[[], tuple[str, str]]
    actions: bool
    interval_s: float = PUSH_INTERVAL_S
    csrf: str = field(default_factory=lambda: random_tokens.token_urlsafe(32))
    hub: Hub = field(default_factory=Hub)
    faults: list[dict[str, Any]] = field(default_factory=list)
    _published = 0  # faults numbered below this went out in an update already
    perform: Callable[[Topology, str, str], str] = perform

    def snapshot(self) -> dict[str, Any]:
        return {**self.collector.snapshot(), "faults": list(self.faults), "actions": self.actions}

    async def sample_forever(self) -> None:
        while True:
            began = time.monotonic()
            try:
                update = await anyio.to_thread.run_sync(self.collector.sample)
            except Exception as exc:  # the collector catches what it expects; never let the loop die
                update = {"t": time.time(), "unreachable": {"dashboard": f"sampling failed: {exc}"}}
            fresh = [f for f in self.faults if f["n"] >= self._published]
            self._published += len(fresh)
            self.hub.publish({**update, "faults": fresh})
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))

    # -- routes ----------------------------------------------------------------------------------------------
    async def page(self, request: Request) -> HTMLResponse:
        html = _template().render(
            cluster=self.topology.name, csrf=self.csrf, actions=self.actions, names=list(ACTIONS)
        )
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    async def state(self, request: Request) -> JSONResponse:
        return JSONResponse(self.snapshot())

    async def stream(self, request: Request) -> StreamingResponse:
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=QUEUE_MAX)
        self.hub.queues.add(queue)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                yield sse("snapshot", self.snapshot())
                while True:
                    try:
                        update = await asyncio.wait_for(queue.get(), timeout=KEEPALIVE_S)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if update is None:
                        yield sse("snapshot", self.snapshot())
                    else:
                        yield sse("update", update)
            finally:
                self.hub.queues.discard(queue)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def act(self, request: Request) -> Response:
        token = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(token.encode(), self.csrf.encode()):
            return JSONResponse({"ok": False, "error": "missing or wrong CSRF token"}, status_code=403)
        if not self.actions:
            return JSONResponse(
                {"ok": False, "error": "this topology turns the page's actions off (dashboard.actions)"},
                status_code=403,
            )
        node, action = request.path_params["node"], request.path_params["action"]
        try:
            check(self.topology, node, action)
        except RelevoError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=404)
        number = self.faults[-1]["n"] + 1 if self.faults else 0
        self.faults.append({"n": number, "t": round(time.time(), 3), "node": node, "action": action})
        del self.faults[:-200]
        try:
            done = await anyio.to_thread.run_sync(self.perform, self.topology, node, action)
        except RelevoError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=409)
        return JSONResponse({"ok": True, "done": done})


def _template() -> Any:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    return env.from_string(files("relevo.dashboard").joinpath("page.html").read_text())


def create_app(dashboard: Dashboard) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(dashboard.sample_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    static = StaticFiles(directory=str(files("relevo.dashboard").joinpath("static")))
    app = Starlette(
        routes=[
            Route("/", dashboard.page),
            Route("/api/state", dashboard.state),
            Route("/api/stream", dashboard.stream),
            Route("/api/nodes/{node}/{action}", dashboard.act, methods=["POST"]),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Mount("/static", static, name="static"),
        ],
        lifespan=lifespan,
    )
    return BasicAuth(app, dashboard.credentials)


def serve(dashboard: Dashboard, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM (uvicorn's own handlers: they only set its exit flag)."""
    import uvicorn

    config = uvicorn.Config(
        create_app(dashboard),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # Open event streams never end by themselves: give them a second, then close them.
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        raise RelevoError(f"the dashboard could not listen on {host}:{port} (see above)")
