"""State under attack, for real: the reproductions of issue 8 against real HAProxy and Apache.

Attacks that need two users run as root with an unprivileged account created for the attacker's side
(CI runs as root); everything else runs as whoever runs the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relevo import lifecycle
from relevo.cluster import Cluster
from relevo.controller import daemon
from relevo.errors import RelevoError
from relevo.procs import ProcessRecord, is_ours
from relevo.providers.base import Fault, NodeState
from relevo.providers.records import APACHE
from relevo.providers.tools import find_apache
from relevo.topology import load_topology

from .conftest import make_topology_file, skip_without_daemons, wait_until

pytestmark = pytest.mark.integration

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the attack needs root (CI runs as root)")


def relevo_cli(path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relevo", "-f", str(path), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def cluster_processes(state_dir: Path) -> list[int]:
    """Every process whose command line names a file of this state directory (a test's own view of
    "what of this cluster runs", independent of relevo's records)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and any(str(state_dir).encode() in arg for arg in args):
                found.append(int(entry.name))
    return found


def start_settled(node_dir: Path, pid_file: Path) -> bool:
    """No Apache start of this node is under way: none of its processes runs, or its daemon (named by the
    pid file it writes once detached) runs with every process of the node in its session (the launcher,
    in another session, has exited)."""
    found = cluster_processes(node_dir)
    if not found:
        return True
    try:
        sessions = {os.getsid(pid) for pid in found}
        return sessions == {os.getsid(int(pid_file.read_text().split()[0]))}
    except (OSError, ValueError, IndexError):  # no pid file yet, or a process gone meanwhile: look again
        return False


def pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def kill_leftovers(state_dir: Path) -> None:
    """Last resort after a failed test: stop what this test's cluster left, by PID."""
    for pid in cluster_processes(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def topology_file(cluster_dir: Path) -> Iterator[Path]:
    skip_without_daemons()
    path = make_topology_file(cluster_dir)
    yield path
    with contextlib.suppress(RelevoError):
        lifecycle.down(load_topology(path))
    kill_leftovers(cluster_dir / ".relevo")


@pytest.fixture
def attacker() -> Iterator[pwd.struct_passwd]:
    """An unprivileged account for the attacker's side, removed afterwards."""
    name = f"rlvatk{secrets.token_hex(3)}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)


def plant_config(config: Path, marker: Path) -> None:
    """What the attacker writes: a working httpd.conf whose error log is a shell command."""
    text = config.read_text()
    config.write_text(text + f"\nErrorLog \"|/bin/sh -c 'touch {marker}; cat > /dev/null'\"\n")


@needs_root
def test_root_refuses_a_state_directory_another_user_owns(topology_file, attacker, cluster_dir):
    """Another user pre-creates .relevo with a planted httpd.conf: root's `relevo start web1` refuses
    (exit 2) and runs nothing of it."""
    cluster_dir.chmod(0o1777)  # the topology sits in a directory everybody may write to
    Cluster(load_topology(topology_file)).create("web1")  # a real config, then handed to the attacker
    state = cluster_dir / ".relevo"
    marker = cluster_dir / "planted-ran"
    plant_config(state / "nodes" / "web1" / "httpd.conf", marker)
    for path in [state, *state.rglob("*")]:
        os.chown(path, attacker.pw_uid, attacker.pw_gid, follow_symlinks=False)
    result = relevo_cli(topology_file, "start", "web1")
    assert result.returncode == 2, result.stderr
    assert f"belongs to uid {attacker.pw_uid}" in result.stderr
    assert "Traceback" not in result.stderr
    # No wait for a planted logger: nothing of the cluster runs (an Apache started from the planted
    # config would, and so would its piped logger, which reads Apache's pipe until Apache ends).
    assert cluster_processes(state) == []
    assert cluster_processes(marker) == [] and not marker.exists(), (
        "root ran a command planted by another user"
    )


def test_a_config_found_on_disk_is_rendered_anew_before_start(topology_file, cluster_dir):
    """An httpd.conf left in the state directory is never reused: `relevo start` writes its own, so a
    planted ErrorLog pipe never runs."""
    cluster = Cluster(load_topology(topology_file))
    cluster.create("web1")
    config = cluster.paths.node_dir("web1") / "httpd.conf"
    ours = config.read_text()
    marker = cluster_dir / "planted-ran"
    plant_config(config, marker)
    result = relevo_cli(topology_file, "start", "web1")
    assert result.returncode == 0, result.stderr
    assert config.read_text() == ours
    # No wait: `start` returned once Apache answered, and Apache starts its piped loggers before it
    # answers; a planted one would be running now (reading Apache's pipe), its command naming the marker.
    assert cluster_processes(marker) == [] and not marker.exists(), "a planted config was started"


# An unrelated process that answers "alive" to each real-time signal. Linux delivers pending standard
# signals (TERM, KILL, INT, HUP...) before real-time ones (signal(7)), so its answer to a SIGRTMIN sent
# after a command returned proves that the command sent it no such signal: no sleep-and-hope needed.
BYSTANDER = """
import os, signal
signal.signal(signal.SIGRTMIN, lambda *_: os.write(1, b"alive\\n"))
os.write(1, b"ready\\n")
while True:
    signal.pause()
"""
ANSWER_WAIT_S = 30.0  # a bound on waiting for the bystander's line, not a speed assertion


def bystander_line(proc: subprocess.Popen[bytes]) -> bytes:
    """The bystander's next line, or b"" once it has died (EOF)."""
    assert proc.stdout is not None
    readable, _, _ = select.select([proc.stdout], [], [], ANSWER_WAIT_S)
    assert readable, f"the bystander said nothing in {ANSWER_WAIT_S:g} s"
    return proc.stdout.readline()


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process a forged record will name (its signal handler installed once it is yielded)."""
    proc = subprocess.Popen([sys.executable, "-c", BYSTANDER], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert bystander_line(proc) == b"ready\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_a_forged_record_never_makes_down_kill_another_process(topology_file, bystander):
    """run/nodes/web1.json rewritten to name an unrelated process (its real pid and start time, and even
    Apache and web1's config as its claims): `relevo down` leaves that process alone."""
    cluster = Cluster(load_topology(topology_file))
    cluster.create("web1")
    real = ProcessRecord.of(bystander.pid)
    assert real is not None
    record = cluster.paths.pid_file("web1")
    record.parent.mkdir(parents=True, exist_ok=True)
    forged = {
        "kind": APACHE,
        "pid": real.pid,
        "start_time": real.start_time,
        "pgid": real.pgid,
        "exe": os.path.realpath(find_apache().binary),
        "config": str(cluster.paths.node_dir("web1") / "httpd.conf"),
    }
    record.write_text(json.dumps(forged))
    result = relevo_cli(topology_file, "down")
    assert result.returncode == 0, result.stderr
    bystander.send_signal(signal.SIGRTMIN)
    assert bystander_line(bystander) == b"alive\n", "down signalled a process relevo did not start"


@pytest.mark.parametrize("attack", ["symlink", "world-writable"])
def test_an_unsafe_state_directory_is_refused_before_anything_starts(topology_file, cluster_dir, attack):
    """`relevo up` with .relevo a symbolic link, or writable by others: exit 2, a clear reason, nothing
    started."""
    state = cluster_dir / ".relevo"
    if attack == "symlink":
        (cluster_dir / "elsewhere").mkdir(mode=0o700)
        state.symlink_to(cluster_dir / "elsewhere")
    else:
        state.mkdir(mode=0o700)
        state.chmod(0o777)
    result = relevo_cli(topology_file, "up", "--no-controller")
    assert result.returncode == 2, result.stderr
    assert "symbolic link" in result.stderr or "writable by others" in result.stderr
    assert cluster_processes(cluster_dir) == []


def test_a_start_cut_short_before_its_record_is_adopted_and_stopped(topology_file):
    """A crash after Apache daemonized but before its record was written leaves only the intent: the
    next `status` adopts it from Apache's own pid file, and `down` stops it."""
    cluster = Cluster(load_topology(topology_file))
    cluster.create("web1bck")
    provider = cluster.provider_for("web1bck")
    expected = provider._expected("web1bck")  # type: ignore[attr-defined]
    # Exactly what `start` does, up to the instant of the crash: the intent, then the daemon.
    provider.records.intend("web1bck", expected.kind)  # type: ignore[attr-defined]
    provider.run_daemon("web1bck", expected)  # type: ignore[attr-defined]
    wait_until(lambda: expected.pid_file.exists(), "Apache wrote its pid file")
    result = relevo_cli(topology_file, "status", "--json")
    assert result.returncode == 0, result.stderr
    states = {node["name"]: node["state"] for node in json.loads(result.stdout)["nodes"]}
    assert states["web1bck"] == "running"
    record = ProcessRecord.load(cluster.paths.pid_file("web1bck"))
    assert record is not None and is_ours(record)
    assert relevo_cli(topology_file, "down").returncode == 0
    wait_until(lambda: not is_ours(record), "web1bck is stopped")
    assert [pid for pid in cluster_processes(cluster.paths.root) if pgid_of(pid) == record.pgid] == []


def test_ports_in_use_are_refused_before_anything_starts(topology_file):
    """Another program listening on web2's address and port: `up` exits 2 naming it, and starts nothing
    (it used to start the balancer and web1 first, then fail)."""
    topology = load_topology(topology_file)
    web2 = topology.node("web2")
    with socket.socket() as squatter:
        squatter.bind((web2.address, web2.port))
        squatter.listen()
        result = relevo_cli(topology_file, "up", "--no-controller")
    assert result.returncode == 2, result.stderr
    assert f"web2: {web2.address}:{web2.port} is already in use" in result.stderr
    assert cluster_processes(topology.state_dir) == []


@needs_root
def test_a_privileged_port_without_the_right_is_refused_before_anything_starts(cluster_dir, attacker):
    """An unprivileged user's topology with its frontend on port 80: exit 2 before anything starts."""
    skip_without_daemons()
    cluster_dir.chmod(0o755)  # mkdtemp's 0700 would keep the attacker out of their own home
    home = cluster_dir / "home"
    home.mkdir()
    os.chown(home, attacker.pw_uid, attacker.pw_gid)
    path = make_topology_file(home, "balancer: {frontend: {port: 80}}")
    os.chown(path, attacker.pw_uid, attacker.pw_gid)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the attacker's side: drop to the unprivileged account, then try
        os.close(read)
        status, message = 0, ""
        try:
            os.setgroups([])
            os.setgid(attacker.pw_gid)
            os.setuid(attacker.pw_uid)
            lifecycle.up(load_topology(path), controller=False)
        except RelevoError as exc:
            status, message = exc.exit_status, str(exc)
        except BaseException as exc:
            status, message = 99, repr(exc)
        os.write(write, json.dumps([status, message]).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        status, message = json.loads(answer.read())
    os.waitpid(child, 0)
    assert status == 2, message
    assert "privileged port" in message
    assert cluster_processes(home) == []


@needs_root
def test_a_full_disk_is_said_and_leaves_nothing_unrecorded(cluster_dir):
    """With the state directory's file system full, `relevo start web1bck` still starts it (on the space
    `up` reserved: issue 17 item 3), says the disk is full, with no traceback, and records it; once there
    is room again `down` leaves no process behind."""
    skip_without_daemons()
    mount = cluster_dir / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        path = make_topology_file(mount)
        lifecycle.up(load_topology(path), controller=False)
        filler = mount / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        result = relevo_cli(path, "start", "web1bck")
        assert result.returncode == 0, result.stderr
        assert "the disk is full" in result.stderr
        assert "Traceback" not in result.stderr
        assert Cluster(load_topology(path)).status("web1bck") is NodeState.RUNNING
        filler.unlink()
        assert relevo_cli(path, "down").returncode == 0
        assert cluster_processes(mount) == []
    finally:
        kill_leftovers(mount)
        time.sleep(0.2)
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_up_after_a_controller_crash_mid_failover_converges(topology_file):
    """web1 killed, web1bck serving with web1 in maint, then the controller SIGKILLed: `relevo up`
    returns 0 (a standby serving for its primary is capacity) with a controller running."""
    topology = load_topology(topology_file)
    lifecycle.up(topology)
    cluster = Cluster(topology)
    cluster.fault("web1", Fault.CRASH)
    wait_until(
        lambda: (
            cluster.haproxy_servers().get("web1bck") is not None
            and cluster.haproxy_servers()["web1bck"].health == "UP"
        ),
        "web1bck serves",
    )
    record = ProcessRecord.load(cluster.paths.controller_pid)
    assert record is not None
    os.kill(record.pid, signal.SIGKILL)
    wait_until(lambda: not is_ours(record), "the controller is dead")
    daemon.stop_background(topology)  # collect the dead child (it was started by this process)
    result = relevo_cli(topology_file, "up")
    assert result.returncode == 0, result.stderr
    assert daemon.controller_running(topology)


def test_concurrent_ups_are_one_writer_at_a_time(topology_file):
    """Two `relevo up` at once: both succeed (the second waits for the lock, then finds everything
    running), and exactly one HAProxy and one controller run."""
    command = [sys.executable, "-m", "relevo", "-f", str(topology_file), "up"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [proc.communicate(timeout=90) for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    topology = load_topology(topology_file)
    masters = [
        pid
        for pid in cluster_processes(topology.state_dir)
        if Path(f"/proc/{pid}/exe").resolve().name == "haproxy" and pgid_of(pid) == pid
    ]
    assert len(masters) == 1, masters
    assert daemon.controller_running(topology)


def test_a_controller_whose_lock_file_was_moved_aside_stops_acting(topology_file):
    """The controller lock moved aside: the running controller notices at its next tick and exits, so a
    second one started on the new lock file is the only one; `down` then leaves nothing running."""
    topology = load_topology(topology_file)
    lifecycle.up(topology)
    paths = Cluster(topology).paths
    record = ProcessRecord.load(paths.controller_pid)
    assert record is not None and is_ours(record)
    paths.controller_lock.rename(paths.root / "moved-aside.lock")
    wait_until(lambda: not is_ours(record), "the first controller stops")
    daemon.stop_background(topology)
    assert relevo_cli(topology_file, "up").returncode == 0
    assert relevo_cli(topology_file, "down").returncode == 0
    assert cluster_processes(topology.state_dir) == []


def test_down_stops_a_node_renamed_in_the_topology_and_up_refuses_it(topology_file):
    """web2 renamed web3 while running: `up` refuses with exit 2 naming web2; `down` stops web2's
    processes, whatever the topology says now."""
    topology = load_topology(topology_file)
    lifecycle.up(topology, controller=False)
    web2 = ProcessRecord.load(Cluster(topology).paths.pid_file("web2"))
    assert web2 is not None
    text = topology_file.read_text().replace("web2", "web3")
    topology_file.write_text(text)
    result = relevo_cli(topology_file, "up", "--no-controller")
    assert result.returncode == 2, result.stderr
    assert "web2 still runs" in result.stderr
    assert relevo_cli(topology_file, "down").returncode == 0
    wait_until(lambda: not is_ours(web2), "web2 is stopped")
    assert cluster_processes(topology.state_dir) == []


@pytest.mark.parametrize("delay_s", [0.03, 0.06])
def test_a_standby_started_as_the_controller_dies_is_recorded_and_stopped(topology_file, delay_s):
    """`relevo kill web1`, then the controller SIGKILLed 30-70 ms later (mid-start of web1bck): whatever
    of web1bck runs, `status` reports it, and `down` stops it (it used to outlive every record)."""
    topology = load_topology(topology_file)
    lifecycle.up(topology)
    cluster = Cluster(topology)
    record = ProcessRecord.load(cluster.paths.controller_pid)
    assert record is not None
    assert relevo_cli(topology_file, "kill", "web1").returncode == 0
    time.sleep(delay_s)
    os.kill(record.pid, signal.SIGKILL)
    daemon.stop_background(topology)
    # A start the controller had begun goes on without it (Apache daemonizes on its own): wait until it
    # is over, whichever way it went.
    expected = cluster.provider_for("web1bck")._expected("web1bck")  # type: ignore[attr-defined]
    wait_until(
        lambda: start_settled(cluster.paths.node_dir("web1bck"), expected.pid_file), "web1bck's start is over"
    )
    result = relevo_cli(topology_file, "status", "--json")
    assert result.returncode == 0, result.stderr
    states = {node["name"]: node["state"] for node in json.loads(result.stdout)["nodes"]}
    serving = cluster_processes(cluster.paths.node_dir("web1bck"))
    assert (states["web1bck"] == "running") == bool(serving), (states, serving)
    assert relevo_cli(topology_file, "down").returncode == 0
    assert cluster_processes(cluster.paths.root) == []
