"""A provider in memory, registered as `fake`: each node is a small HTTP server thread on its loopback
address, and each fault does to it what the contract says (a hang accepts connections and answers
nothing, hang-workers keeps the node running but answering nothing, a reload replaces its worker). It
runs the same contract suite as the real providers, so the doubles other tests use keep to the contract.
"""

from __future__ import annotations

import http.server
import itertools
import socket
import threading

from relevo.errors import ProviderError
from relevo.model import Endpoint, Topology
from relevo.providers.base import Fault, NodeState

_workers = itertools.count(1)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _NodeServer

    def do_GET(self) -> None:
        self.server.answering.wait(30)  # a hang: the request waits, unanswered
        body = f"{self.server.node} worker {self.server.worker}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", self.server.node)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _NodeServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, node: str, endpoint: Endpoint) -> None:
        super().__init__((endpoint.address, endpoint.port), _Handler)
        self.node = node
        self.worker = next(_workers)
        self.answering = threading.Event()
        self.answering.set()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.answering.set()  # lets waiting handlers finish before the socket goes
        self.shutdown()
        self.server_close()


class FakeProvider:
    name = "fake"
    # The fake has no network means: it says so, as a provider on a machine without them does.
    LACKS = frozenset(
        {
            Fault.DELAY,
            Fault.LOSS,
            Fault.BANDWIDTH,
            Fault.PARTITION,
            Fault.SLOW,
            Fault.CPU_STARVE,
            Fault.DISK_FULL,
        }
    )

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.servers: dict[str, _NodeServer] = {}
        self.paused: set[str] = set()
        self.created: set[str] = set()

    def create(self, node: str) -> None:
        self.address(node)  # a node the topology names
        self.created.add(node)

    def start(self, node: str) -> None:
        if node in self.servers:
            return
        self.create(node)
        self.servers[node] = _NodeServer(node, self.address(node))

    def stop(self, node: str) -> None:
        server = self.servers.pop(node, None)
        self.paused.discard(node)
        if server is not None:
            server.close()

    def fault(self, node: str, fault: Fault) -> None:
        reason = self.cannot(node, fault)
        if reason is not None:
            raise ProviderError(reason)
        server = self.servers.get(node)
        if fault is Fault.RESUME:
            self.paused.discard(node)
            if server is not None:
                server.answering.set()
            return
        if server is None:
            raise ProviderError(f"{node} is not running")
        if fault in (Fault.CRASH, Fault.CRASH_SERVICE, Fault.STOP):
            self.stop(node)
        elif fault is Fault.HANG:
            server.answering.clear()
            self.paused.add(node)
        elif fault is Fault.HANG_WORKERS:
            server.answering.clear()
        elif fault is Fault.RELOAD:
            server.worker = next(_workers)

    def cannot(self, node: str, fault: Fault) -> str | None:
        if fault in self.LACKS:
            return f"the fake provider has no means for {fault}"
        if fault is Fault.HANG_WORKERS and node == self.topology.balancer.name:
            return "hang-workers is a web node's fault"
        return None

    def status(self, node: str) -> NodeState:
        if node in self.paused:
            return NodeState.PAUSED
        if node in self.servers:
            return NodeState.RUNNING
        return NodeState.STOPPED if node in self.created else NodeState.MISSING

    def address(self, node: str) -> Endpoint:
        if node == self.topology.balancer.name:
            return self.topology.balancer.frontend
        try:
            return self.topology.node(node).endpoint
        except KeyError:
            raise ProviderError(f"no node named {node!r}") from None

    def worker(self, node: str) -> int:
        return self.servers[node].worker


def port_free(endpoint: Endpoint) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((endpoint.address, endpoint.port))
        except OSError:
            return False
    return True
