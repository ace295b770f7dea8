"""Reads `relevo.yaml` into a frozen `Topology`: its schema, address planning and whole-cluster checks.

The values are read with `relevo.positioned` (as the scenario files are), so every error names the file,
the line and column, and what was expected (a `TopologyError`, exit status 2).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from relevo.errors import TopologyError
from relevo.model import (
    JOURNAL_MAX_BYTES_HIGH,
    JOURNAL_MAX_BYTES_LOW,
    Balance,
    Balancer,
    BalancerPair,
    Capacity,
    ControllerSettings,
    DashboardSettings,
    Endpoint,
    Failback,
    HealthCheck,
    Node,
    OptionValue,
    RestartPolicy,
    Role,
    StandbyMode,
    StandbyPolicy,
    Temperature,
    Topology,
)
from relevo.positioned import MAX_BYTES, PositionedReader, compose_yaml, read_yaml_text, shown
from relevo.providers.base import host_address, known_providers, options_spec, topology_problems

DEFAULT_FILE = "relevo.yaml"
STATE_DIR = ".relevo"
DEFAULT_WEB_PORT = 8080
# `balancer:` keys that make and tune a pair of balancers.
VIP_HOST = 10  # a pair's default VIP on a provider with its own network: that network's .10
PAIR_KEYS = frozenset({"peer", "peer_address", "vip", "failback", "router_id", "advert"})


def default_text() -> str:
    """The default topology, the seed's layout: what `relevo init` writes and what runs without a file."""
    return files("relevo").joinpath("default.yaml").read_text()


def find_topology_file(start: Path) -> Path | None:
    """relevo.yaml in `start` or the nearest of its parents (as git and docker compose look), else None.

    A file found in a parent must belong to this user (or root): relevo often runs as root, and a
    relevo.yaml someone else left in /tmp must not decide what it starts.
    """
    for directory in (start, *start.parents):
        candidate = directory / DEFAULT_FILE
        try:
            owner = candidate.stat().st_uid
        except OSError:
            continue
        if directory != start and owner not in (0, os.geteuid()):
            raise TopologyError(
                f"found in a parent directory, but it belongs to another user (uid {owner}); "
                "pass it with -f if you mean to use it",
                path=candidate,
            )
        return candidate
    return None


def load_topology(path: Path | None = None) -> Topology:
    """Load `path`; with None, relevo.yaml in the current directory or its parents, else the built-in
    default."""
    if path is None:
        found = find_topology_file(Path.cwd())
        if found is None:
            return parse_topology(default_text(), source=None, state_dir=Path.cwd() / STATE_DIR)
        path = found
    path = path.resolve()
    text = read_topology_text(path)
    return parse_topology(text, source=path, state_dir=path.parent / STATE_DIR)


def parse_topology(text: str, *, source: Path | None, state_dir: Path) -> Topology:
    root = compose_yaml(text, source=source)
    if root is None:
        if source is not None:
            raise TopologyError(
                "the file is empty; run `relevo init` to write the default topology", path=source
            )
        root = yaml.MappingNode("tag:yaml.org,2002:map", [])
    try:
        return _TopologyReader(source).topology(root, state_dir)
    except RecursionError:
        raise TopologyError("nested too deeply", path=source) from None


