"""HAProxy's configuration and its 503 page, from a topology, for a layout (where HAProxy's files live
on its node) and the addresses the provider resolved."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from relevo.files import ensure_dir, write_atomic
from relevo.model import Endpoint, StandbyMode, Temperature, Topology
from relevo.paths import StatePaths
from relevo.render import bind, render_template
from relevo.secrets import Secrets, write_private

# A pair with keepalived: HAProxy's stats frontend answers this path without credentials, for the checker
# that tells keepalived whether HAProxy is alive (render/keepalived.py).
ALIVE_PATH = "/relevo-alive"
# Inside a container or VM, HAProxy logs each request to this UDP port of its own loopback; a proxy
# device carries the datagrams to the dashboard's receiver on this host (see access_log_receiver).
GUEST_ACCESS_LOG = "127.0.0.1:5140"
# The one line HAProxy logs per request: what the dashboard's rolling window needs, nothing else (its
# parser, dashboard/access_log.py, reads exactly this). %Ta: from the request's first byte to the
# response's last, the request's own time (%Tt would add the keep-alive idle time before it).
ACCESS_LOG_FORMAT = "relevo-request %Ta %ST"


@dataclass(frozen=True, slots=True)
class HAProxyLayout:
    """Where HAProxy's files are on the node that runs it."""

    config: PurePosixPath
    runtime_socket: PurePosixPath
    server_state: PurePosixPath
    error_page_503: PurePosixPath
    # Where HAProxy sends its request log, seen from its own host; None: straight to the dashboard's
    # receiver on this host (HAProxy runs here).
    access_log: str | None = None

    @classmethod
    def in_state_dir(cls, paths: StatePaths) -> HAProxyLayout:
        """The local provider's: everything in the state directory."""
        return cls(
            config=PurePosixPath(paths.haproxy_cfg),
            runtime_socket=PurePosixPath(paths.runtime_socket),
            server_state=PurePosixPath(paths.server_state),
            error_page_503=PurePosixPath(paths.error_page_503),
        )

    @classmethod
    def of_balancer(cls, paths: StatePaths, topology: Topology, name: str) -> HAProxyLayout:
        """The local provider's, for either balancer of a pair: the peer's config and Runtime API socket
        in a directory of its own; the server states (what a returning balancer starts from) and the
        503 page shared."""
        first = cls.in_state_dir(paths)
        if name == topology.balancer.name:
            return first
        return cls(
            config=PurePosixPath(paths.peer_dir(name) / "haproxy.cfg"),
            runtime_socket=PurePosixPath(paths.peer_runtime_socket(name)),
            server_state=first.server_state,
            error_page_503=first.error_page_503,
        )

    @classmethod
    def in_guest(cls) -> HAProxyLayout:
        """Inside a container or VM: Debian's places, so the image's own haproxy.service runs it."""
        return cls(
            config=PurePosixPath("/etc/haproxy/haproxy.cfg"),
            runtime_socket=PurePosixPath("/run/haproxy/admin.sock"),
            server_state=PurePosixPath("/var/lib/haproxy/server-state"),
            error_page_503=PurePosixPath("/etc/haproxy/errors/relevo-503.http"),
            access_log=GUEST_ACCESS_LOG,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Binds:
    """The addresses HAProxy binds and reaches, as the provider resolved them (on the node itself)."""

    frontend: Endpoint
    stats: Endpoint
    servers: Mapping[str, Endpoint]

    @classmethod
    def planned(cls, topology: Topology, balancer: str | None = None) -> Binds:
        """The topology's own addresses: right where the node is this machine. Both balancers of a pair
        bind the one frontend; each its own stats."""
        chosen = topology.balancer_named(balancer) if balancer else topology.balancer
        return cls(
            frontend=topology.balancer.frontend,
            stats=chosen.stats,
            servers={node.name: node.endpoint for node in topology.nodes},
        )


def access_log_receiver(topology: Topology) -> Endpoint:
    """Where the dashboard receives HAProxy's request log on this host: UDP at the balancer's stats
    address and the dashboard's port number (UDP's, not TCP's: the dashboard's page keeps the TCP one).

    UDP, not a unix datagram socket in the state directory: HAProxy started as root logs from its
    workers, which run as another account and cannot enter the 0700 state directory; and LXD's proxy
    device carries unix sockets as streams only (forkproxy listens and dials "unix"), while it carries
    UDP datagrams as they are."""
    return Endpoint(address=topology.balancer.stats.address, port=topology.dashboard.port)


def describe_source(topology: Topology) -> str:
    return str(topology.source) if topology.source else "the built-in default topology"


def render_haproxy(
    topology: Topology,
    secrets: Secrets,
    paths: StatePaths | HAProxyLayout | None = None,
    binds: Binds | None = None,
    *,
    run_as: tuple[str, str] | None = None,
) -> str:
    if not isinstance(paths, HAProxyLayout):
        paths = HAProxyLayout.in_state_dir(paths or StatePaths(topology.state_dir))
    binds = binds or Binds.planned(topology)
    servers = [
        {
            "name": node.name,
            "endpoint": binds.servers[node.name],
            "standby": node.standby_for is not None,
            "maxconn": node.capacity.maxconn,
        }
        for node in topology.nodes
    ]
    pool = topology.standby.mode is StandbyMode.POOL
    warm = topology.standby.temperature is Temperature.WARM and any(s["standby"] for s in servers)
    # Warm standbys bridge a kill of every primary only if a request's retries outlast the primaries'
    # marking down (HAProxy commits it between two passes of its loop, and a refused connect is retried
    # at once): measured, 3 retries lost a request in about one kill-both of eight, 6 none in 25.
    retries = max(topology.balancer.retries, 2 * len(topology.primaries) + 2) if warm else None
    return render_template(
        "haproxy.cfg.j2",
        topology=topology,
        source=describe_source(topology),
        balancer=topology.balancer,
        retries=retries if retries is not None else topology.balancer.retries,
        frontend=binds.frontend,
        stats=binds.stats,
        health=topology.health,
        pool=pool,
        observe=warm,
        bridges=warm and not pool,
        servers=servers,
        paths=paths,
        secrets=secrets,
        alive=ALIVE_PATH if topology.pair is not None and topology.pair.vip is not None else None,
        run_as=run_as,
        access_log=paths.access_log or bind(access_log_receiver(topology)),
        access_log_format=ACCESS_LOG_FORMAT,
    )


# The account HAProxy's workers run as when it is started as root, first found wins (Debian's package
# makes `haproxy`; the guest images are Debian).
WORKER_ACCOUNTS = (("haproxy", "haproxy"), ("nobody", "nogroup"), ("nobody", "nobody"))
GUEST_ACCOUNT = ("haproxy", "haproxy")


def worker_account() -> tuple[str, str] | None:
    """The account for HAProxy's workers when we are root (None otherwise: no user switch happens)."""
    if os.geteuid() != 0:
        return None
    for user, group in WORKER_ACCOUNTS:
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
        except KeyError:
            continue
        return user, group
    return None


def render_503(topology: Topology) -> str:
    # HAProxy sends an errorfile byte for byte: the HTTP head needs CRLF line ends.
    text = render_template("503.http.j2", topology=topology)
    head, _, body = text.partition("\n\n")
    return head.replace("\n", "\r\n") + "\r\n\r\n" + body


def write_haproxy_files(topology: Topology, secrets: Secrets, paths: StatePaths) -> Path:
    """Write haproxy.cfg (mode 0600: it holds the stats password) and the 503 page; return the config."""
    ensure_dir(paths.haproxy_dir)
    write_atomic(paths.error_page_503, render_503(topology))
    write_private(paths.haproxy_cfg, render_haproxy(topology, secrets, paths))
    return paths.haproxy_cfg
