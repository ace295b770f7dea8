"""`relevo doctor`: each missing thing named with the command that fixes it; the exit status counts the
LXD checks only when the topology (or --lxd) needs LXD."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from relevo import doctor, doctor_addresses
from relevo.cli import cli
from relevo.doctor import Check, lxd_checks
from relevo.lxd.client import LXDClient
from relevo.lxd.transport import APIEndpoint


def test_a_missing_program_comes_with_its_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A program not on the search path is reported missing, with the apt-get command that installs it."""
    monkeypatch.setattr(doctor, "SEARCH_PATH", str(tmp_path))
    check = doctor._program("HAProxy", ("haproxy",), ["-v"], "haproxy", "local")
    assert not check.ok
    assert check.fix.endswith("apt-get install -y haproxy")


def test_no_lxd_daemon_says_how_to_start_one(tmp_path: Path) -> None:
    """When no daemon answers on the socket, the LXD check fails and names scripts/lxd-daemon start."""
    checks = {c.name: c for c in lxd_checks(LXDClient(APIEndpoint(socket_path=tmp_path / "none.socket")))}
    assert not checks["LXD daemon"].ok
    assert checks["LXD daemon"].fix == "sudo scripts/lxd-daemon start"
    assert "storage pool" not in checks  # nothing more can be known without the daemon


CHECKS = [
    Check(name="HAProxy", ok=True, detail="/usr/sbin/haproxy", group="local"),
    Check(name="LXD daemon", ok=False, detail="no daemon", fix="sudo scripts/lxd-daemon start", group="lxd"),
]


@pytest.mark.parametrize(("args", "status"), [([], 0), (["--lxd"], 1), (["--no-lxd"], 0)])
def test_the_exit_status_counts_lxd_only_when_needed(
    monkeypatch: pytest.MonkeyPatch, args: list[str], status: int
) -> None:
    """The default (local) topology does not need LXD: a missing daemon fails doctor only with --lxd."""
    monkeypatch.setattr(doctor, "run_checks", lambda **_: list(CHECKS))
    monkeypatch.setattr(doctor_addresses, "topology_checks", lambda topology: [])
    result = CliRunner().invoke(cli, ["doctor", *args])
    assert result.exit_code == status, result.output
    assert "fix: sudo scripts/lxd-daemon start" in result.output


def test_doctor_json_lists_every_check_and_whether_it_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """--json gives ok, and per check its result, detail, fix and whether it counted in the status."""
    monkeypatch.setattr(doctor, "run_checks", lambda **_: list(CHECKS))
    monkeypatch.setattr(doctor_addresses, "topology_checks", lambda topology: [])
    result = CliRunner().invoke(cli, ["doctor", "--json", "--lxd"])
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert [(c["name"], c["ok"], c["counted"]) for c in data["checks"]] == [
        ("HAProxy", True, True),
        ("LXD daemon", False, True),
    ]


class TrustedDaemon:
    """The answers of a daemon that trusts this client and has a pool and one image alias."""

    endpoint = APIEndpoint(socket_path=Path("/var/lib/lxd/unix.socket"))

    def server(self) -> dict[str, object]:
        return {"auth": "trusted", "environment": {"server": "lxd", "server_version": "5.0.2"}}

    def storage_pools(self) -> list[str]:
        return ["default"]

    def alias_target(self, alias: str) -> str | None:
        return "0123456789abcdef" if alias == "relevo/bookworm" else None


def test_the_image_check_follows_the_topology_s_alias() -> None:
    """The base image is looked up under the alias the topology names; a missing one comes with the
    `relevo image build --alias` command that makes it."""
    client: Any = TrustedDaemon()
    checks = {c.name: c for c in lxd_checks(client)}
    assert checks["base image"].ok and checks["base image"].detail == "relevo/bookworm → 0123456789ab"
    checks = {c.name: c for c in lxd_checks(client, image="mine/web")}
    assert not checks["base image"].ok
    assert checks["base image"].detail == "no image alias mine/web"
    assert checks["base image"].fix.endswith("relevo image build --alias mine/web")
