"""The provider seam: faults as words each provider maps, providers declaring their own options and
rules, and HAProxy rendered for a layout and addresses a provider resolved."""

from __future__ import annotations

import signal
from pathlib import Path, PurePosixPath

import pytest

from relevo.errors import TopologyError
from relevo.model import Endpoint
from relevo.providers.base import Fault, as_fault, options_spec
from relevo.providers.local import FAULT_SIGNALS
from relevo.render.haproxy import Binds, HAProxyLayout, render_haproxy
from relevo.secrets import Secrets
from relevo.services.apache import ApacheService, guest_layout
from relevo.topology import default_text, parse_topology

SECRETS = Secrets(stats_user="admin", stats_password="pw")


def parse(text: str):
    return parse_topology(text, source=Path("/x/relevo.yaml"), state_dir=Path("/x/.relevo"))


def test_relevo_kill_signals_name_faults_and_the_local_provider_maps_them_back():
    """Each signal `relevo kill` takes means one fault, and the local provider sends that signal for it."""
    for sig, fault in [
        (signal.SIGKILL, Fault.CRASH),
        (signal.SIGSTOP, Fault.HANG),
        (signal.SIGCONT, Fault.RESUME),
        (signal.SIGTERM, Fault.STOP),
    ]:
        assert as_fault(sig) is fault
        assert FAULT_SIGNALS[fault] is sig
    with pytest.raises(ValueError, match="no fault for SIGHUP"):
        as_fault(signal.SIGHUP)


def test_a_provider_declares_its_options():
    """The local provider's node option is declared by the provider, not by the loader."""
    spec = options_spec("local")
    assert spec is not None
    assert dict(spec.node) == {"threads_per_child": int}
    topology = parse("nodes:\n  web1: {role: web, options: {threads_per_child: 5}}\n")
    assert topology.node("web1").options["threads_per_child"] == 5


@pytest.mark.parametrize(
    ("text", "line", "column", "expected"),
    [
        ("providers:\n  local: {colour: blue}\n", 2, 11, "providers.local: unknown key 'colour'"),
        ("providers:\n  nosuch: {}\n", 2, 3, "providers: unknown provider 'nosuch'"),
        ("providers: [local]\n", 1, 12, "providers: expected a mapping"),
    ],
)
def test_provider_sections_have_line_exact_errors(text: str, line: int, column: int, expected: str):
    """A providers: section is checked against what the provider declares, with file, line and column."""
    with pytest.raises(TopologyError) as info:
        parse(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert expected in str(info.value)


def test_haproxy_renders_for_a_guest_layout_and_resolved_addresses():
    """In a guest HAProxy's socket, states and 503 page sit in Debian's places, and it binds the
    addresses the provider resolved (not the host-side ones the topology names)."""
    topology = parse(default_text())
    binds = Binds(
        frontend=Endpoint(address="10.9.0.2", port=80),
        stats=Endpoint(address="10.9.0.2", port=8404),
        servers={n.name: Endpoint(address=f"10.9.0.{i + 3}", port=80) for i, n in enumerate(topology.nodes)},
    )
    text = render_haproxy(topology, SECRETS, HAProxyLayout.in_guest(), binds)
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin" in text
    assert "server-state-file /var/lib/haproxy/server-state" in text
    assert "errorfile 503 /etc/haproxy/errors/relevo-503.http" in text
    assert "bind 10.9.0.2:80\n" in text and "bind 10.9.0.2:8404\n" in text
    assert "server web1 10.9.0.3:80 " in text
    assert str(topology.state_dir) not in text


def test_apache_in_a_guest_lives_in_relevo_s_own_directories():
    """A guest's Apache config points only into its own layout and is checked and run by argv."""
    topology = parse(default_text())
    node = topology.node("web1")
    service = ApacheService(topology, node, guest_layout(node), run_as=("www-data", "www-data"))
    files = {f.path: f.content for f in service.files()}
    config = files[PurePosixPath("/etc/relevo/apache/httpd.conf")]
    assert 'DocumentRoot "/var/www/relevo"' in config and "User www-data" in config
    assert files[PurePosixPath("/var/www/relevo/health")] == "ok\n"
    assert service.check_argv() == ["apache2", "-t", "-f", "/etc/relevo/apache/httpd.conf"]
    assert str(topology.state_dir) not in config


def test_an_lxd_topology_puts_the_seed_layout_on_its_bridge_and_the_frontend_on_loopback():
    """provider: lxd hands out the seed's .2-.6 on the bridge's subnet; the host reaches the balancer
    on a loopback address derived from its own (where the proxy devices listen)."""
    topology = parse(
        "provider: lxd\nnetwork: 10.213.7.0/24\n"
        "providers:\n  lxd: {image: relevo/bookworm, storage_pool: default}\n"
    )
    assert topology.balancer.address == "10.213.7.2"
    assert topology.balancer.frontend == Endpoint(address="127.213.7.2", port=8080)
    assert topology.balancer.stats == Endpoint(address="127.213.7.2", port=8404)
    assert [n.address for n in topology.nodes] == [f"10.213.7.{i}" for i in range(3, 7)]
    assert dict(topology.provider_options("lxd")) == {"image": "relevo/bookworm", "storage_pool": "default"}


@pytest.mark.parametrize(
    ("text", "line", "column", "expected"),
    [
        ("provider: lxd\n", 1, 1, "an LXD container needs an IPv4 address on its bridge"),
        (
            "provider: lxd\nnetwork: 10.213.7.0/24\nbalancer: {frontend: {address: 10.0.0.1}}\n",
            3,
            11,
            "proxy device on loopback",
        ),
        (
            "provider: lxd\nnetwork: 10.213.7.0/24\nproviders:\n  lxd: {subnet: x}\n",
            4,
            9,
            "unknown key 'subnet'",
        ),
        (
            "provider: lxd\nnetwork: 10.213.7.0/24\nnodes:\n  web1: {role: web, options: {target: 3}}\n",
            4,
            39,
            "nodes.web1.options.target: expected text",
        ),
    ],
)
def test_lxd_topology_errors_are_line_exact(text: str, line: int, column: int, expected: str):
    """The LXD provider's own rules (a bridge subnet, loopback proxies, its options) fail with a line."""
    with pytest.raises(TopologyError) as info:
        parse(text)
    assert expected in str(info.value)
    assert (info.value.line, info.value.column) == (line, column)
