"""The state directory, atomic writes, process records and locks: nothing trusted that relevo did not make."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from relevo import procs
from relevo.files import StateWriteError, UnsafeStateError, claim_state_dir, ensure_dir, write_atomic
from relevo.lock import LockBusyError, LockLostError, hold, holders
from relevo.paths import StatePaths
from relevo.procs import ProcessRecord, is_ours, process_state, proven_members, signal_pending, stop_group
from relevo.providers.records import APACHE, ExpectedProcess, NodeRecords
from tests.waiting import wait_until


def test_state_dir_is_created_private_whatever_the_umask(tmp_path):
    """A new state directory is mode 0700 even under umask 000."""
    old = os.umask(0)
    try:
        claim_state_dir(tmp_path / ".relevo")
    finally:
        os.umask(old)
    assert (tmp_path / ".relevo").stat().st_mode & 0o777 == 0o700


def test_state_dir_through_a_symlink_is_refused(tmp_path):
    """A state directory that is a symbolic link (to anywhere) is refused, exit status 2."""
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / ".relevo").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeStateError, match="symbolic link") as info:
        claim_state_dir(tmp_path / ".relevo")
    assert info.value.exit_status == 2


@pytest.mark.parametrize("mode", [0o770, 0o707, 0o777])
def test_state_dir_writable_by_others_is_refused(tmp_path, mode):
    """A group- or world-writable state directory is refused with the chmod that fixes it."""
    state = tmp_path / ".relevo"
    state.mkdir()
    state.chmod(mode)
    with pytest.raises(UnsafeStateError, match="chmod 700"):
        claim_state_dir(state)


def test_a_missing_state_dir_is_not_created_by_a_reader(tmp_path):
    """Checking without creating (what `status` does) leaves no directory behind."""
    claim_state_dir(tmp_path / ".relevo", create=False)
    assert not (tmp_path / ".relevo").exists()


def test_a_symlinked_subdirectory_is_refused(tmp_path):
    """A link where one of relevo's own directories should be is refused, not followed."""
    claim_state_dir(tmp_path / ".relevo")
    (tmp_path / "target").mkdir()
    (tmp_path / ".relevo" / "run").symlink_to(tmp_path / "target")
    with pytest.raises(UnsafeStateError, match="symbolic link"):
        ensure_dir(tmp_path / ".relevo" / "run")


def test_write_atomic_replaces_a_symlink_instead_of_following_it(tmp_path):
    """A symbolic link planted at a state file's path is replaced; its target is never written."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "httpd.conf"
    link.symlink_to(victim)
    write_atomic(link, "ours\n")
    assert victim.read_text() == "precious\n"
    assert not link.is_symlink()
    assert link.read_text() == "ours\n"


def test_concurrent_atomic_writers_never_share_a_temporary_file(tmp_path):
    """Many threads writing one file at once all succeed and the file is always one whole write."""
    target = tmp_path / "server-state"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for _ in range(50):
                write_atomic(target, f"{n}\n" * 100)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(target.read_text().splitlines())) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["server-state"], "a temporary file was left behind"


def test_a_failed_write_is_a_clear_error_and_leaves_no_temporary_file(tmp_path):
    """Writing into a directory that cannot take it gives StateWriteError with the reason, no traceback
    material, and no temporary file."""
    with pytest.raises(StateWriteError, match=r"cannot write .*missing"):
        write_atomic(tmp_path / "missing" / "file", "x")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_a_forged_record_naming_another_program_is_never_honoured(tmp_path, sleeper):
    """A node record naming an unrelated process (right pid, right start time) is not a node of ours:
    the provider's reader refuses it, so `stop` and `down` never signal that process."""
    paths = StatePaths(tmp_path / ".relevo")
    claim_state_dir(paths.root)
    real = ProcessRecord.of(sleeper.pid)
    assert real is not None
    forged = {"kind": APACHE, **{k: getattr(real, k) for k in ("pid", "start_time", "pgid", "exe")}}
    forged["config"] = str(paths.node_dir("web1") / "httpd.conf")
    ensure_dir(paths.pid_file("web1").parent)
    paths.pid_file("web1").write_text(json.dumps(forged))
    expected = ExpectedProcess(
        kind=APACHE,
        exe="/usr/sbin/apache2",
        config=paths.node_dir("web1") / "httpd.conf",
        pid_file=paths.node_dir("web1") / "httpd.pid",
    )
    assert NodeRecords(paths).load("web1", expected) is None
    # Even a record that claims the expected program and config is proven against the live process.
    claimed = ProcessRecord(
        pid=real.pid, start_time=real.start_time, pgid=real.pgid, exe=real.exe, config=str(expected.config)
    )
    assert not is_ours(claimed)
    assert sleeper.poll() is None


