"""The services inside the containers: the same HAProxy and Apache services as the local provider render
the files, which go into Debian's places (HAProxy) and relevo's own (Apache, run by its own unit); one
image serves both roles, so each container's units are switched on or off by role."""

from __future__ import annotations

from pathlib import PurePosixPath

from relevo.model import Endpoint, Topology
from relevo.providers.host import install
from relevo.providers.lxd_host import HAPROXY_DROPIN, LXDHost, apache_unit
from relevo.render.haproxy import GUEST_ACCOUNT, Binds, HAProxyLayout
from relevo.services import NodeFile
from relevo.services.apache import ApacheService, guest_layout
from relevo.services.haproxy import HAProxyService

APACHE_UNIT = "relevo-apache.service"
# hang-workers in a container: a keeper in the guest stops every child of Apache's parent (new ones too:
# Apache replaces workers it counts as busy) until resumed or this many seconds have passed.
WANTS = PurePosixPath("/etc/systemd/system/multi-user.target.wants")
HANG_KEEPER_PID = "/run/relevo-hang-workers.pid"
HANG_MAX_S = 600
_MAIN_PID = f"$(systemctl show --property=MainPID --value {APACHE_UNIT})"
_HANG = "\n".join(
    [
        f"parent={_MAIN_PID}",
        '[ "$parent" -gt 0 ] && [ -n "$(pgrep -P "$parent")" ] || exit 3',
        f"rm -f {HANG_KEEPER_PID}",
        f"setsid sh -c 'echo $$ > {HANG_KEEPER_PID}; end=$(($(date +%s) + {HANG_MAX_S})); "
        'while [ "$(date +%s)" -lt "$end" ]; do pkill -STOP -P "$0"; sleep 0.02; done\' "$parent" '
        "</dev/null >/dev/null 2>&1 &",
        'pkill -STOP -P "$parent"',  # the fault has taken effect when this returns
    ]
)
_RESUME = "\n".join(
    [
        f"[ -s {HANG_KEEPER_PID} ] && kill $(cat {HANG_KEEPER_PID}) 2>/dev/null",
        f"rm -f {HANG_KEEPER_PID}",
        "sleep 0.05",  # a round of the keeper's under way when it was stopped ends first
        f"parent={_MAIN_PID}",
        '[ "$parent" -gt 0 ] && pkill -CONT -P "$parent"',
        "exit 0",
    ]
)


class GuestServices:
    def __init__(self, topology: Topology, host: LXDHost) -> None:
        self.topology = topology
        self.host = host

    def is_balancer(self, node: str) -> bool:
        return node == self.topology.balancer.name

    def service(self, node: str) -> HAProxyService | ApacheService:
        if self.is_balancer(node):
            # Debian's haproxy.service starts it as root: its workers run as haproxy, as Debian's own config.
            return HAProxyService(self.topology, HAProxyLayout.in_guest(), run_as=GUEST_ACCOUNT)
        web = self.topology.node(node)
        return ApacheService(self.topology, web, guest_layout(web), run_as=("www-data", "www-data"))

    def install(self, node: str, *, check: bool) -> bool:
        """Push the node's files; check the config (in the running guest) when it changed. A stopped
        guest gets the files only (its directories exist since `create`); its unit checks at start.
        True when the config changed."""
        service = self.service(node)
        if isinstance(service, HAProxyService):
            files = service.files(self._guest_binds())
            dropin = PurePosixPath("/etc/systemd/system/haproxy.service.d/relevo.conf")
            files.append(NodeFile(dropin, HAPROXY_DROPIN))
        else:
            files = service.files()
            unit = apache_unit(node, service.foreground_argv(), service.graceful_argv())
            files.append(NodeFile(PurePosixPath(f"/etc/systemd/system/{APACHE_UNIT}"), unit))
        if not check:
            self.host.put_files(node, files)
            return False
        return install(self.host, node, service, files, what=f"{node}'s configuration was rejected")

    def _guest_binds(self) -> Binds:
        """HAProxy in its container listens on the balancer's bridge address and reaches each server at
        the address the topology gives it."""
        balancer = self.topology.balancer
        return Binds(
            frontend=Endpoint(address=balancer.address, port=balancer.frontend.port),
            stats=Endpoint(address=balancer.address, port=balancer.stats.port),
            servers={n.name: n.endpoint for n in self.topology.nodes},
        )

    def wait_for_init(self, node: str) -> None:
        """Wait until the just-started guest's systemd answers: before that it has not yet mounted its
        tmpfs on /run, which would hide the runtime directories `install` makes there (seen under load:
        Apache's check then finds no DefaultRuntimeDir)."""
        wait = "until systemctl show --property=Version >/dev/null 2>&1; do sleep 0.05; done"
        self.host.run(node, ["sh", "-c", wait], what=f"wait for {node}'s systemd")

    def enable_units(self, node: str) -> None:
        """One image, two roles: HAProxy only on the balancer, relevo's Apache only on web nodes. The
        links systemctl would make, made directly: effective from the next boot, with no wait on the
        guest's systemd (which may still be booting)."""
        if self.is_balancer(node):
            off, on = ["apache2.service"], PurePosixPath("/lib/systemd/system/haproxy.service")
        else:
            off = ["apache2.service", "haproxy.service"]
            on = PurePosixPath(f"/etc/systemd/system/{APACHE_UNIT}")
        what = f"set {node}'s services"
        self.host.run(node, ["rm", "-f", *(str(WANTS / unit) for unit in off)], what=what)
        self.host.run(node, ["ln", "-sf", str(on), str(WANTS / on.name)], what=what)

    def hang_workers(self, node: str) -> None:
        """Apache's parent lives, its workers (and any it starts meanwhile) are stopped."""
        self.host.run(node, ["sh", "-c", _HANG], what=f"stop {node}'s Apache workers")

    def resume_workers(self, node: str) -> None:
        self.host.run(node, ["sh", "-c", _RESUME], what=f"resume {node}'s Apache workers")

    def reload(self, node: str) -> None:
        unit = "haproxy.service" if self.is_balancer(node) else APACHE_UNIT
        self.host.run(node, ["systemctl", "reload", unit], what=f"reload {unit} in {node}")
