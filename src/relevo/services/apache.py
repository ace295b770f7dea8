"""Apache as a service on a web node: its self-contained config, its page and health answer, the
argv that checks them, and the argv that runs it in the foreground (a unit inside a guest)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from relevo.anchor import DAEMON_ROOT
from relevo.model import Node, Topology
from relevo.paths import StatePaths
from relevo.render.apache import ApacheLayout, layout_for, render_apache, render_index
from relevo.services import NodeFile

GUEST_MODULES = Path("/usr/lib/apache2/modules")  # the base image is Debian


def guest_layout(node: Node) -> ApacheLayout:
    """Inside a container or VM: one node per guest, in relevo's own directories."""
    return ApacheLayout(
        node_dir=Path("/etc/relevo/apache"),
        htdocs=Path("/var/www/relevo"),
        pid_file=Path("/run/relevo-apache/httpd.pid"),
        run_dir=Path("/run/relevo-apache"),
        log_dir=Path("/var/log/relevo-apache"),
        modules_dir=GUEST_MODULES,
    )


class ApacheService:
    kind = "apache"

    def __init__(
        self,
        topology: Topology,
        node: Node,
        layout: ApacheLayout,
        *,
        exe: str = "apache2",
        run_as: tuple[str, str] | None = None,
    ) -> None:
        self.topology = topology
        self.node = node
        self.layout = layout
        self.exe = exe
        self.run_as = run_as

    @classmethod
    def local(cls, topology: Topology, node: Node, modules_dir: Path, exe: str) -> ApacheService:
        from relevo.render.apache import worker_account

        # The paths as the daemon reaches them: relevo starts it with the state directory at a fixed fd.
        layout = layout_for(node, StatePaths(DAEMON_ROOT), modules_dir)
        return cls(topology, node, layout, exe=exe, run_as=worker_account())

    @property
    def config(self) -> PurePosixPath:
        return PurePosixPath(self.layout.node_dir / "httpd.conf")

    @property
    def directories(self) -> list[PurePosixPath]:
        layout = self.layout
        return [PurePosixPath(d) for d in (layout.node_dir, layout.htdocs, layout.run_dir, layout.log_dir)]

    def files(self) -> list[NodeFile]:
        htdocs = PurePosixPath(self.layout.htdocs)
        return [
            NodeFile(htdocs / self.topology.health.path.lstrip("/"), "ok\n"),
            NodeFile(htdocs / "index.html", render_index(self.topology, self.node)),
            NodeFile(self.config, render_apache(self.topology, self.node, self.layout, run_as=self.run_as)),
        ]

    def check_argv(self) -> list[str]:
        return [self.exe, "-t", "-f", str(self.config)]

    def foreground_argv(self) -> list[str]:
        return [self.exe, "-f", str(self.config), "-DFOREGROUND"]

    def graceful_argv(self) -> list[str]:
        return [self.exe, "-f", str(self.config), "-k", "graceful"]
