"""A new container made ready while stopped (the LXD client faked at its edge, as a small in-memory
daemon that refuses what LXD refuses; the lxd tier runs the real one): `up` starts each container once."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from relevo.errors import ProviderError
from relevo.lxd.client import ExecResult, Instance
from relevo.lxd.errors import LXDError, LXDNotFoundError
from relevo.lxd.transport import APIEndpoint
from relevo.providers.lxd import LXDProvider
from relevo.topology import parse_topology

from .test_provider import TOPOLOGY, provider_with

WANTS = "/etc/systemd/system/multi-user.target.wants"
# What the base image has: Debian's own directories and the links its packages' postinst made.
IMAGE_DIRS = {
    "/etc", "/etc/network", "/etc/network/interfaces.d", "/etc/systemd", "/etc/systemd/system", WANTS,
    "/etc/haproxy", "/etc/haproxy/errors", "/var", "/var/lib", "/var/lib/haproxy", "/var/log", "/var/www",
    "/usr", "/usr/local", "/usr/local/sbin", "/run",
}  # fmt: skip
IMAGE_LINKS = {
    f"{WANTS}/{unit}": f"/lib/systemd/system/{unit}"
    for unit in ("apache2.service", "haproxy.service", "keepalived.service")
}


class Container:
    def __init__(self) -> None:
        self.status = "Stopped"
        self.config: dict[str, str] = {}
        self.dirs = set(IMAGE_DIRS)
        self.files: dict[str, bytes] = {}
        self.links = dict(IMAGE_LINKS)


class FakeDaemon:
    """Instances with their files, as LXD's API shows them: a file or link needs its parent directory,
    a directory its parent, an exec a running container; `calls` keeps what was asked, in order."""

    def __init__(self, *, rejected: str = "") -> None:
        self.endpoint = APIEndpoint(url="https://far.example:8443")
        self.containers: dict[str, Container] = {}
        self.network_names: list[str] = []
        self.calls: list[tuple[str, str, str]] = []
        self.rejected = rejected  # a check argv's program whose check fails
        self.lock = threading.Lock()
        # Holds the listings of the networks until `listers` have all looked (or a short while passed):
        # what concurrent creations that each made the bridge they did not see would do.
        self.listers = threading.Barrier(1)

    def _call(self, *call: str) -> None:
        with self.lock:
            self.calls.append((call[0], call[1], call[2] if len(call) > 2 else ""))

    def _in(self, name: str, path: str) -> Container:
        container = self.containers.get(name)
        if container is None:
            raise LXDNotFoundError(f"reach '{name}'", "Instance not found")
        if str(PurePosixPath(path).parent) not in container.dirs | {"/"}:
            raise LXDNotFoundError(f"reach {path} in '{name}'", "No such file or directory")
        return container

    def alias_target(self, alias: str) -> str:
        return "f" * 64

    def networks(self) -> list[dict[str, Any]]:
        with contextlib.suppress(threading.BrokenBarrierError):
            self.listers.wait(timeout=0.3)
        return [{"name": n, "config": {}} for n in self.network_names]

    def create_network(self, name: str, config: dict[str, str], *, description: str = "") -> None:
        self._call("create_network", name)
        if name in self.network_names:
            raise LXDError(f"create network '{name}'", "The network already exists")
        self.network_names.append(name)

    def instance(self, name: str) -> Instance:
        if name not in self.containers:
            raise LXDNotFoundError(f"look up instance '{name}'", "not found")
        container = self.containers[name]
        return Instance(name=name, status=container.status, status_code=0, config=container.config)

    def create_instance(self, name: str, **kw: Any) -> None:
        self._call("create", name)
        self.containers[name] = Container()
        self.containers[name].config = dict(kw["config"])

    def push_file(self, name: str, path: str, content: bytes, *, mode: int = 0o644) -> None:
        self._call("push", name, path)
        self._in(name, path).files[path] = content

    def make_directory(self, name: str, path: str, *, mode: int = 0o755) -> None:
        self._call("mkdir", name, path)
        self._in(name, path).dirs.add(path)

    def make_symlink(self, name: str, path: str, target: str) -> None:
        self._call("link", name, path)
        container = self._in(name, path)
        if path in container.files or container.links.get(path, target) != target:
            raise LXDError(f"link {path} in '{name}'", "Failure")
        container.links[path] = target

    def delete_file(self, name: str, path: str) -> None:
        self._call("delete", name, path)
        container = self._in(name, path)
        if container.links.pop(path, None) is None and container.files.pop(path, None) is None:
            raise LXDNotFoundError(f"remove {path} in '{name}'", "No such file or directory")

    def read_file(self, name: str, path: str) -> bytes:
        content = self._in(name, path).files.get(path)
        if content is None:
            raise LXDNotFoundError(f"read {path} in '{name}'", "No such file or directory")
        return content

    def start(self, name: str) -> None:
        self._call("start", name)
        self.containers[name].status = "Running"

    def stop(self, name: str, *, force: bool = False, timeout_s: float = 0) -> None:
        self._call("stop", name)
        self.containers[name].status = "Stopped"

    def exec(self, name: str, argv: list[str], *, timeout_s: float = 0) -> ExecResult:
        self._call("exec", name, " ".join(argv))
        if self.containers[name].status != "Running":
            raise LXDError(f"run {argv[0]} in '{name}'", "Instance is not running")
        if self.rejected and argv[0].endswith(self.rejected):
            return ExecResult(1, "", "Syntax error on line 3")
        return ExecResult(0, "", "")


def test_a_new_web_container_is_written_while_stopped_and_started_once(tmp_path: Path) -> None:
    """create() makes the container, its directories (parents first), files and unit links without
    starting it or running anything in it; start() starts it once, then checks Apache's config there."""
    daemon = FakeDaemon()
    provider = provider_with(daemon, tmp_path)
    provider.create("web1")
    created = [c for c in daemon.calls if c[1] == "t-web1"]
    assert [c[0] for c in created if c[0] in ("start", "stop", "exec")] == []
    container = daemon.containers["t-web1"]
    assert container.status == "Stopped"
    assert {
        "/etc/relevo",
        "/etc/relevo/apache",
        "/var/www/relevo",
        "/var/log/relevo-apache",
    } <= container.dirs
    assert "/run/relevo-apache" not in container.dirs  # hidden by the guest's /run tmpfs at boot
    assert any(p.startswith("/etc/relevo/apache/") for p in container.files)
    assert container.links == {f"{WANTS}/relevo-apache.service": "/etc/systemd/system/relevo-apache.service"}
    provider.start("web1")
    after = [c for c in daemon.calls if c[1] == "t-web1"][len(created) :]
    assert [c[0] for c in after] == ["start", "exec", "exec", "exec"]
    assert " -t -f /etc/relevo/apache/" in after[-1][2]
    provider.start("web1")  # running: nothing more, and no second check
    assert [c for c in daemon.calls if c[1] == "t-web1"][len(created) + len(after) :] == []


