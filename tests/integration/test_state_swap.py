"""The state directory swapped for another while relevo starts a daemon from it (issue 17, item 1).

The attacker's move: `renameat2(RENAME_EXCHANGE)` of the whole `.relevo` with a directory of theirs at
the instant Apache is executed, so that Apache reads their httpd.conf (an `ErrorLog "|cmd"` runs as
whoever started it). Here the test plays the attacker in a directory that passes relevo's checks (it
owns both directories, as root would), so only relevo's use of the directory it claimed stands between
the swap and the planted command. The trigger is the exec itself: an inotify watch on a private copy of
the Apache binary, which only this test's relevo runs, fires as the binary is opened for exec. For the
controller's own start the trigger is the open of its log, the last thing `up` does before it forks it.
Three moments are covered: `start` of a standby, `up`, and the controller's start (its own later starts of
a standby then come from the directory relevo claimed, or from the swapped-in one).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from relevo.procs import ProcessRecord, command_line, is_ours

from .conftest import make_topology_file, skip_without_daemons, wait_until
from .test_state_trust import cluster_processes, kill_leftovers, pgid_of

pytestmark = pytest.mark.integration

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_EXCHANGE = 2
IN_OPEN = 0x20
IN_CLOEXEC = 0o2000000


def exchange(a: Path, b: Path) -> None:
    """Swap two directories in one step, as the attacker does."""
    if _libc.renameat2(AT_FDCWD, bytes(a), AT_FDCWD, bytes(b), RENAME_EXCHANGE) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(a))


class SwapOnExec:
    """Exchanges `a` and `b` the first time `binary` (or any file) is opened (an exec opens it), from a
    thread that waits on inotify: well under a millisecond after the exec began."""

    def __init__(self, binary: Path, a: Path, b: Path) -> None:
        self.a, self.b = a, b
        self.swapped = threading.Event()
        self.fd = _libc.inotify_init1(IN_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert _libc.inotify_add_watch(self.fd, bytes(binary), IN_OPEN) >= 0
        self.thread = threading.Thread(target=self._wait, daemon=True)
        self.thread.start()

    def _wait(self) -> None:
        with contextlib.suppress(OSError):
            data = os.read(self.fd, 4096)
            if struct.unpack_from("iIII", data)[1] & IN_OPEN:
                exchange(self.a, self.b)
                self.swapped.set()

    def close(self) -> None:
        """Stop waiting and put the directories back where they were."""
        os.close(self.fd)  # wakes the reader with EBADF if nothing happened
        self.thread.join(5)
        if self.swapped.is_set():
            exchange(self.a, self.b)


@pytest.fixture
def swap_site(cluster_dir: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A cluster whose relevo runs a private copy of Apache (so that only its execs trigger the swap)."""
    skip_without_daemons()
    bin_dir = cluster_dir / "bin"
    bin_dir.mkdir()
    apache = shutil.which("apache2", path=os.environ.get("PATH", "") + ":/usr/sbin")
    assert apache is not None
    shutil.copy2(apache, bin_dir / "apache2")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    path = make_topology_file(cluster_dir)
    try:
        yield path, env
    finally:
        relevo(path, env, "down")
        kill_leftovers(cluster_dir / ".relevo")
        kill_leftovers(cluster_dir / "decoy")


def relevo(path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(path), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=env,
    )


def plant(state: Path, decoy: Path, marker: Path) -> None:
    """The attacker's directory: web1bck's files, its httpd.conf ending in a piped ErrorLog."""
    for part in ("nodes/web1bck", "logs/web1bck"):
        shutil.copytree(state / part, decoy / part, symlinks=True)
    config = decoy / "nodes" / "web1bck" / "httpd.conf"
    config.write_text(config.read_text() + f"\nErrorLog \"|/bin/sh -c 'id > {marker}; cat > /dev/null'\"\n")


def web1bck_processes(state: Path) -> list[int]:
    return [pid for pid in cluster_processes(state) if any("web1bck" in arg for arg in command_line(pid))]


def test_a_state_directory_swapped_as_apache_starts_runs_nothing_of_the_swapped_in(swap_site, cluster_dir):
    """`.relevo` exchanged with a planted directory the instant `relevo start web1bck` executes Apache,
    three times: the planted ErrorLog command never runs, the Apache that runs is the recorded one, and
    `stop` leaves no process of web1bck behind."""
    path, env = swap_site
    assert relevo(path, env, "up", "--no-controller").returncode == 0
    state, decoy, marker = cluster_dir / ".relevo", cluster_dir / "decoy", cluster_dir / "attacker-ran"
    decoy.mkdir(mode=0o700)
    plant(state, decoy, marker)
    for attempt in range(3):
        swap = SwapOnExec(cluster_dir / "bin" / "apache2", state, decoy)
        try:
            started = relevo(path, env, "start", "web1bck")
        finally:
            swap.close()
        assert swap.swapped.is_set(), f"try {attempt}: Apache was never executed ({started.stderr})"
        # No wait: `start` returned once Apache answered, and Apache starts its piped loggers before it
        # answers; a planted one would be running now (its shell's command naming the marker) or have
        # written the marker already.
        assert cluster_processes(marker) == [], f"try {attempt}: the swapped-in httpd.conf's logger runs"
        assert not marker.exists(), f"try {attempt}: the swapped-in httpd.conf ran: {marker.read_text()}"
        assert started.returncode == 0, started.stderr
        status = json.loads(relevo(path, env, "status", "--json").stdout)
        assert {n["name"]: n["state"] for n in status["nodes"]}["web1bck"] == "running"
        record = ProcessRecord.load(state / "run" / "nodes" / "web1bck.json")
        assert record is not None and is_ours(record)
        assert [pgid_of(pid) for pid in web1bck_processes(state)] == [record.pgid] * len(
            web1bck_processes(state)
        ), "an Apache of web1bck runs outside its record"
        assert relevo(path, env, "stop", "web1bck").returncode == 0
        assert web1bck_processes(state) == [], "stop left a process of web1bck"


