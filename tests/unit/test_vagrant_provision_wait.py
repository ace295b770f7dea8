"""The generated provisioning's waits, run for real in bash against a fake `systemctl` (and an `lxc` that
runs the command after `--` on this host): a container's systemd whose bus does not answer yet is waited
for, one that never settles is a clear failure within the bound, and a `systemctl` that gives no answer is
never taken for "disabled"; and what a failed provisioning says. Time is simulated: the test's `sleep`
advances bash's SECONDS at once."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.topology import default_text
from relevo.vagrant.export import SYSTEMD_WAIT_S

BUS_ERROR = "Failed to connect to bus: No such file or directory"

# systemctl as the container would run it: its first FAILS calls fail as systemd's missing private socket
# makes it fail, then it answers ANSWER (exit status 1 unless "running", as systemctl's own).
FAKE_SYSTEMCTL = """#!/bin/sh
echo "$*" >>"$CALLS"
count=$(wc -l <"$CALLS")
if [ "$count" -le "$FAILS" ]; then
    echo "{bus_error}" >&2
    exit 1
fi
echo "$ANSWER"
[ "$ANSWER" = running ]
""".replace("{bus_error}", BUS_ERROR)

# lxc exec CONTAINER [--env K=V]... -- ARGV: ARGV, here.
FAKE_LXC = """#!/bin/sh
while [ "$1" != "--" ]; do shift; done
shift
exec "$@"
"""


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The seed's provisioning scripts as `relevo export vagrant` writes them."""
    root = tmp_path_factory.mktemp("export")
    topology = root / "relevo.yaml"
    topology.write_text(default_text())
    result = CliRunner().invoke(cli, ["-f", str(topology), "export", "vagrant", str(root / "out")])
    assert result.exit_code == 0, result.output
    return {p.stem: p.read_text() for p in (root / "out" / "provision").glob("*.sh")}


def function(script: str, name: str) -> str:
    """The shell function NAME's definition, as written in the script."""
    found = re.search(rf"^ *{name}\(\) \{{\n.*?^ *\}}\n", script, re.MULTILINE | re.DOTALL)
    assert found, f"no function {name} in the script"
    return found.group(0)