def test_the_balancer_keeps_haproxy_s_unit_and_loses_apache_s_and_keepalived_s(tmp_path: Path) -> None:
    """One image, two roles: the single balancer's container has haproxy.service wanted and neither
    apache2's nor keepalived's, all set while it is stopped."""
    daemon = FakeDaemon()
    provider = provider_with(daemon, tmp_path)
    provider.create("ha1")
    container = daemon.containers["t-ha1"]
    assert container.status == "Stopped"
    assert container.links == {f"{WANTS}/haproxy.service": "/lib/systemd/system/haproxy.service"}
    assert "/etc/haproxy/haproxy.cfg" in container.files


def test_a_config_rejected_at_the_first_start_fails_it_with_the_check_s_output(tmp_path: Path) -> None:
    """A config written while stopped and rejected by the service's check once started: start() raises,
    naming the node and carrying the check's output."""
    daemon = FakeDaemon(rejected="apache2")
    provider = provider_with(daemon, tmp_path)
    provider.create("web1")
    with pytest.raises(ProviderError, match="web1's configuration was rejected") as raised:
        provider.start("web1")
    assert "Syntax error on line 3" in str(raised.value.output)


def test_every_node_created_side_by_side_makes_the_bridge_once(tmp_path: Path) -> None:
    """Five containers created at once (as `up` does) ask LXD for the cluster's bridge once."""
    daemon = FakeDaemon()
    provider = provider_with(daemon, tmp_path)
    nodes = ["ha1", "web1", "web2", "web1bck", "web2bck"]
    daemon.listers = threading.Barrier(len(nodes))
    threads = [threading.Thread(target=provider.create, args=(node,)) for node in nodes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(daemon.containers) == sorted(f"t-{node}" for node in nodes)
    assert [c for c in daemon.calls if c[0] == "create_network"] == [
        ("create_network", provider.network_name, "")
    ]


def test_a_stopped_container_s_changed_config_is_checked_at_its_next_start(tmp_path: Path) -> None:
    """`up` of an edited topology: the stopped container gets its new config while stopped and it is
    checked once the container runs; an unchanged config is not checked again."""
    daemon = FakeDaemon()
    provider_with(daemon, tmp_path).create("web1")  # made, never started
    edited = TOPOLOGY + "nodes:\n  web1: {role: web, capacity: {workers: 50}}\n  web2: {role: web}\n"
    topology = parse_topology(edited, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    for expected_checks in (1, 0):  # the edit, then the same topology again
        provider = LXDProvider(topology)
        provider.placement._clients["local"] = daemon  # type: ignore[assignment]
        provider.create("web1")
        assert daemon.containers["t-web1"].status == "Stopped"
        before = len(daemon.calls)
        provider.start("web1")
        checks = [c for c in daemon.calls[before:] if c[0] == "exec" and " -t -f " in c[2]]
        assert len(checks) == expected_checks
        daemon.stop("t-web1")


def test_a_new_cold_standby_makes_its_first_start_at_create(tmp_path: Path) -> None:
    """A new cold standby's container is started, its config checked and stopped again at create (LXD's
    first start of a container does once-only work), so a failover's start is a later one and checks
    nothing more; a primary's create starts nothing."""
    daemon = FakeDaemon()
    provider = provider_with(daemon, tmp_path)
    provider.create("web1bck")
    provider.create("web1")
    actions = ("start", "stop", "exec")
    standby = [c for c in daemon.calls if c[1] == "t-web1bck" and c[0] in actions]
    assert [c[0] for c in standby] == ["start", "exec", "exec", "exec", "stop"]
    assert " -t -f /etc/relevo/apache/" in standby[-2][2]
    assert [c for c in daemon.calls if c[1] == "t-web1" and c[0] in actions] == []
    assert daemon.containers["t-web1bck"].status == "Stopped"
    before = len(daemon.calls)
    provider.start("web1bck")
    assert [c[0] for c in daemon.calls[before:] if c[0] in actions] == ["start"]
