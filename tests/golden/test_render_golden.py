"""Golden files for every renderer: a topology in, the exact configuration out.

Regenerate after an intended change with `RELEVO_REGEN_GOLDEN=1 pytest tests/golden`, then read the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relevo.paths import StatePaths
from relevo.render.apache import layout_for, render_apache
from relevo.render.haproxy import Binds, HAProxyLayout, render_503, render_haproxy
from relevo.render.keepalived import render_checker, render_keepalived
from relevo.secrets import Secrets
from relevo.topology import parse_topology

CASES = sorted(p for p in (Path(__file__).parent / "cases").iterdir() if p.is_dir())
REGENERATE = os.environ.get("RELEVO_REGEN_GOLDEN") == "1"
SECRETS = Secrets(stats_user="admin", stats_password="golden-password")
MODULES = Path("/usr/lib/apache2/modules")


def rendered(case: Path) -> dict[str, str]:
    """Every file relevo renders for the case's topology, with fixed paths and credentials."""
    topology = parse_topology(
        (case / "relevo.yaml").read_text(), source=Path("/srv/relevo.yaml"), state_dir=Path("/srv/.relevo")
    )
    paths = StatePaths(topology.state_dir)
    files = {"haproxy.cfg": render_haproxy(topology, SECRETS, paths), "503.http": render_503(topology)}
    for node in topology.nodes:
        layout = layout_for(node, paths, MODULES)
        files[f"{node.name}.httpd.conf"] = render_apache(
            topology, node, layout, run_as=("www-data", "www-data")
        )
    pair = topology.pair
    if pair is not None and pair.vip is None:  # local: the peer's own socket and stats, the one frontend
        peer_layout = HAProxyLayout.of_balancer(paths, topology, pair.peer.name)
        binds = Binds.planned(topology, pair.peer.name)
        files[f"{pair.peer.name}.haproxy.cfg"] = render_haproxy(topology, SECRETS, peer_layout, binds)
    elif pair is not None:
        for balancer in topology.balancers:
            conf = render_keepalived(topology, balancer.name, interface="eth0")
            files[f"{balancer.name}.keepalived.conf"] = conf
        files["relevo-haproxy-check"] = render_checker(topology)
    return files


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rendered_files_match_golden(case: Path):
    """The rendered haproxy.cfg, 503 page and Apache configs equal the reviewed golden files."""
    expected_dir = case / "expected"
    files = rendered(case)
    if REGENERATE:
        expected_dir.mkdir(exist_ok=True)
        for old in expected_dir.iterdir():
            old.unlink()
        for name, text in files.items():
            (expected_dir / name).write_bytes(text.encode())
    expected = {p.name: p.read_bytes().decode() for p in expected_dir.iterdir()}
    assert sorted(files) == sorted(expected)
    for name, text in files.items():
        assert text == expected[name], f"{case.name}/{name} differs from its golden file"
