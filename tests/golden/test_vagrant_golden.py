"""Golden files for `relevo export vagrant`: a topology and export options in, the exact Vagrantfile,
provisioning scripts and container files out; and every generated script passes `bash -n` and
shellcheck, every Vagrantfile `vagrant validate` (offline: no VM is started).

Regenerate after an intended change with `RELEVO_REGEN_GOLDEN=1 pytest tests/golden`, then read the diff.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from relevo.model import Topology
from relevo.secrets import Secrets
from relevo.topology import parse_topology
from relevo.vagrant.controller import Credentials, load_or_create_credentials
from relevo.vagrant.export import export_vagrant
from relevo.vagrant.plan import VagrantProvider, VagrantSettings, plan_vms

CASES = sorted(p for p in (Path(__file__).parent / "vagrant").iterdir() if p.is_dir())
REGENERATE = os.environ.get("RELEVO_REGEN_GOLDEN") == "1"
SECRETS = Secrets(stats_user="admin", stats_password="golden-password")
# Test-only certificates and keys (made once by the export's own openssl call, never used elsewhere), so
# that the golden files do not change with every run.
CREDENTIALS_DIR = Path(__file__).parent / "vagrant-credentials"


def case_topology(case: Path) -> Topology:
    """The case's relevo.yaml, or the built-in default (the seed's layout) when it has none."""
    from relevo.topology import default_text

    yaml_file = case / "relevo.yaml"
    text = yaml_file.read_text() if yaml_file.exists() else default_text()
    source = Path("/srv/relevo.yaml") if yaml_file.exists() else None
    return parse_topology(text, source=source, state_dir=Path("/srv/.relevo"))


def case_settings(case: Path) -> VagrantSettings:
    options = json.loads((case / "options.json").read_text())
    if "provider" in options:
        options["provider"] = VagrantProvider(options["provider"])
    return VagrantSettings(**options)


def case_credentials(case: Path) -> Credentials:
    topology, settings = case_topology(case), case_settings(case)
    return load_or_create_credentials(CREDENTIALS_DIR, plan_vms(topology, settings))


def exported_tree(case: Path, into: Path) -> dict[str, tuple[bytes, int]]:
    export_vagrant(
        case_topology(case),
        case_settings(case),
        into,
        secrets=SECRETS,
        credentials=case_credentials(case),
        runtime=False,
    )
    return {
        str(path.relative_to(into)): (path.read_bytes(), path.stat().st_mode & 0o777)
        for path in sorted(into.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_export_matches_golden(case: Path, tmp_path: Path):
    """Every file `relevo export vagrant` writes equals the reviewed golden file, byte for byte."""
    files = exported_tree(case, tmp_path / "out")
    expected_dir = case / "expected"
    if REGENERATE:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for name, (data, _mode) in files.items():
            (expected_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / name).write_bytes(data)
    expected = {
        str(p.relative_to(expected_dir)): p.read_bytes() for p in expected_dir.rglob("*") if p.is_file()
    }
    assert sorted(files) == sorted(expected)
    for name, (data, _mode) in files.items():
        assert data == expected[name], f"{case.name}/{name} differs from its golden file"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_export_modes(case: Path, tmp_path: Path):
    """Scripts are executable, files holding the stats password or a private key 0600, the directory
    0700."""
    out = tmp_path / "out"
    files = exported_tree(case, out)
    assert out.stat().st_mode & 0o777 == 0o700
    for name, (data, mode) in files.items():
        if name.startswith("provision/"):
            assert mode == 0o755, name
        elif b"golden-password" in data or b"PRIVATE KEY" in data:
            assert mode == 0o600, name
        elif name.startswith("vmfiles/") and (
            name.endswith("/usr/local/bin/relevo") or "/usr/local/sbin/" in name
        ):
            assert mode == 0o755, name  # relevo, and a pair's keepalived checker and notify scripts
        else:
            assert mode == 0o644, name
    assert any(b"golden-password" in data for data, _mode in files.values())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_scripts_pass_bash_n_and_shellcheck(case: Path, tmp_path: Path):
    """Every generated provisioning script parses (`bash -n`) and has no shellcheck finding."""
    out = tmp_path / "out"
    exported_tree(case, out)
    scripts = sorted((out / "provision").glob("*.sh"))
    assert len(scripts) == len(case_topology(case).node_names)
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: scripts/bootstrap --dev installs it"
    for script in scripts:
        subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    result = subprocess.run(
        [shellcheck, "--severity=style", *map(str, scripts)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_vagrant_validate(case: Path, tmp_path: Path):
    """`vagrant validate` accepts the Vagrantfile, for libvirt and (provider-blind) for VirtualBox."""
    vagrant = shutil.which("vagrant")
    assert vagrant, "vagrant is missing: scripts/bootstrap --dev installs it (with vagrant-libvirt)"
    out = tmp_path / "out"
    exported_tree(case, out)
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    for extra, provider in (([], "libvirt"), (["--ignore-provider"], "virtualbox")):
        result = subprocess.run(
            [vagrant, "validate", *extra],
            cwd=out,
            env={**env, "VAGRANT_DEFAULT_PROVIDER": provider},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "validated successfully" in result.stdout


# Where the container's files live, moved under a temporary root so the real programs can check them here.
GUEST_ROOTS = (
    "/var/lib/relevo",
    "/etc/relevo",
    "/var/www/relevo",
    "/run/relevo-apache",
    "/var/log/relevo-apache",
    "/etc/haproxy",
    "/run/haproxy",
    "/var/lib/haproxy",
)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_real_programs_accept_the_containers_configs(case: Path, tmp_path: Path):
    """`haproxy -c` and `apache2 -t` (the provisioning's own check argv) accept each container's config,
    with the guest's directories moved under a temporary root and made as the provisioning makes them."""
    from relevo.providers.tools import find_apache, find_haproxy
    from relevo.vagrant.guest import guest_service

    out = tmp_path / "out"
    exported_tree(case, out)
    topology = case_topology(case)
    # A short root: HAProxy refuses a Runtime API socket path longer than 97 characters.
    short = Path(tempfile.mkdtemp(prefix="relevo-v-"))
    for vm in plan_vms(topology, case_settings(case)):
        root = short / vm.node
        for source in (out / "files" / vm.node).rglob("*"):
            if source.is_file():
                target = root / source.relative_to(out / "files" / vm.node)
                target.parent.mkdir(parents=True, exist_ok=True)
                text = source.read_text()
                for guest in GUEST_ROOTS:
                    text = text.replace(guest, f"{root}{guest}")
                target.write_text(text)
        service = guest_service(topology, vm)
        for directory in service.directories:
            (root / directory.lstrip("/")).mkdir(parents=True, exist_ok=True)
        exe = find_haproxy() if service.check[0] == "haproxy" else find_apache().binary
        # The provisioning's argv, without -q so that a failure says why.
        args = (f"{root}{arg}" if arg.startswith("/") else arg for arg in service.check[1:] if arg != "-q")
        result = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{vm.node}: {result.stdout}{result.stderr}"
    shutil.rmtree(short)
