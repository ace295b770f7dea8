"""The services inside the containers: the same HAProxy and Apache services as the local provider render
the files, which go into Debian's places (HAProxy) and relevo's own (Apache, run by its own unit); one
image serves both roles, so each container's units are switched on or off by role."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

from relevo.model import Endpoint, Topology
from relevo.providers.host import install
from relevo.providers.lxd_host import HAPROXY_DROPIN, LXDHost, apache_unit
from relevo.providers.lxd_setup import NIC
from relevo.render.haproxy import GUEST_ACCOUNT, Binds, HAProxyLayout
from relevo.render.keepalived import KeepalivedLayout, render_checker, render_keepalived
from relevo.services import NodeFile
from relevo.services.apache import ApacheService, guest_layout
from relevo.services.haproxy import HAProxyService

APACHE_UNIT = "relevo-apache.service"
HAPROXY_UNIT = "haproxy.service"
KEEPALIVED_UNIT = "keepalived.service"
ANY = "0.0.0.0"  # noqa: S104 - a pair's balancer serves the VIP, which moves onto its NIC and off
CHECKER_UNIT = "relevo-haproxy-check.service"
CHECKER_UNIT_PATH = PurePosixPath(f"/etc/systemd/system/{CHECKER_UNIT}")
# Who heals a dead HAProxy of a pair: systemd, but only after the takeover is over. Debian's unit
# restarts it within 0.1 s (measured 0.15-0.36 s), which races keepalived: the VIP stayed, or moved
# and came back. Two seconds is well past the checker's 0.4 s and the peer's takeover (0.1 s); with
# `nopreempt` the restarted HAProxy then waits as BACKUP, with failback it takes the address back
# (a planned move: both serve).
PAIR_RESTART = "RestartSec=2s\n"
# keepalived needs the checker's track file before it starts.
KEEPALIVED_DROPIN = f"""[Unit]
Wants={CHECKER_UNIT}
After={CHECKER_UNIT}
"""
# In a container one systemd runs both: keepalived after HAProxy, so, stops going in the reverse order, a
# planned stop (failback-balancer) hands the VIP over before HAProxy stops listening. Unordered, the two
# stopped together and HAProxy once closed 150 ms before the VIP left: a connection to it was refused.
# HAProxy then stops at once (SIGTERM), not softly as the local provider's: once the VIP has left, the
# host's packets go to the peer, so the connections a soft stop would finish are dead already (finishing
# them held the container's stop 9 s in one run, load 14); closed, their clients reconnect to the peer.
GUEST_KEEPALIVED_DROPIN = KEEPALIVED_DROPIN + "After=haproxy.service\n"
# hang-workers in a container: a keeper in the guest stops every child of Apache's parent (new ones too:
# Apache replaces workers it counts as busy) until resumed or this many seconds have passed.
WANTS = PurePosixPath("/etc/systemd/system/multi-user.target.wants")
RUN = PurePosixPath("/run")
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
        return self.topology.is_balancer(node)

    @property
    def paired(self) -> bool:
        """Two balancers with keepalived moving a VIP between them."""
        return self.topology.pair is not None and self.topology.pair.vip is not None

    def service(self, node: str) -> HAProxyService | ApacheService:
        if self.is_balancer(node):
            # Debian's haproxy.service starts it as root: its workers run as haproxy, as Debian's own config.
            return HAProxyService(self.topology, HAProxyLayout.in_guest(), run_as=GUEST_ACCOUNT)
        web = self.topology.node(node)
        return ApacheService(self.topology, web, guest_layout(web), run_as=("www-data", "www-data"))

    def files(self, node: str) -> list[NodeFile]:
        """Everything the node's service reads, with its unit (and, in a pair, keepalived's files)."""
        service = self.service(node)
        if isinstance(service, HAProxyService):
            files = service.files(self._guest_binds(node))
            dropin = PurePosixPath("/etc/systemd/system/haproxy.service.d/relevo.conf")
            files.append(NodeFile(dropin, HAPROXY_DROPIN + (PAIR_RESTART if self.paired else "")))
            if self.paired:
                files += keepalived_files(self.topology, node, NIC)
            return files
        unit = apache_unit(node, service.foreground_argv(), service.graceful_argv())
        return [*service.files(), NodeFile(PurePosixPath(f"/etc/systemd/system/{APACHE_UNIT}"), unit)]

    def install(self, node: str, *, check: bool) -> list[str]:
        """Push the node's files; check each config that changed (in the running guest) when `check`. A
        stopped guest gets the files only (its directories exist since `create`): `check_config` once it
        runs. Returns the units whose config changed, for `reload`: the service's, and on a balancer of a
        pair keepalived's (an edited `balancer.failback` reaches a running pair's keepalived this way)."""
        files = self.files(node)
        service = self.service(node)
        keepalived = KeepalivedLayout.in_guest().config if self._keepalived(node) else None
        keepalived_before = self.host.read_file(node, keepalived) if keepalived is not None else ""
        if check:
            changed = install(self.host, node, service, files, what=f"{node}'s configuration was rejected")
        else:
            before = self.host.read_file(node, service.config)
            self.host.put_files(node, files)
            changed = any(f.path == service.config and f.content != before for f in files)
        units = [self.unit(node)] if changed else []
        rewritten = any(f.path == keepalived and f.content != keepalived_before for f in files)
        if keepalived is not None and rewritten:
            if check:
                argv = ["keepalived", "-t", "-f", str(keepalived)]
                self.host.run(node, argv, what=f"{node}'s keepalived configuration was rejected")
            units.append(KEEPALIVED_UNIT)
        return units

    def prepare(self, node: str) -> None:
        """A new, stopped container made ready for its first start: its directories, files and units,
        all through LXD's file API, so it starts once (not once to install and once to run). What lives
        under /run is left to the units: the guest's /run is a tmpfs mounted at boot."""
        files = self.files(node)
        kept = [d for d in self.service(node).directories if not d.is_relative_to(RUN)]
        self.host.make_directories(node, [*kept, *(f.path.parent for f in files)])
        self.host.put_files(node, files)
        self.enable_units(node)

    def check_config(self, node: str) -> None:
        """Check the config of a guest that got it while stopped, once it runs: its systemd up (so the
        runtime directories the check reads are on the guest's /run, not hidden under it), then the
        service's own check. A rejected config raises, with the check's output."""
        service = self.service(node)
        self.wait_for_init(node)
        directories = [str(d) for d in service.directories]
        self.host.run(node, ["mkdir", "-p", *directories], what=f"make {node}'s directories")
        self.host.run(node, service.check_argv(), what=f"{node}'s configuration was rejected")

    def _guest_binds(self, node: str) -> Binds:
        """HAProxy in its container listens on the balancer's bridge address and reaches each server at
        the address the topology gives it. A pair's balancer listens on every address: the VIP comes and
        goes with keepalived (HAProxy could not bind it while the peer holds it), and its checker asks
        the stats page on 127.0.0.1."""
        balancer = self.topology.balancer_named(node)
        listen = ANY if self.paired else balancer.address
        return Binds(
            frontend=Endpoint(address=listen, port=balancer.frontend.port),
            stats=Endpoint(address=listen, port=balancer.stats.port),
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
        links systemctl would make, made through LXD's file API: effective from the next boot, with no
        wait on the guest's systemd (nor a running guest)."""
        if self.is_balancer(node):
            off = ["apache2.service"]
            on = [PurePosixPath("/lib/systemd/system/haproxy.service")]
            if self.paired:
                on += [PurePosixPath("/lib/systemd/system/keepalived.service"), CHECKER_UNIT_PATH]
            else:
                off.append("keepalived.service")
        else:
            off = ["apache2.service", "haproxy.service", "keepalived.service"]
            on = [PurePosixPath(f"/etc/systemd/system/{APACHE_UNIT}")]
        for unit in off:
            self.host.remove(node, WANTS / unit)
        for path in on:
            self.host.link(node, WANTS / path.name, path)

    def kill_service(self, node: str) -> None:
        """SIGKILL the node's HAProxy or Apache (every process of that name: `pgrep -x`, never `pidof`,
        which is killall5 in this image); the container and the rest of it (keepalived) live on."""
        process = "haproxy" if self.is_balancer(node) else "apache2"
        self.host.run(node, ["pkill", "-KILL", "-x", process], what=f"SIGKILL {process} in {node}")

    def hang_workers(self, node: str) -> None:
        """Apache's parent lives, its workers (and any it starts meanwhile) are stopped."""
        self.host.run(node, ["sh", "-c", _HANG], what=f"stop {node}'s Apache workers")

    def resume_workers(self, node: str) -> None:
        self.host.run(node, ["sh", "-c", _RESUME], what=f"resume {node}'s Apache workers")

    def unit(self, node: str) -> str:
        """The unit that runs the node's service."""
        return HAPROXY_UNIT if self.is_balancer(node) else APACHE_UNIT

    def reload(self, node: str, units: Sequence[str] = ()) -> None:
        """Reload `units` in the guest (by default the node's service): each re-reads its config (HAProxy
        and Apache without dropping a connection; keepalived on its SIGHUP)."""
        for unit in units or [self.unit(node)]:
            self.host.run(node, ["systemctl", "reload", unit], what=f"reload {unit} in {node}")

    def _keepalived(self, node: str) -> bool:
        return self.paired and self.is_balancer(node)


def checker_unit(layout: KeepalivedLayout) -> str:
    return f"""[Unit]
Description=relevo: tells keepalived whether HAProxy answers (its track file)
Before=keepalived.service

[Service]
Type=simple
RuntimeDirectory=relevo
RuntimeDirectoryPreserve=yes
ExecStart={layout.checker}
Restart=always
RestartSec=0.1

[Install]
WantedBy=multi-user.target
"""


def keepalived_files(topology: Topology, node: str, interface: str) -> list[NodeFile]:
    """A pair's balancer: keepalived.conf, the checker feeding its track file, and their units."""
    layout = KeepalivedLayout.in_guest()
    return [
        NodeFile(layout.config, render_keepalived(topology, node, interface=interface, layout=layout)),
        NodeFile(layout.checker, render_checker(topology, layout), mode=0o755),
        NodeFile(CHECKER_UNIT_PATH, checker_unit(layout)),
        NodeFile(
            PurePosixPath("/etc/systemd/system/keepalived.service.d/relevo.conf"), GUEST_KEEPALIVED_DROPIN
        ),
    ]