def plant_all(state: Path, decoy: Path, marker: Path) -> dict[str, tuple[int, int]]:
    """The attacker's directory for a whole cluster: every node's files, each httpd.conf ending in a
    piped ErrorLog; returns what is in it (for the check that relevo wrote nothing there)."""
    for node in sorted(p.name for p in (state / "nodes").iterdir()):
        plant_node(state, decoy, marker, node)
    return contents(decoy)


def plant_node(state: Path, decoy: Path, marker: Path, node: str) -> None:
    for part in (f"nodes/{node}", f"logs/{node}"):
        if (state / part).is_dir():
            shutil.copytree(state / part, decoy / part, symlinks=True, ignore=shutil.ignore_patterns("*.pid"))
    config = decoy / "nodes" / node / "httpd.conf"
    if config.exists():
        config.write_text(
            config.read_text() + f"\nErrorLog \"|/bin/sh -c 'id > {marker}; cat > /dev/null'\"\n"
        )


def contents(directory: Path) -> dict[str, tuple[int, int]]:
    """Every entry below `directory`, with its size and modification time."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            info = os.lstat(Path(root) / name)
            found[str((Path(root) / name).relative_to(directory))] = (info.st_size, info.st_mtime_ns)
    return found


def controller_ticks(path: Path, env: dict[str, str]) -> bool:
    status = json.loads(relevo(path, env, "status", "--json").stdout)
    return bool(status["controller"]["ticking"])


def node_states(path: Path, env: dict[str, str]) -> dict[str, str]:
    status = json.loads(relevo(path, env, "status", "--json").stdout)
    return {n["name"]: n["state"] for n in status["nodes"]}


@dataclass(frozen=True)
class Planted:
    """A `relevo up` during which `.relevo` was exchanged with a planted directory, up and ticking."""

    path: Path
    env: dict[str, str]
    decoy: Path
    marker: Path  # what the planted command writes when it runs
    planted: dict[str, tuple[int, int]]  # the decoy's files as planted


def up_swapped_at(
    swap_site: tuple[Path, dict[str, str]], cluster_dir: Path, trigger: Callable[[Path], Path], what: str
) -> Planted:
    """`relevo up` (whose state directory an `up --no-controller` made first), with `.relevo` exchanged
    for a planted directory the instant `trigger(state)` is executed or opened; the controller then ticks."""
    path, env = swap_site
    assert relevo(path, env, "up", "--no-controller").returncode == 0
    state, decoy, marker = cluster_dir / ".relevo", cluster_dir / "decoy", cluster_dir / "attacker-ran"
    target = trigger(state)
    decoy.mkdir(mode=0o700)
    planted = plant_all(state, decoy, marker)
    swap = SwapOnExec(target, state, decoy)
    try:
        up = relevo(path, env, "up")
    finally:
        swap.close()
    assert swap.swapped.is_set(), f"{what} ({up.stderr})"
    assert up.returncode == 0, up.stderr
    wait_until(lambda: controller_ticks(path, env), "the controller ticks in the claimed directory")
    return Planted(path, env, decoy, marker, planted)


def test_a_state_directory_swapped_as_up_starts_apache_gives_the_attacker_nothing(swap_site, cluster_dir):
    """`.relevo` exchanged with a planted directory the instant `relevo up` executes the first Apache:
    up serves from the directory it claimed, its controller and dashboard (started after the swap) work
    in that one too, nothing is written into the swapped-in directory and its planted command never
    runs."""

    def stopped_then_apache(state: Path) -> Path:
        assert relevo(swap_site[0], swap_site[1], "down").returncode == 0
        return cluster_dir / "bin" / "apache2"

    run = up_swapped_at(swap_site, cluster_dir, stopped_then_apache, "Apache was never executed")
    path, env, decoy, marker, planted = run.path, run.env, run.decoy, run.marker, run.planted
    assert contents(decoy) == planted, "relevo wrote into the swapped-in directory"
    assert not marker.exists(), f"the swapped-in httpd.conf ran: {marker.read_text()}"
    states = node_states(path, env)
    assert [states[name] for name in ("ha1", "web1", "web2")] == ["running"] * 3, states


def test_a_state_directory_swapped_as_up_forks_the_controller_gives_the_attacker_nothing(
    swap_site, cluster_dir
):
    """`.relevo` exchanged with a planted directory as `relevo up` opens the controller's log, just
    before it forks the controller: the controller works in the directory `up` claimed (nothing is written
    into the swapped-in one), and when web1 is killed it starts web1bck from the claimed directory, so
    the planted httpd.conf never runs."""

    def controller_log(state: Path) -> Path:
        log = state / "logs" / "controller.log"
        log.touch(mode=0o644)
        return log

    run = up_swapped_at(swap_site, cluster_dir, controller_log, "the controller's log was never opened")
    path, env, decoy, marker, planted = run.path, run.env, run.decoy, run.marker, run.planted
    assert relevo(path, env, "kill", "web1").returncode == 0
    wait_until(lambda: node_states(path, env)["web1bck"] == "running", "the controller starts web1bck")
    assert contents(decoy) == planted, "relevo wrote into the swapped-in directory"
    assert not marker.exists(), f"the swapped-in httpd.conf ran: {marker.read_text()}"
