"""Every rendered configuration is accepted by the real programs: `haproxy -c` and `apache2 -t`."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck as Health
from hypothesis import given, settings
from hypothesis import strategies as st

from relevo.commands import run
from relevo.paths import StatePaths
from relevo.providers.tools import find_apache, find_haproxy
from relevo.render.apache import layout_for, worker_account, write_apache_files
from relevo.render.haproxy import write_haproxy_files
from relevo.secrets import Secrets
from relevo.topology import parse_topology

SECRETS = Secrets(stats_user="admin", stats_password="checked-password")


@st.composite
def topologies(draw: st.DrawFn) -> str:
    """Random but valid topology files: 1-5 primaries, any standbys, any balance, mode and timings."""
    primaries = draw(st.integers(min_value=1, max_value=5))
    names = [f"w{i}" for i in range(primaries)]
    paired = draw(st.lists(st.sampled_from(names), unique=True))
    nodes = "".join(f"  {n}: {{role: web}}\n" for n in names)
    nodes += "".join(f"  {n}s: {{role: standby, standby_for: {n}}}\n" for n in paired)
    ms = st.integers(min_value=10, max_value=5000)
    balance = draw(st.sampled_from(["roundrobin", "static-rr", "leastconn", "first", "source", "random"]))
    return (
        f"name: {draw(st.from_regex(r'[a-z][a-z0-9-]{0,10}', fullmatch=True))}\n"
        f"balancer: {{balance: {balance}, retries: {draw(st.integers(0, 10))}, "
        f"timeout_server: {draw(ms)}ms, timeout_connect: {draw(ms)}ms}}\n"
        f"health: {{path: {draw(st.sampled_from(['/health', '/hc', '/a/b-c.txt']))}, "
        f"interval: {draw(ms)}ms, fastinter: {draw(ms)}ms, downinter: {draw(ms)}ms, timeout: {draw(ms)}ms, "
        f"rise: {draw(st.integers(1, 10))}, fall: {draw(st.integers(1, 10))}}}\n"
        f"standby: {{mode: {draw(st.sampled_from(['paired', 'pool']))}}}\n"
        f"nodes:\n{nodes}"
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[Health.too_slow])
@given(text=topologies())
def test_haproxy_accepts_every_rendered_config(text: str):
    """`haproxy -c` accepts the config rendered from any valid topology."""
    with tempfile.TemporaryDirectory(prefix="relevo-c-") as tmp:
        topology = parse_topology(text, source=None, state_dir=Path(tmp))
        config = write_haproxy_files(topology, SECRETS, StatePaths(Path(tmp)))
        run([str(find_haproxy()), "-c", "-f", str(config)], what="haproxy -c")


@settings(max_examples=10, deadline=None)
@given(text=topologies())
def test_apache_accepts_every_rendered_config(text: str):
    """`apache2 -t` accepts each node's rendered config (pages and health file written beside it)."""
    apache = find_apache()
    with tempfile.TemporaryDirectory(prefix="relevo-a-") as tmp:
        topology = parse_topology(text, source=None, state_dir=Path(tmp))
        for node in topology.nodes:
            layout = layout_for(node, StatePaths(Path(tmp)), apache.modules_dir)
            config = write_apache_files(topology, node, layout)
            run([str(apache.binary), "-t", "-f", str(config)], what="apache2 -t")


def test_worker_account_is_unprivileged_when_root():
    """As root, Apache's workers are given an unprivileged account; otherwise no switch is rendered."""
    import os

    account = worker_account()
    if os.geteuid() == 0:
        assert account is not None
        assert account[0] != "root"
    else:
        assert account is None
