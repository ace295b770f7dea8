"""HAProxy's configuration and its 503 page, from a topology."""

from __future__ import annotations

from pathlib import Path

from relevo.files import ensure_dir, write_atomic
from relevo.model import StandbyMode, Topology
from relevo.paths import StatePaths
from relevo.render import render_template
from relevo.secrets import Secrets, write_private


def describe_source(topology: Topology) -> str:
    return str(topology.source) if topology.source else "the built-in default topology"


def render_haproxy(topology: Topology, secrets: Secrets, paths: StatePaths | None = None) -> str:
    paths = paths or StatePaths(topology.state_dir)
    servers = [
        {
            "name": node.name,
            "endpoint": node.endpoint,
            "standby": node.standby_for is not None,
            "maxconn": node.capacity.maxconn,
        }
        for node in topology.nodes
    ]
    return render_template(
        "haproxy.cfg.j2",
        topology=topology,
        source=describe_source(topology),
        balancer=topology.balancer,
        health=topology.health,
        pool=topology.standby.mode is StandbyMode.POOL,
        servers=servers,
        paths=paths,
        secrets=secrets,
    )


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