class _TopologyReader:
    """Walks the topology's composed YAML section by section (the values through a `PositionedReader`,
    so errors carry their position), planning addresses and checking the cluster as a whole."""

    def __init__(self, source: Path | None) -> None:
        self.source = source
        self.read = PositionedReader(source)
        self.network_at: yaml.Node | None = None
        self.network: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network("127.100.0.0/24")

    def next_address(self, addresses: Iterator[str], who: str) -> str:
        """The next free address of the network, or an error saying the network is too small."""
        address = next(addresses, None)
        if address is None:
            raise self.read.fail(
                self.network_at or yaml.ScalarNode("tag:yaml.org,2002:str", ""),
                f"network: {self.network} is too small: no address left for {who} (the balancer and "
                "each node without `address:` take one, from the second host address on)",
            )
        return address

    # -- sections ------------------------------------------------------------------------------------
    def topology(self, root: yaml.Node, state_dir: Path) -> Topology:
        top = self.read.mapping(
            root,
            "top level",
            {
                "version",
                "name",
                "provider",
                "network",
                "balancer",
                "health",
                "standby",
                "controller",
                "dashboard",
                "capacity",
                "nodes",
                "providers",
            },
        )
        if "version" in top:
            self.read.integer(top["version"], "version", low=1, high=1)
        name = self.read.name(top["name"], "name") if "name" in top else "relevo"
        provider = self.provider(top["provider"], "provider") if "provider" in top else "local"
        addresses = self.address_plan(top.get("network"))

        balancer_node = top.get("balancer") or yaml.MappingNode("tag:yaml.org,2002:map", [])
        nodes_node = top.get("nodes")
        capacity = self.capacity(top["capacity"], "capacity", Capacity()) if "capacity" in top else Capacity()
        pending = (
            self.nodes(nodes_node, provider, capacity)
            if nodes_node is not None
            else self.default_nodes(provider, capacity)
        )
        balancer = self.balancer(balancer_node, provider, self.next_address(addresses, "the balancer"))
        pair = self.pair(balancer_node, balancer, addresses)
        balancer = self.shared_frontend(balancer, pair)
        nodes = tuple([self.place(node, addresses) for node in pending])

        topology = Topology(
            name=name,
            balancer=balancer,
            nodes=nodes,
            health=self.health(top["health"]) if "health" in top else HealthCheck(),
            standby=self.standby(top["standby"]) if "standby" in top else StandbyPolicy(),
            controller=self.controller(top["controller"]) if "controller" in top else ControllerSettings(),
            dashboard=self.dashboard(top["dashboard"]) if "dashboard" in top else DashboardSettings(),
            capacity=capacity,
            providers=self.providers(top.get("providers")),
            network=str(self.network),
            source=self.source,
            state_dir=state_dir,
            pair=pair,
        )
        self.check_pair(topology, top)
        self.check_cluster(topology, root, top)
        return topology

    def provider(self, node: yaml.Node, where: str) -> str:
        value = self.read.name(node, where)
        if value not in known_providers():
            known = ", ".join(sorted(known_providers()))
            raise self.read.fail(node, f"{where}: unknown provider {shown(value)}; known providers: {known}")
        return value

    def address_plan(self, node: yaml.Node | None) -> Iterator[str]:
        """Addresses handed out in order to the balancer, then to nodes that name none (the seed's .2-.6)."""
        network = ipaddress.ip_network("127.100.0.0/24")
        if node is not None:
            text = self.read.string(node, "network")
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise self.read.fail(
                    node, f"network: expected a CIDR such as 127.100.0.0/24, got {shown(text)}"
                ) from None
        self.network_at = node
        self.network = network
        hosts = network.hosts()
        next(hosts, None)  # .1 is a gateway's address by habit; the seed started at .2
        return (str(host) for host in hosts)

    def balancer(self, node: yaml.Node, provider: str, default_address: str) -> Balancer:
        keys = {
            "name",
            "address",
            "provider",
            "frontend",
            "stats",
            "balance",
            "timeout_connect",
            "timeout_server",
            "timeout_queue",
            "retries",
            "options",
            *PAIR_KEYS,
        }
        section = self.read.mapping(node, "balancer", keys)
        address = (
            self.read.address(section["address"], "balancer.address")
            if "address" in section
            else default_address
        )
        provider = (
            self.provider(section["provider"], "balancer.provider") if "provider" in section else provider
        )
        # Where the host reaches the balancer: its own address, or (a container) a loopback address
        # its provider derives from it, where a proxy device listens.
        listen = host_address(provider, address)
        return Balancer(
            name=self.read.name(section["name"], "balancer.name") if "name" in section else "ha1",
            provider=provider,
            address=address,
            frontend=self.endpoint(section.get("frontend"), "balancer.frontend", listen, 8080),
            stats=self.endpoint(section.get("stats"), "balancer.stats", listen, 8404),
            balance=self.read.choice(section["balance"], "balancer.balance", Balance)
            if "balance" in section
            else Balance.ROUNDROBIN,
            timeout_connect_s=self.read.duration(
                section["timeout_connect"], "balancer.timeout_connect", high_s=60
            )
            if "timeout_connect" in section
            else 0.5,
            timeout_server_s=self.read.duration(
                section["timeout_server"], "balancer.timeout_server", high_s=600
            )
            if "timeout_server" in section
            else 2.0,
            timeout_queue_s=self.read.duration(section["timeout_queue"], "balancer.timeout_queue", high_s=600)
            if "timeout_queue" in section
            else 5.0,
            retries=self.read.integer(section["retries"], "balancer.retries", low=0, high=10)
            if "retries" in section
            else 3,
            options=self.options(section.get("options"), "balancer.options", provider),
        )

    def pair(self, node: yaml.Node, balancer: Balancer, addresses: Iterator[str]) -> BalancerPair | None:
        """`balancer.peer`: a second balancer with the first one's settings, its own name and address
        (the next free one unless `peer_address` names it); None without a peer."""
        section = _values(node)
        if "peer" not in section:
            for key in sorted(PAIR_KEYS - {"peer"}):
                if key in section:
                    raise self.read.fail(
                        section[key], f"balancer.{key}: only a pair has it; add `peer: NAME`"
                    )
            return None
        name = self.read.name(section["peer"], "balancer.peer")
        if name == balancer.name:
            raise self.read.fail(
                section["peer"],
                f"balancer.peer: {name!r} is the balancer's own name: two balancers cannot share one "
                "node (one LXD container, one VM); give the peer a name of its own, such as ha2",
            )
        address = (
            self.read.address(section["peer_address"], "balancer.peer_address")
            if "peer_address" in section
            else self.next_address(addresses, "the balancer's peer")
        )
        listen = host_address(balancer.provider, address)
        vip = self.read.address(section["vip"], "balancer.vip") if "vip" in section else None
        if vip is None and balancer.provider != "local" and self.network.num_addresses > VIP_HOST + 1:
            # The shared address by default: the network's .10 (past the seed's .2-.6, checked free below).
            vip = str(ipaddress.ip_network(self.network)[VIP_HOST])
        if vip is not None and balancer.provider != "local" and not _has_address(node, "frontend"):
            # The pair's frontend is the address the two share: the host reaches it through the bridge
            # (no proxy device could follow it from one container to the other).
            balancer = replace(balancer, frontend=Endpoint(address=vip, port=balancer.frontend.port))
        peer = replace(
            balancer,
            name=name,
            address=address,
            # Both serve one frontend: the same address and port (SO_REUSEPORT locally, the VIP with
            # keepalived); each has its own stats page, on its own address.
            stats=Endpoint(address=listen, port=balancer.stats.port),
        )
        values: dict[str, Any] = {"peer_at": _at(section["peer"])}
        if vip is not None:
            values["vip"] = vip
        if "vip" in section:
            values["vip_at"] = _at(section["vip"])
        if "failback" in section:
            failback = self.read.scalar(section["failback"], "balancer.failback")
            if not isinstance(failback, bool):
                raise self.read.fail(
                    section["failback"], f"balancer.failback: expected true or false, got {shown(failback)}"
                )
            values["failback"] = failback
        if "router_id" in section:
            values["router_id"] = self.read.integer(
                section["router_id"], "balancer.router_id", low=1, high=255
            )
        if "advert" in section:
            # VRRP v3 counts the advert interval in centiseconds: 10 ms to 40.95 s.
            advert = self.read.duration(section["advert"], "balancer.advert", low_s=0.01, high_s=40.95)
            if abs(advert * 100 - round(advert * 100)) > 1e-9:
                raise self.read.fail(
                    section["advert"],
                    "balancer.advert: VRRP v3 counts it in hundredths of a second, got "
                    f"{section['advert'].value!r}",
                )
            values["advert_s"] = advert
        return BalancerPair(peer=peer, **values)

    def shared_frontend(self, balancer: Balancer, pair: BalancerPair | None) -> Balancer:
        """The first balancer with the pair's frontend (the VIP on a provider with its own network)."""
        return balancer if pair is None else replace(balancer, frontend=pair.peer.frontend)

    def endpoint(self, node: yaml.Node | None, where: str, address: str, port: int) -> Endpoint:
        if node is None:
            return Endpoint(address=address, port=port)
        section = self.read.mapping(node, where, {"address", "port"})
        return Endpoint(
            address=self.read.address(section["address"], f"{where}.address")
            if "address" in section
            else address,
            port=self.read.port(section["port"], f"{where}.port") if "port" in section else port,
        )

    def health(self, node: yaml.Node) -> HealthCheck:
        keys = {"path", "interval", "fastinter", "downinter", "timeout", "rise", "fall"}
        section = self.read.mapping(node, "health", keys)
        values: dict[str, Any] = {}
        if "path" in section:
            path = self.read.string(section["path"], "health.path")
            if not re.match(r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9_~-]$", path) or path == "/index.html":
                raise self.read.fail(
                    section["path"],
                    "health.path: expected a URL path such as /health (not / nor the page /index.html), "
                    f"got {shown(path)}",
                )
            values["path"] = path
        for key in ("interval", "fastinter", "downinter", "timeout"):
            if key in section:
                values[f"{key}_s"] = self.read.duration(section[key], f"health.{key}", high_s=60)
        for key in ("rise", "fall"):
            if key in section:
                values[key] = self.read.integer(section[key], f"health.{key}", low=1, high=100)
        return HealthCheck(**values)

    def standby(self, node: yaml.Node) -> StandbyPolicy:
        section = self.read.mapping(node, "standby", {"mode", "temperature", "failback", "restart", "hold"})
        values: dict[str, Any] = {}
        if "mode" in section:
            values["mode"] = self.read.choice(section["mode"], "standby.mode", StandbyMode)
        if "temperature" in section:
            values["temperature"] = self.read.choice(
                section["temperature"], "standby.temperature", Temperature
            )
        frozen = values.get("temperature") is Temperature.FROZEN
        if frozen and values.get("mode") is StandbyMode.POOL:
            # HAProxy sends a `backup` traffic on its own: a frozen one would take requests and never
            # answer them. Thawing before traffic needs the controller's pairing.
            raise self.read.fail(
                section["temperature"],
                "standby.temperature: frozen standbys need mode: paired (a frozen pool backup would "
                "take requests from HAProxy and never answer them)",
            )
        if "failback" in section:
            if not frozen:
                raise self.read.fail(
                    section["failback"],
                    "standby.failback: only frozen standbys have a choice (freeze or stop); "
                    "cold ones are stopped and warm ones kept running",
                )
            values["failback"] = self.read.choice(section["failback"], "standby.failback", Failback)
        if "restart" in section:
            values["restart"] = self.read.choice(section["restart"], "standby.restart", RestartPolicy)
        if "hold" in section:
            values["hold_s"] = self.read.duration(section["hold"], "standby.hold", low_s=0.0, high_s=3600)
        return StandbyPolicy(**values)

    def controller(self, node: yaml.Node) -> ControllerSettings:
        # Every ControllerSettings field `<key>_s` is a duration, any other one a whole number.
        known = {f.name.removesuffix("_s"): f.name for f in fields(ControllerSettings)}
        section = self.read.mapping(node, "controller", set(known))
        values: dict[str, Any] = {}
        for key, value_node in section.items():
            attr = known[key]
            if attr.endswith("_s"):
                values[attr] = self.read.duration(value_node, f"controller.{key}")
            elif attr == "journal_max_bytes":
                values[attr] = self.read.integer(
                    value_node, f"controller.{key}", low=JOURNAL_MAX_BYTES_LOW, high=JOURNAL_MAX_BYTES_HIGH
                )
            elif attr == "metrics_port":
                values[attr] = self.read.integer(value_node, f"controller.{key}", low=0, high=65535)
            else:
                values[attr] = self.read.integer(value_node, f"controller.{key}", low=0, high=10**12)
        return ControllerSettings(**values)

    def dashboard(self, node: yaml.Node) -> DashboardSettings:
        section = self.read.mapping(node, "dashboard", {"enabled", "port", "actions"})
        values: dict[str, Any] = {}
        for key in ("enabled", "actions"):
            if key in section:
                values[key] = self.read.boolean(section[key], f"dashboard.{key}")
        if "port" in section:
            values["port"] = self.read.port(section["port"], "dashboard.port")
        return DashboardSettings(**values)

    def capacity(self, node: yaml.Node, where: str, default: Capacity) -> Capacity:
        section = self.read.mapping(node, where, {"workers", "cpu"})
        values: dict[str, Any] = {}
        if "workers" in section:
            values["workers"] = self.read.integer(section["workers"], f"{where}.workers", low=1, high=100_000)
        if "cpu" in section:
            cpu = self.read.scalar(section["cpu"], f"{where}.cpu")
            if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0.01 <= cpu <= 1024:
                raise self.read.fail(
                    section["cpu"],
                    f"{where}.cpu: expected a number of cores from 0.01 to 1024 (0.5: half a core), "
                    f"got {section['cpu'].value!r}",
                )
            values["cpu"] = float(cpu)
        return replace(default, **values)

    def options(
        self, node: yaml.Node | None, where: str, provider: str
    ) -> MappingProxyType[str, OptionValue]:
        if node is None:
            return MappingProxyType({})
        spec = options_spec(provider)
        return self.typed_options(node, where, None if spec is None else spec.node)

    def typed_options(
        self, node: yaml.Node, where: str, allowed: Mapping[str, type] | None
    ) -> MappingProxyType[str, OptionValue]:
        """A mapping of the keys `allowed` names, each of its type; None: any keys, plain values (a
        third-party provider that checks its own)."""
        if allowed is None:
            keys = {k.value for k, _ in node.value} if isinstance(node, yaml.MappingNode) else set()
            section = self.read.mapping(node, where, keys)
            return MappingProxyType({k: self.read.scalar(v, f"{where}.{k}") for k, v in section.items()})
        section = self.read.mapping(node, where, set(allowed))
        out: dict[str, OptionValue] = {}
        for key, value_node in section.items():
            if allowed[key] is int:
                out[key] = self.read.integer(value_node, f"{where}.{key}", low=1, high=100_000)
            elif allowed[key] is bool:
                value = self.read.scalar(value_node, f"{where}.{key}")
                if not isinstance(value, bool):
                    raise self.read.fail(
                        value_node, f"{where}.{key}: expected true or false, got {shown(value)}"
                    )
                out[key] = value
            else:
                out[key] = self.read.string(value_node, f"{where}.{key}")
        return MappingProxyType(out)

    def providers(self, node: yaml.Node | None) -> MappingProxyType[str, Mapping[str, OptionValue]]:
        """`providers:`: each provider's own section, with the keys that provider declares."""
        if node is None:
            return MappingProxyType({})
        keys = {k.value for k, _ in node.value} if isinstance(node, yaml.MappingNode) else set()
        section = self.read.mapping(node, "providers", keys)
        out: dict[str, Mapping[str, OptionValue]] = {}
        for key, value_node in section.items():
            key_node = next(k for k, _ in node.value if k.value == key)
            name = self.provider(key_node, "providers")
            spec = options_spec(name)
            allowed = None if spec is None else spec.section
            out[name] = self.typed_options(value_node, f"providers.{name}", allowed)
        return MappingProxyType(out)

    def default_nodes(self, provider: str, capacity: Capacity) -> list[_PendingNode]:
        """The seed's four web nodes, for a file that names no nodes."""
        return [
            _PendingNode(name="web1", role=Role.WEB, provider=provider, capacity=capacity),
            _PendingNode(name="web2", role=Role.WEB, provider=provider, capacity=capacity),
            _PendingNode(
                name="web1bck", role=Role.STANDBY, provider=provider, standby_for="web1", capacity=capacity
            ),
            _PendingNode(
                name="web2bck", role=Role.STANDBY, provider=provider, standby_for="web2", capacity=capacity
            ),
        ]

    def nodes(self, node: yaml.Node, provider: str, capacity: Capacity) -> list[_PendingNode]:
        if not isinstance(node, yaml.MappingNode) or not node.value:
            raise self.read.fail(
                node, "nodes: expected a mapping of node names to their settings, such as `web1: {role: web}`"
            )
        out: list[_PendingNode] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            name = self.read.name(key_node, "nodes")
            if name in seen:
                raise self.read.fail(key_node, f"nodes: duplicate node name {name!r}")
            seen.add(name)
            where = f"nodes.{name}"
            section = self.read.mapping(
                value_node,
                where,
                {"role", "standby_for", "provider", "address", "port", "capacity", "options"},
            )
            if "role" not in section:
                raise self.read.fail(value_node, f"{where}: missing `role` (web or standby)")
            role = self.read.choice(section["role"], f"{where}.role", Role)
            if role is Role.BALANCER:
                raise self.read.fail(
                    section["role"],
                    f"{where}.role: the balancer is declared under `balancer:`; expected web or standby",
                )
            node_provider = (
                self.provider(section["provider"], f"{where}.provider") if "provider" in section else provider
            )
            pending = _PendingNode(
                name=name,
                role=role,
                provider=node_provider,
                address=self.read.address(section["address"], f"{where}.address")
                if "address" in section
                else None,
                port=self.read.port(section["port"], f"{where}.port")
                if "port" in section
                else DEFAULT_WEB_PORT,
                capacity=self.capacity(section["capacity"], f"{where}.capacity", capacity)
                if "capacity" in section
                else capacity,
                options=self.options(section.get("options"), f"{where}.options", node_provider),
            )
            if "standby_for" in section and role is Role.WEB:
                raise self.read.fail(
                    section["standby_for"],
                    f"{where}.standby_for: a web node serves on its own; only a node with "
                    "`role: standby` stands by for another",
                )
            if "standby_for" in section:
                pending.standby_for = self.read.name(section["standby_for"], f"{where}.standby_for")
            elif role is Role.STANDBY:
                raise self.read.fail(value_node, f"{where}: a standby needs `standby_for: <web node>`")
            out.append(pending)
        return out

    def place(self, pending: _PendingNode, addresses: Iterator[str]) -> Node:
        address = pending.address or self.next_address(addresses, f"node {pending.name}")
        return Node(
            name=pending.name,
            role=pending.role,
            provider=pending.provider,
            address=address,
            port=pending.port,
            standby_for=pending.standby_for,
            capacity=pending.capacity,
            options=pending.options,
        )

    # -- whole-cluster rules ------------------------------------------------------------------------
    def check_cluster(self, topology: Topology, root: yaml.Node, top: dict[str, yaml.Node]) -> None:
        nodes_at = _positions(top.get("nodes"))
        anchor: Callable[[str], yaml.Node] = lambda name: nodes_at.get(name, root)  # noqa: E731
        by_name = {n.name: n for n in topology.nodes}
        if topology.balancer.name in by_name:
            raise self.read.fail(
                anchor(topology.balancer.name),
                f"nodes: {topology.balancer.name!r} is already the balancer's name",
            )
        if not topology.primaries:
            raise self.read.fail(top.get("nodes", root), "nodes: expected at least one node with `role: web`")
        paired: dict[str, str] = {}
        for node in topology.standbys:
            target = by_name.get(node.standby_for or "")
            if target is None or target.role is not Role.WEB:
                what = "no such node" if target is None else f"{target.name} is a {target.role}"
                raise self.read.fail(
                    anchor(node.name),
                    f"nodes.{node.name}.standby_for: {node.standby_for!r}: "
                    f"{what}; expected the name of a web node",
                )
            if target.name in paired:
                raise self.read.fail(
                    anchor(node.name),
                    f"nodes.{node.name}.standby_for: {target.name} already has "
                    f"the standby {paired[target.name]}",
                )
            paired[target.name] = node.name
        places = {
            "balancer": top.get("balancer", top.get("network", root)),
            "providers": top.get("providers", root),
        }
        kinds = {topology.balancer.provider, *(n.provider for n in topology.nodes), *topology.providers}
        for kind in sorted(kinds):
            for problem in topology_problems(kind, topology):
                head = problem.where.split(".")
                if head[0] == "nodes" and len(head) > 1:
                    at = anchor(head[1])
                elif head[0] == "providers" and isinstance(places["providers"], yaml.MappingNode):
                    at = _positions(places["providers"]).get(kind, places["providers"])
                else:
                    at = places.get(head[0], root)
                raise self.read.fail(at, problem.message)
        self.check_ports(topology, anchor, top.get("balancer", root))

    def check_pair(self, topology: Topology, top: dict[str, yaml.Node]) -> None:
        """A peer is no web node; a VIP is a free address of the cluster's network, and only where a
        network of the cluster's own carries it (not the local provider: loopback has no VRRP)."""
        pair = topology.pair
        if pair is None:
            return
        section = _values(top["balancer"])
        peer_at = section["peer"]
        if pair.peer.name in {n.name for n in topology.nodes}:
            raise self.read.fail(
                peer_at,
                f"balancer.peer: {pair.peer.name!r} is also a web node's name (under nodes:); a balancer "
                "serves no pages: give the peer a name of its own, such as ha2",
            )
        taken = {n.address: f"nodes.{n.name}" for n in topology.nodes}
        taken[topology.balancer.address] = f"the balancer {topology.balancer.name}"
        if pair.peer.address in taken:
            raise self.read.fail(
                section.get("peer_address", peer_at),
                f"balancer.peer_address: {pair.peer.address} is already {taken[pair.peer.address]}'s "
                "address; the peer needs one of its own",
            )
        taken[pair.peer.address] = f"the peer {pair.peer.name}"
        network = ipaddress.ip_network(topology.network)
        local = topology.balancer.provider == "local"
        if pair.vip is None:
            if not local:
                raise self.read.fail(
                    peer_at,
                    f"balancer.vip: a pair on the {topology.balancer.provider} provider needs the address "
                    f"the two share: a free address of {network}, such as {network[10]}",
                )
            return
        vip_at = section.get("vip", peer_at)
        if local:
            raise self.read.fail(
                vip_at,
                "balancer.vip: the local provider has no virtual address (no VRRP on loopback): both "
                "HAProxy processes serve the frontend's own address and port; remove `vip:`",
            )
        vip = ipaddress.ip_address(pair.vip)
        if vip not in network or vip in (network.network_address, network.broadcast_address):
            raise self.read.fail(
                vip_at,
                f"balancer.vip: {pair.vip} is outside the cluster's network {network}; expected "
                f"a free host address of it, such as {network[10]}",
            )
        if pair.vip in taken:
            raise self.read.fail(
                vip_at,
                f"balancer.vip: {pair.vip} is already {taken[pair.vip]}'s address; the shared address "
                "must be one no node has",
            )

    def check_ports(
        self, topology: Topology, anchor: Callable[[str], yaml.Node], balancer_at: yaml.Node
    ) -> None:
        listeners: list[tuple[str, Endpoint, yaml.Node]] = [
            ("balancer.frontend", topology.balancer.frontend, balancer_at),
            ("balancer.stats", topology.balancer.stats, balancer_at),
        ]
        if topology.pair is not None:
            listeners.append(("balancer.peer's stats", topology.pair.peer.stats, balancer_at))
        listeners += [(f"nodes.{n.name}", n.endpoint, anchor(n.name)) for n in topology.nodes]
        for i, (name_a, a, _) in enumerate(listeners):
            for name_b, b, at in listeners[i + 1 :]:
                if a.port == b.port and _overlap(a.address, b.address):
                    raise self.read.fail(
                        at, f"{name_b}: port clash: {b.address}:{b.port} is also {name_a}'s address and port"
                    )


