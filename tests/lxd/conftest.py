"""The `lxd` tier: a real LXD daemon (started here when none runs, stopped afterwards by PID), the base
image (built once, then cached between runs), and a check that every test leaves LXD as it found it.

Several test sessions may run at once on one machine (CI, or engineers side by side): the whole tier
holds one lock, so only one session at a time creates and removes things in the daemon, and a session
never stops a daemon another one is using.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.controller.events import read_events
from relevo.errors import ProviderError
from relevo.loadgen import engine
from relevo.loadgen.engine import LoadRun, RunResult
from relevo.loadgen.plan import simple_plan
from relevo.lxd.build import BuiltImage, build_image, import_image
from relevo.lxd.client import LXDClient
from relevo.lxd.errors import LXDError, LXDUnreachableError
from relevo.lxd.network import free_subnet
from relevo.lxd.transport import APIEndpoint
from relevo.model import Topology
from relevo.providers.lxd import LXDProvider, cluster_tag
from relevo.providers.lxd_setup import OWNER_KEY
from relevo.topology import load_topology
from tests import waiting

REPO = Path(__file__).resolve().parents[2]
LOCK_WAIT_S = 600.0
# The tier's containers live in a btrfs pool of its own, in a loop file LXD makes (and removes with the
# pool): a container is a snapshot of the image's volume, made and deleted in well under a second, where
# `dir` unpacks the image (~400 MB) into each new container and deletes it file by file. RELEVO_LXD_TIER_POOL
# names an existing pool to use instead (e.g. `default`, where the kernel has no btrfs): used, not removed.
TIER_POOL = "relevo-tier"
TIER_POOL_DESCRIPTION = "relevo's LXD test tier (removed at the end of its session)"


def _private_dir() -> Path:
    path = Path("/run/relevo") if os.geteuid() == 0 else Path.home() / ".cache" / "relevo"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@pytest.fixture(scope="session")
def tier_lock() -> Iterator[None]:
    """Only one test session at a time uses the daemon (see the module docstring)."""
    with (_private_dir() / "lxd-tier.lock").open("a") as handle:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held the LXD tier's lock for {LOCK_WAIT_S:.0f} s")
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _answers() -> bool:
    try:
        LXDClient(APIEndpoint.local(timeout_s=5)).server()
    except LXDUnreachableError:
        return False
    return True


def _adopt_orphaned_daemon(pidfile: Path) -> None:
    """A session that was killed before its teardown left its daemon running and its pid file behind
    (named after the session's PID): this session takes that record over, so the daemon a test session
    started is still stopped by one."""
    for record in pidfile.parent.glob("lxd-daemon.*.pid"):
        owner = record.name.split(".")[1]
        if not owner.isdigit() or record == pidfile:
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            record.replace(pidfile)
            return
        except PermissionError:
            continue


@pytest.fixture(scope="session")
def lxd(tier_lock: None) -> Iterator[LXDClient]:
    """A client of the local LXD daemon: the one already running, else one started by scripts/lxd-daemon
    for this session and stopped (by its PID) when the session ends."""
    pidfile = _private_dir() / f"lxd-daemon.{os.getpid()}.pid"
    _adopt_orphaned_daemon(pidfile)
    if not _answers() and os.geteuid() != 0:
        pytest.fail("no LXD daemon answers and starting one needs root: run `sudo scripts/lxd-daemon start`")
    # Also makes the storage pool when it is missing; writes the pid file only if it starts the daemon.
    started = subprocess.run(
        [str(REPO / "scripts/lxd-daemon"), "start", str(pidfile)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.fail(f"scripts/lxd-daemon start failed:\n{started.stderr}")
        yield LXDClient(APIEndpoint.local())
    finally:
        if pidfile.exists():
            subprocess.run([str(REPO / "scripts/lxd-daemon"), "stop", str(pidfile)], timeout=60, check=False)


@pytest.fixture(scope="session")
def base_image(tier_lock: None) -> BuiltImage:
    """The base image tarball: built with debootstrap the first time on a machine (about a minute),
    then taken from ~/.cache/relevo/images."""
    try:
        return build_image()
    except ProviderError:
        # debootstrap fetches some 150 packages from the Debian mirror: one network hiccup should not
        # fail the tier. A second failure is real and is reported.
        return build_image()


@pytest.fixture(scope="session")
def tier_pool(lxd: LXDClient) -> Iterator[str]:
    """The storage pool of the tier's containers (see TIER_POOL): made for this session unless
    RELEVO_LXD_TIER_POOL names one, and removed at its end (with its loop file) when made here."""
    named = os.environ.get("RELEVO_LXD_TIER_POOL")
    if named:
        if named not in lxd.storage_pools():
            pytest.fail(f"RELEVO_LXD_TIER_POOL={named}: LXD has no such storage pool")
        yield named
        return
    if TIER_POOL in lxd.storage_pools():
        # Left by a session killed before its teardown: its containers went with their modules' cleanup
        # or remain to be seen in `lxc list`; the pool is this tier's by its description, and reused.
        if lxd.storage_pool(TIER_POOL).get("description") != TIER_POOL_DESCRIPTION:
            pytest.fail(f"LXD has a storage pool {TIER_POOL!r} the test tier did not make")
    else:
        try:
            lxd.create_storage_pool(TIER_POOL, "btrfs", description=TIER_POOL_DESCRIPTION)
        except LXDError as exc:
            pytest.fail(
                f"{exc}\n(the LXD tier makes a btrfs pool in a loop file: it needs btrfs-progs, "
                "scripts/bootstrap --dev installs it, and a kernel with btrfs; or set "
                "RELEVO_LXD_TIER_POOL=default to use an existing pool)"
            )
    try:
        yield TIER_POOL
    finally:
        lxd.delete_storage_pool(TIER_POOL)


@dataclass(frozen=True)
class TierImage:
    """The base image imported once for the session under an alias of its own, and the pool the tier's
    containers use."""

    alias: str
    fingerprint: str
    pool: str


@pytest.fixture(scope="session")
def tier_image(lxd: LXDClient, base_image: BuiltImage, tier_pool: str) -> Iterator[TierImage]:
    """The base image under the alias `relevo-test/tierPID` for every cluster of the session: on btrfs its
    volume is unpacked once, at the first container, and every later container is a snapshot of it.
    Its alias (and the image, when imported here) removed at the end."""
    alias = f"relevo-test/tier{os.getpid() % 1_000_000}"
    imported = import_image(lxd, base_image.path, alias)
    try:
        yield TierImage(alias, imported.fingerprint, tier_pool)
    finally:
        with contextlib.suppress(LXDError):
            lxd.delete_alias(alias)
        if imported.uploaded:
            with contextlib.suppress(LXDError):
                lxd.delete_image(imported.fingerprint)


def lxd_inventory(client: LXDClient) -> dict[str, Any]:
    """What a test could leave behind: instances, managed networks, profiles, images and aliases,
    trusted certificates and the server's configuration."""
    images = client.images()
    return {
        "instances": sorted(i.name for i in client.instances()),
        "networks": sorted(n["name"] for n in client.networks() if n.get("managed")),
        "profiles": sorted(p["name"] for p in client.profiles()),
        "images": sorted(i["fingerprint"] for i in images),
        "aliases": sorted(a["name"] for i in images for a in i.get("aliases") or []),
        "certificates": sorted(client.certificates()),
        "config": client.server().get("config", {}),
    }


@pytest.fixture
def unchanged_lxd(lxd: LXDClient) -> Iterator[LXDClient]:
    """The client, with a check that the test left LXD exactly as it was before."""
    before = lxd_inventory(lxd)
    yield lxd
    assert lxd_inventory(lxd) == before


def lxc_listings() -> dict[str, list[str]]:
    """What `lxc list`, `lxc network list` and `lxc profile list` print (CSV), as a person would compare;
    of the networks only LXD's own (managed): the others are this host's interfaces, which other work
    on a shared machine may add or remove meanwhile."""
    listed = {}
    for what in ("list", "network list", "profile list"):
        rows = subprocess.run(
            ["lxc", *what.split(), "--format", "csv"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.splitlines()
        listed[what] = [r for r in rows if what != "network list" or r.split(",")[2] == "YES"]
    return listed


@dataclass(frozen=True)
class UpOnLXD:
    """A topology brought up on LXD, with what LXD held before `up` (for the destroy tests)."""

    topology: Topology
    before: dict[str, Any]  # lxd_inventory() before `up` (the test's image already imported)
    listed: dict[str, list[str]]  # `lxc list`, `lxc network list`, `lxc profile list` before `up`


@contextlib.contextmanager
def up_on_lxd(
    lxd: LXDClient, image: TierImage, workdir: Path, name: str, body: str, *, controller: bool = True
) -> Iterator[UpOnLXD]:
    """A topology named `name` + this session's tag on a free bridge subnet, the session's image and
    pool (then `body`: its other sections) written to `workdir` and brought up; destroyed at the end
    whatever happened."""
    tag = f"{name}{os.getpid() % 1_000_000}"
    before = lxd_inventory(lxd)
    (workdir / "relevo.yaml").write_text(
        f"name: {tag}\nprovider: lxd\nnetwork: {free_subnet(start=os.getpid() + 7)}\n"
        f"providers:\n  lxd: {{image: '{image.alias}', storage_pool: {image.pool}}}\n{body}"
    )
    topology = load_topology(workdir / "relevo.yaml")
    listed = lxc_listings()
    try:
        lifecycle.up(topology, controller=controller)
        yield UpOnLXD(topology, before, listed)
    except BaseException as failure:  # `up`'s, or the test's when the body is a test's: it stays the error
        for problem in destroy_leaving_nothing(lxd, topology):
            failure.add_note(f"and then, cleaning up: {problem}")
        raise
    left = destroy_leaving_nothing(lxd, topology)
    if left:
        # A module fixture's teardown: an error of the session, beside the tests' own results.
        pytest.fail("the teardown's `relevo destroy` left LXD unclean:\n" + "\n".join(left), pytrace=False)


def destroy_leaving_nothing(lxd: LXDClient, topology: Topology) -> list[str]:
    """`relevo destroy` of the topology, then what of it LXD still holds: [] when all of it went, else
    each problem (the destroy's own error, a container of the cluster or its bridge still there). Once
    a failed destroy went unseen here and left containers and a bridge behind."""
    problems = []
    try:
        lifecycle.destroy(topology)
    except Exception as exc:  # reported by the caller, with whatever else failed
        problems.append(f"relevo destroy failed: {type(exc).__name__}: {exc}")
    owner = cluster_tag(topology)
    bridge = LXDProvider(topology).network_name  # the tier's topologies have relevo make theirs
    try:
        problems += [f"container {i.name} left" for i in lxd.instances() if i.config.get(OWNER_KEY) == owner]
        problems += [f"network {n['name']} left" for n in lxd.networks() if n["name"] == bridge]
    except LXDError as exc:
        problems.append(f"what is left could not be listed: {exc}")
    return problems


def wait_until(
    predicate: Callable[[], object],
    what: str,
    timeout_s: float = 60.0,
    explain: Callable[[], str] | None = None,
) -> None:
    """`tests.waiting.wait_until` with the LXD tier's longer bound (containers start in seconds) and a
    slower poll (a predicate is often a call to LXD's API)."""
    waiting.wait_until(predicate, what, timeout_s, explain, interval_s=0.05)


def get(url: str, auth: tuple[str, str] | None = None) -> tuple[int, str]:
    """One GET: its status and the X-Served-By header (errors included)."""
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.headers.get("X-Served-By", "")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


RATE_RPS = 200.0  # the containers, forkproxy and the client share two cores
MAX_LOAD_S = 90.0  # a bound: every test stops its load well before
CLIENT_TIMEOUT_S = 10.0


def open_load(url: str, *, threads: int = 200, timeout_s: float = CLIENT_TIMEOUT_S) -> LoadRun:
    """An open-loop load of RATE_RPS on `url`, bounded to MAX_LOAD_S; the test stops it."""
    plan = simple_plan(url, threads=threads, rate_rps=RATE_RPS, duration_s=MAX_LOAD_S, timeout_s=timeout_s)
    return engine.start(plan, workers=1)


def served(load: LoadRun, node: str) -> int:
    return sum(s.served_by.get(node, 0) for s in load.seconds())


def finish(load: LoadRun, timeout_s: float = CLIENT_TIMEOUT_S) -> RunResult:
    load.stop()
    return load.wait(timeout_s=timeout_s + 5)


def assert_no_failures(result: RunResult) -> None:
    total = result.stats.total()
    assert total.count > 200, f"too little traffic to judge: {total.count} samples"
    assert total.errors == 0, f"{total.errors} failed requests: {total.error_kinds}"
    assert total.dropped == 0, f"{total.dropped} requests never sent"


@dataclass
class LXDCluster:
    """A cluster up on LXD, as the modules that share one see it."""

    topology: Topology
    cluster: Cluster
    client: LXDClient
    before: dict[str, Any]
    listed: dict[str, list[str]]  # `lxc list`, `lxc network list`, `lxc profile list` before `up`

    @classmethod
    def of(cls, up: UpOnLXD, client: LXDClient) -> LXDCluster:
        return cls(up.topology, Cluster(up.topology), client, up.before, up.listed)

    @property
    def url(self) -> str:
        return self.topology.balancer.frontend.url + "/"

    def container(self, node: str) -> str:
        return f"{self.topology.name}-{node}"

    def statuses(self) -> dict[str, str]:
        names = {self.container(n): n for n in self.topology.node_names}
        return {names[i.name]: i.status for i in self.client.instances() if i.name in names}

    def explain(self) -> str:
        paths = self.cluster.paths
        lines = [json.dumps(e) for e in read_events(paths.events, 40)]
        with contextlib.suppress(OSError):
            lines += ["--- controller log:", *paths.controller_log.read_text().splitlines()[-30:]]
        lines += ["--- containers:", repr(self.statuses())]
        return "\n" + "\n".join(lines)