def fakes(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("systemctl", FAKE_SYSTEMCTL), ("lxc", FAKE_LXC)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_wait(
    tmp_path: Path, script: str, *, fails: int, answer: str, bound_s: int
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    calls = tmp_path / "calls"
    calls.touch()
    harness = (
        "set -euo pipefail\n"
        "CONTAINER=relevo-web1\n"
        # The injected clock: a sleep takes no time, and bash's SECONDS moves on by its length.
        "sleep() { SECONDS=$((SECONDS + $1)); }\n"
        f"{function(script, 'wait_for_systemd')}"
        f"wait_for_systemd {bound_s}\n"
    )
    env = {
        "PATH": f"{fakes(tmp_path)}:/usr/bin:/bin",
        "CALLS": str(calls),
        "FAILS": str(fails),
        "ANSWER": answer,
    }
    result = subprocess.run(["bash", "-c", harness], env=env, capture_output=True, text=True, timeout=120)
    return result, calls.read_text().splitlines()


# What waits in a generated script: a command given a bound (timeout), told to wait (--wait, waitready,
# the script's own wait_for_*) or a pause between tries.
WAITING = re.compile(r"\btimeout\b|wait|\bsleep\b")


def commands(script: str) -> list[str]:
    """The script's lines, each continued line (ending in a backslash) joined to the next."""
    return script.replace("\\\n", " ").splitlines()


@pytest.mark.parametrize("node", ["ha1", "web1", "web2", "web1bck", "web2bck"])
def test_no_wait_has_its_failure_hidden_by_or_true(scripts: dict[str, str], node: str):
    """No `|| true` follows a command that waits (issue 17 item 14): a wait that gives up is either a
    failure that stops provisioning or an answer the next line decides on, never nothing."""
    hidden = [line.strip() for line in commands(scripts[node]) if "|| true" in line and WAITING.search(line)]
    assert hidden == []
    assert "|| true" in scripts[node]  # the check reads the lines where they are: not vacuous


@pytest.mark.parametrize("node", ["web1", "web1bck", "ha1"])
def test_every_vm_waits_for_systemd_with_the_bound(scripts: dict[str, str], node: str):
    """Each VM's script waits for its container's systemd, bounded by SYSTEMD_WAIT_S, before its
    service's step."""
    script = scripts[node]
    wait = script.index(f"\nwait_for_systemd {SYSTEMD_WAIT_S}\n")
    first_systemctl_in_container = script.index("-- sh -eu <<'IN_CONTAINER'")
    assert script.index('begin "start $CONTAINER"') < wait < first_systemctl_in_container
    assert script.count("systemctl is-system-running") == 1  # the wait's own, nowhere else


@pytest.mark.parametrize("answer", ["degraded", "running"])
def test_wait_outlasts_a_bus_not_answering_yet(scripts: dict[str, str], tmp_path: Path, answer: str):
    """systemctl failing with "Failed to connect to bus" for its first calls is asked again until it
    gives a settled state, and the wait then succeeds."""
    result, calls = run_wait(tmp_path, scripts["web1"], fails=3, answer=answer, bound_s=SYSTEMD_WAIT_S)
    assert result.returncode == 0, result.stderr
    assert calls == ["is-system-running --wait"] * 4


@pytest.mark.parametrize(
    ("fails", "answer", "said"),
    [(10**6, "running", BUS_ERROR), (0, "maintenance", "maintenance"), (0, "offline", "offline")],
)
def test_wait_that_never_settles_fails_clearly_within_the_bound(
    scripts: dict[str, str], tmp_path: Path, fails: int, answer: str, said: str
):
    """A systemd that never answers (or stays in maintenance/offline) fails the wait once the bound
    has passed, with a message naming the container, the bound and systemctl's last answer."""
    bound_s = 30
    result, calls = run_wait(tmp_path, scripts["web1"], fails=fails, answer=answer, bound_s=bound_s)
    assert result.returncode == 1
    assert f"systemd in relevo-web1 did not come up within {bound_s} s" in result.stderr
    assert said in result.stderr
    # At most one try per second of the bound (simulated, plus the real time the tries take on a busy
    # machine), then the failure: bounded, not forever.
    assert 1 < len(calls) <= bound_s + 1


@pytest.mark.parametrize(
    ("fails", "answer", "status", "said"),
    [(0, "enabled", 0, ""), (0, "disabled", 1, ""), (1, "", 1, "systemctl gave no state for apache2")],
)
def test_enabled_never_takes_no_answer_for_disabled(
    scripts: dict[str, str], tmp_path: Path, fails: int, answer: str, status: int, said: str
):
    """The container step's `enabled` says yes for "enabled", no for another state, and stops the step
    (exit 1, a message) when systemctl gives no state at all."""
    calls = tmp_path / "calls"
    calls.touch()
    harness = (
        f"{function(scripts['web1'], 'enabled')}if enabled apache2.service; then echo yes; else echo no; fi\n"
    )
    env = {
        "PATH": f"{fakes(tmp_path)}:/usr/bin:/bin",
        "CALLS": str(calls),
        "FAILS": str(fails),
        "ANSWER": answer,
    }
    result = subprocess.run(["sh", "-eu", "-c", harness], env=env, capture_output=True, text=True, timeout=60)
    if said:
        assert result.returncode == 1
        assert said in result.stderr
        assert result.stdout == ""
    else:
        assert result.stdout.strip() == ("yes" if status == 0 else "no")


# lxc with no image yet: `image info` fails, `image import FILE ...` records FILE.
FAKE_LXC_IMAGES = """#!/bin/sh
if [ "$1 $2" = "image info" ]; then
    exit 1
fi
if [ "$1 $2" = "image import" ]; then
    echo "$3" >>"$CALLS"
fi
"""


def image_step(script: str) -> str:
    """The script's image step, from its `begin` to the next step's."""
    found = re.search(r'^begin "image \$IMAGE"\n.*?(?=^begin )', script, re.MULTILINE | re.DOTALL)
    assert found, "no image step in the script"
    return found.group(0)


@pytest.mark.parametrize(
    ("uploaded", "carried", "imported"),
    [(False, True, "box"), (True, True, "uploaded"), (True, False, "uploaded"), (False, False, None)],
)
def test_image_step_imports_the_uploaded_image_else_the_boxs(
    scripts: dict[str, str], tmp_path: Path, uploaded: bool, carried: bool, imported: str | None
):
    """LXD without the image imports the one `export --image` uploaded, else the one the box carries in
    BOX_IMAGE_DIR (no upload needed); with neither, the step fails saying where it looked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "lxc").write_text(FAKE_LXC_IMAGES)
    (bin_dir / "lxc").chmod(0o755)
    tarballs = {"uploaded": tmp_path / "uploaded", "box": tmp_path / "box"}
    for name, wanted in (("uploaded", uploaded), ("box", carried)):
        if wanted:
            tarballs[name].mkdir()
            (tarballs[name] / "debian-bookworm-x86_64-aaaa.tar.zst").write_bytes(b"image")
    calls = tmp_path / "calls"
    calls.touch()
    harness = (
        "set -euo pipefail\n"
        f"IMAGE=relevo/bookworm IMAGE_DIR={tarballs['uploaded']} BOX_IMAGE_DIR={tarballs['box']}\n"
        "begin() { :; }\n"
        f"{image_step(scripts['web1'])}"
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls)}
    result = subprocess.run(["bash", "-c", harness], env=env, capture_output=True, text=True, timeout=60)
    if imported is None:
        assert result.returncode == 1
        assert f"the box carries none in {tarballs['box']}" in result.stderr
        assert calls.read_text() == ""
    else:
        assert result.returncode == 0, result.stderr
        assert calls.read_text().split() == [str(tarballs[imported] / "debian-bookworm-x86_64-aaaa.tar.zst")]


# What the VM would say after its LXD daemon died mid-step: the daemon's journal, memory, the kernel's log.
FAKE_DIAGNOSTICS = {
    "journalctl": 'echo "lxd[812]: the daemon\'s last line"\n',
    "free": 'echo "Mem:  736  700  36"\n',
    "dmesg": 'echo "eth1: link up"\necho "Out of memory: Killed process 812 (lxd)"\n',
    "lxc": "exit 0\n",
}


@pytest.mark.parametrize(("node", "status"), [("web1bck", 1), ("ha1", 1), ("web1bck", 0)])
def test_a_failed_provisioning_says_what_lxd_and_the_kernel_said_last(
    scripts: dict[str, str], tmp_path: Path, node: str, status: int
):
    """A provisioning that fails prints, beside its failed step, the LXD daemon's last journal lines,
    the VM's memory and the kernel's OOM kills (not its other lines), and keeps its exit status; one that
    succeeds prints none of it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKE_DIAGNOSTICS.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}")
        (bin_dir / name).chmod(0o755)
    harness = (
        "set -euo pipefail\n"
        f"FILES={tmp_path}/f VMFILES={tmp_path}/v IMAGE_DIR={tmp_path}/i RUNTIME_DIR={tmp_path}/r\n"
        f"CONTAINER=relevo-{node} step='container relevo-{node}'\n"
        f"{function(scripts[node], 'finish')}"
        f"trap finish EXIT\nexit {status}\n"
    )
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    result = subprocess.run(["bash", "-c", harness], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == status
    said = ["lxd[812]: the daemon's last line", "Mem:  736  700  36", "Killed process 812 (lxd)"]
    if status:
        assert f"provisioning {node} FAILED at step: container relevo-{node}" in result.stderr
        assert all(line in result.stderr for line in said), result.stderr
        assert "eth1: link up" not in result.stderr
    else:
        assert result.stderr == ""