def test_a_process_whose_arguments_read_empty_mid_exec_is_still_ours(sleeper, monkeypatch):
    """HAProxy's master re-executes itself on a reload, and for that moment its /proc/PID/cmdline reads
    empty: the live process (start time and executable unchanged) is still proven ours once its arguments
    show again, instead of being taken for stopped; one whose arguments never show is not ours."""
    record = ProcessRecord.of(sleeper.pid, config="60")
    assert record is not None
    real = procs.command_line
    reads: list[int] = []

    def mid_exec(pid: int) -> list[str]:
        reads.append(pid)
        return [] if len(reads) <= 3 else real(pid)

    monkeypatch.setattr(procs, "command_line", mid_exec)
    assert is_ours(record)
    assert len(reads) == 4
    monkeypatch.setattr(procs, "command_line", lambda pid: [])
    monkeypatch.setattr(procs, "EXEC_ARGUMENTS_WAIT_S", 0.05)
    assert not is_ours(record)


def test_a_group_whose_leader_is_gone_is_signalled_only_where_membership_is_proven(tmp_path):
    """After the leader died, a process of another program in its group is not ours to kill: stop_group
    leaves it alone (it used to killpg the whole group)."""
    leader = subprocess.Popen(["sleep", "60"], process_group=0)
    other = subprocess.Popen(["tail", "-f", "/dev/null"], process_group=leader.pid)
    try:
        record = ProcessRecord.of(leader.pid)
        assert record is not None
        leader.kill()
        leader.wait()
        assert proven_members(record) == []
        stop_group(record, timeout_s=0.5)
        assert other.poll() is None, "a process not proven to be ours was signalled"
    finally:
        other.kill()
        other.wait()


def test_a_group_member_proven_ours_is_stopped_after_its_leader_died():
    """Members of the recorded program left behind by a dead leader are still stopped."""
    leader = subprocess.Popen(["sleep", "60"], process_group=0)
    member = subprocess.Popen(["sleep", "60"], process_group=leader.pid)
    try:
        record = ProcessRecord.of(leader.pid)
        assert record is not None
        leader.kill()
        leader.wait()
        assert proven_members(record) == [member.pid]
        stop_group(record, timeout_s=2.0)
        assert proven_members(record) == []
        # `sleep 60` ended within seconds: by SIGTERM, or already collected by stop_group's own reaping
        # of exited children (then Popen reads 0).
        assert member.wait(timeout=5) in (-signal.SIGTERM, 0)
    finally:
        member.kill()
        member.wait()