@dataclass(slots=True, kw_only=True)
class _PendingNode:
    """A node read from the file, before addresses are handed out."""

    name: str
    role: Role
    provider: str
    address: str | None = None
    port: int = DEFAULT_WEB_PORT
    standby_for: str | None = None
    capacity: Capacity = field(default_factory=Capacity)
    options: MappingProxyType[str, OptionValue] = field(default_factory=lambda: MappingProxyType({}))


def _positions(nodes: yaml.Node | None) -> dict[str, yaml.Node]:
    if not isinstance(nodes, yaml.MappingNode):
        return {}
    return {k.value: k for k, _ in nodes.value if isinstance(k, yaml.ScalarNode)}


def _values(node: yaml.Node | None) -> dict[str, yaml.Node]:
    """A mapping's values by key (the mapping already checked by `_TopologyReader.mapping`)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _overlap(a: str, b: str) -> bool:
    wildcard = {"0.0.0.0", "::"}  # noqa: S104 - comparing, not binding
    return a == b or a in wildcard or b in wildcard


MAX_TOPOLOGY_BYTES = MAX_BYTES


def read_topology_text(path: Path) -> str:
    """The topology file's text (see `read_yaml_text`)."""
    return read_yaml_text(
        path,
        what="a topology",
        missing="no such file (run `relevo init` to write the default)",
        max_bytes=MAX_TOPOLOGY_BYTES,
    )


def _has_address(node: yaml.Node, key: str) -> bool:
    """The mapping `node` gives `key` (itself a mapping) an `address` of its own."""
    return "address" in _values(_values(node).get(key))


def _at(node: yaml.Node) -> tuple[int, int]:
    """Where a value stands in the file: its line and column, as errors name them."""
    return node.start_mark.line + 1, node.start_mark.column + 1
