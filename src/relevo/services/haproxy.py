"""HAProxy as a service on its node: its files (config 0600, the 503 page, the server states the
controller saved), the argv that checks them, and saving server states before a reload or restart."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from relevo.anchor import DAEMON_ROOT
from relevo.errors import RuntimeAPIError
from relevo.files import read_or_empty, write_atomic
from relevo.haproxy.runtime import RuntimeAPI
from relevo.model import Topology
from relevo.paths import StatePaths
from relevo.render.haproxy import Binds, HAProxyLayout, render_503, render_haproxy
from relevo.secrets import Secrets, load_or_create_secrets
from relevo.services import NodeFile


class HAProxyService:
    kind = "haproxy"

    def __init__(
        self,
        topology: Topology,
        layout: HAProxyLayout,
        *,
        exe: str = "haproxy",
        run_as: tuple[str, str] | None = None,
    ) -> None:
        self.topology = topology
        self.layout = layout
        self.exe = exe
        self.run_as = run_as  # the workers' account, when it is started as root
        self.paths = StatePaths(topology.state_dir).held()

    def files(self, binds: Binds, *, secrets: Secrets | None = None) -> list[NodeFile]:
        """Everything HAProxy reads, rendered anew (credentials generated on first use unless given)."""
        secrets = secrets or load_or_create_secrets(self.paths.secrets)
        found = [
            NodeFile(self.layout.error_page_503, render_503(self.topology)),
            NodeFile(
                self.layout.config,
                render_haproxy(self.topology, secrets, self.layout, binds, run_as=self.run_as),
                0o600,
            ),
        ]
        saved = PurePosixPath(StatePaths(DAEMON_ROOT).server_state)  # the local provider's layout
        if self.layout.server_state != saved:
            # The controller keeps the states in the state directory; a guest's HAProxy reads its copy.
            found.append(NodeFile(self.layout.server_state, read_or_empty(self.paths.server_state), 0o600))
        return found

    def check_argv(self) -> list[str]:
        return [self.exe, "-c", "-q", "-f", str(self.layout.config)]

    @property
    def config(self) -> PurePosixPath:
        return self.layout.config

    @property
    def directories(self) -> list[PurePosixPath]:
        layout = self.layout
        return sorted({p.parent for p in (layout.config, layout.error_page_503, layout.server_state)})


def runtime_sockets(topology: Topology) -> dict[str, Path]:
    """Each balancer's Runtime API socket in the state directory (wherever its HAProxy runs), the
    first balancer's first. Reached through the held state directory (see anchor), never by its name."""
    paths = StatePaths(topology.state_dir).held()
    sockets = {topology.balancer.name: paths.runtime_socket}
    if topology.pair is not None:
        sockets[topology.pair.peer.name] = paths.peer_runtime_socket(topology.pair.peer.name)
    return sockets


def save_server_state(paths: StatePaths, sockets: Iterable[Path] = ()) -> None:
    """Dump HAProxy's server states (through a Runtime API socket in the state directory, whatever
    hosts HAProxy: the first of `sockets` that answers, else the first balancer's) where the next start
    of either balancer reads them back."""
    for socket in [*sockets, paths.runtime_socket]:
        try:
            state = RuntimeAPI(socket).show_servers_state()
        except RuntimeAPIError:
            continue
        write_atomic(paths.server_state, state, mode=0o600)
        return
    # Every HAProxy is gone: the last dump is the best there is.
