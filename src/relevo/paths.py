"""Where everything lives in the state directory: one place, so no module invents a path of its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relevo import anchor


@dataclass(frozen=True, slots=True)
class StatePaths:
    root: Path

    def held(self) -> StatePaths:
        """The same places reached through the descriptor `claim_state_dir` holds on the directory, never
        through its name (see anchor): for every file relevo writes or a daemon it starts reads. Before
        the directory is claimed, the names themselves."""
        return StatePaths(anchor.held(self.root))

    def real(self, path: Path) -> Path:
        """A path of these, spelled with the state directory's name (for messages, and for a daemon that
        is not a child of ours, such as LXD, which resolves names in its own process)."""
        return anchor.real(path)

    # HAProxy
    @property
    def haproxy_dir(self) -> Path:
        return self.root / "haproxy"

    @property
    def haproxy_cfg(self) -> Path:
        return self.haproxy_dir / "haproxy.cfg"

    @property
    def runtime_socket(self) -> Path:
        return self.haproxy_dir / "admin.sock"

    @property
    def server_state(self) -> Path:
        return self.haproxy_dir / "server-state"

    @property
    def error_page_503(self) -> Path:
        return self.haproxy_dir / "503.http"

    # The peer of a balancer pair (local provider): its own config, socket and pid file. The server
    # states and the 503 page are the first balancer's: both HAProxy processes read the same ones.
    def peer_dir(self, name: str) -> Path:
        return self.root / "balancers" / name

    def peer_runtime_socket(self, name: str) -> Path:
        return self.peer_dir(name) / "admin.sock"

    # Web nodes
    def node_dir(self, node: str) -> Path:
        return self.root / "nodes" / node

    def pid_file(self, node: str) -> Path:
        # A directory of their own: a node may be called anything a node name allows, `controller` too.
        return self.root / "run" / "nodes" / f"{node}.json"

    def log_dir(self, node: str) -> Path:
        return self.root / "logs" / node

    # Cluster-wide
    @property
    def secrets(self) -> Path:
        return self.root / "secrets.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def cluster_lock(self) -> Path:
        return self.root / "cluster.lock"

    @property
    def controller_lock(self) -> Path:
        return self.root / "controller.lock"

    @property
    def controller_pid(self) -> Path:
        return self.root / "run" / "controller.json"

    @property
    def controller_log(self) -> Path:
        return self.root / "logs" / "controller.log"

    @property
    def controller_state(self) -> Path:
        return self.root / "controller-state.json"

    @property
    def load_feed(self) -> Path:
        """The run in progress (`relevo bench` or `scenarios` against this cluster), told as it happens
        for the dashboard (loadgen/feed.py)."""
        return self.root / "run" / "load.jsonl"