def test_the_lock_holder_is_the_kernels_answer_not_the_files_contents(tmp_path):
    """Who holds a lock comes from /proc/locks: garbage (or nothing) in the file changes nothing."""
    path = tmp_path / "controller.lock"
    assert holders(path) == []
    with hold(path, wait_s=0, what="test"):
        path.write_text("-1\n")
        assert holders(path) == [os.getpid()]
    assert holders(path) == []


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path):
    """A lock held elsewhere is refused after the wait, naming the holding process."""
    path = tmp_path / "cluster.lock"
    child = subprocess.Popen(
        ["flock", "-x", str(path), "sleep", "30"], stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_until(lambda: holders(path), "flock holds the lock")
        with pytest.raises(LockBusyError, match=r"pid \d+ holds the lock"), hold(path, wait_s=0.1, what="up"):
            pass
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()


def test_a_lock_file_moved_aside_is_detected_by_its_holder(tmp_path):
    """The holder learns that its lock no longer guards the path once the file is replaced."""
    path = tmp_path / "controller.lock"
    with hold(path, wait_s=0, what="test") as held:
        assert held.bound()
        path.rename(tmp_path / "aside")
        assert not held.bound()
        with hold(path, wait_s=0, what="second"):  # a newcomer can lock the new file...
            assert not held.bound()  # ...and the first holder knows it lost the lock
            with pytest.raises(LockLostError, match="replaced or removed"):
                held.check()


def test_a_journal_that_is_a_symlink_is_refused_not_followed(tmp_path):
    """events.jsonl replaced by a link to another file: reading skips it and says so (the link is never
    followed), appending to it never writes through the link."""
    from relevo.controller.events import Event, EventKind, EventLog
    from relevo.controller.journal import read_journal

    victim = tmp_path / "victim"
    victim.write_text(
        '{"time":"t","ts":1,"kind":"health","node":"x","from":"a","to":"b","reason":"r","durations":{}}\n'
    )
    journal = tmp_path / "events.jsonl"
    journal.symlink_to(victim)
    read = read_journal(journal, 5)
    assert read.events == []
    assert read.problems == [f"the journal {journal} cannot be read (a symbolic link): skipped"]
    precious = victim.read_text()
    EventLog(journal).append(
        Event(kind=EventKind.CONTROLLER, node="controller", from_="a", to="b", reason="t")
    )
    assert victim.read_text() == precious


def test_a_node_named_controller_has_a_record_of_its_own(tmp_path):
    """A node called `controller` (a valid node name) never shares a file with the controller's record."""
    paths = StatePaths(tmp_path)
    assert paths.pid_file("controller") != paths.controller_pid
    assert paths.pid_file("controller").parent != paths.controller_pid.parent


def test_a_signal_sent_and_not_yet_acted_on_is_seen_pending():
    """A stopped process sent SIGTERM has it pending (it acts on it only once resumed): the check a
    controller's start makes so that one SIGKILLed a moment ago is not taken for a running one."""
    proc = subprocess.Popen(["sleep", "30"])
    try:
        os.kill(proc.pid, signal.SIGSTOP)
        wait_until(lambda: process_state(proc.pid) == "T", "the process is stopped")
        assert not signal_pending(proc.pid, signal.SIGTERM)
        os.kill(proc.pid, signal.SIGTERM)
        assert signal_pending(proc.pid, signal.SIGTERM)
        assert not signal_pending(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def test_a_record_an_earlier_relevo_kept_in_run_is_still_found(tmp_path):
    """A cluster started before node records moved to run/nodes/: its records are found (and moved), so
    `down` after an upgrade still stops its nodes; the controller's own record stays where it is."""
    paths = StatePaths(tmp_path / ".relevo")
    claim_state_dir(paths.root)
    ensure_dir(paths.controller_pid.parent)
    legacy = paths.controller_pid.parent / "web1.json"
    legacy.write_text(json.dumps({"intent": APACHE, "since": time.time()}))
    paths.controller_pid.write_text("{}")
    records = NodeRecords(paths)
    assert records.recorded() == ["web1"]
    assert records.kind("web1") == APACHE
    assert paths.pid_file("web1").exists() and not legacy.exists()
    assert paths.controller_pid.exists()


def test_adopting_orphans_reads_intents_only_and_never_scans_proc_for_a_dead_node(tmp_path, monkeypatch):
    """The controller adopts orphans every tick: a stale intent is still cleared, but a dead node's full
    record is left to the tick's own look at it, never proven gone by a scan of /proc for what its group
    left behind (3-10 ms a tick here, all through a failover)."""
    from relevo.cluster import Cluster
    from relevo.providers.records import ExpectedProcess
    from relevo.providers.tools import find_apache
    from relevo.topology import parse_topology

    topo = parse_topology("name: t\nnetwork: 127.9.9.0/24\n", source=None, state_dir=tmp_path / ".relevo")
    cluster = Cluster(topo)
    paths = StatePaths(topo.state_dir)
    claim_state_dir(paths.root)
    records = NodeRecords(paths)
    gone = subprocess.Popen(["true"])
    gone.wait()
    config = paths.node_dir("web1") / "httpd.conf"
    apache = os.path.realpath(find_apache().binary)
    dead = ProcessRecord(pid=gone.pid, start_time=1, pgid=gone.pid, exe=apache, config=str(config))
    records.intend("web1", APACHE)
    records.save("web1", APACHE, dead)
    records.intend("web2", APACHE)
    write_atomic(paths.held().pid_file("web2"), json.dumps({"intent": APACHE, "since": time.time() - 60}))

    def scanned(_pgid: int) -> list[int]:
        raise AssertionError("a scan of /proc")

    monkeypatch.setattr(procs, "group_members", scanned)
    cluster.adopt_orphans()
    assert records.recorded() == ["web1"], "the stale intent cleared, the full record left as it is"
    assert records.intended() == []
    expected = ExpectedProcess(APACHE, apache, config, paths.node_dir("web1") / "httpd.pid")
    assert records.load("web1", expected) == dead
