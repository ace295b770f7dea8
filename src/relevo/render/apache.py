"""One self-contained Apache configuration per web node, and the node's own pages."""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from relevo.files import ensure_dir, write_atomic
from relevo.model import Node, Topology
from relevo.paths import StatePaths
from relevo.render import render_template
from relevo.render.haproxy import describe_source

# Loaded unless the binary has them built in (IfModule guards each one).
MODULES = (
    ("authz_core_module", "mod_authz_core.so"),
    ("headers_module", "mod_headers.so"),
    ("rewrite_module", "mod_rewrite.so"),
    ("file_cache_module", "mod_file_cache.so"),
    ("log_config_module", "mod_log_config.so"),
)
# Unprivileged accounts Apache's workers may run as when relevo runs as root, first found wins.
WORKER_ACCOUNTS = (
    ("www-data", "www-data"),
    ("apache", "apache"),
    ("daemon", "daemon"),
    ("nobody", "nogroup"),
)


@dataclass(frozen=True, slots=True)
class ApacheLayout:
    """Where one node's files live, and how this machine's Apache is laid out."""

    node_dir: Path
    htdocs: Path
    pid_file: Path
    run_dir: Path
    log_dir: Path
    modules_dir: Path


def layout_for(node: Node, paths: StatePaths, modules_dir: Path) -> ApacheLayout:
    node_dir = paths.node_dir(node.name)
    return ApacheLayout(
        node_dir=node_dir,
        htdocs=node_dir / "htdocs",
        pid_file=node_dir / "httpd.pid",
        run_dir=node_dir / "run",
        log_dir=paths.log_dir(node.name),
        modules_dir=modules_dir,
    )


def worker_account() -> tuple[str, str] | None:
    """The account for Apache's workers when we are root (None otherwise: no user switch happens)."""
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


def render_apache(
    topology: Topology, node: Node, layout: ApacheLayout, *, run_as: tuple[str, str] | None = None
) -> str:
    threads = int(node.options.get("threads_per_child", 25))
    workers = node.capacity.workers
    return render_template(
        "httpd.conf.j2",
        node=node,
        source=describe_source(topology),
        health=topology.health,
        modules=MODULES,
        run_as=run_as,
        threads_per_child=threads,
        max_request_workers=workers,
        # Enough processes for MaxRequestWorkers at this many threads each.
        server_limit=max(1, -(-workers // threads)),
        **{field: getattr(layout, field) for field in layout.__dataclass_fields__},
    )


def render_index(topology: Topology, node: Node) -> str:
    return render_template("index.html.j2", topology=topology, node=node)


def write_apache_files(topology: Topology, node: Node, layout: ApacheLayout) -> Path:
    """Write the node's config, its page and its health answer, each anew and atomically (a file found
    there is replaced, never followed if it is a link); return the config's path."""
    for directory in (layout.node_dir, layout.htdocs, layout.run_dir, layout.log_dir):
        ensure_dir(directory)
    health_file = layout.htdocs / topology.health.path.lstrip("/")
    ensure_dir(health_file.parent)
    write_atomic(health_file, "ok\n")
    write_atomic(layout.htdocs / "index.html", render_index(topology, node))
    config = layout.node_dir / "httpd.conf"
    write_atomic(config, render_apache(topology, node, layout, run_as=worker_account()))
    return config
