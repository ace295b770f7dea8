"""Reads `relevo.yaml` into a frozen `Topology`: the only module that reads YAML.

Every error names the file, the line and column, and what was expected (a `TopologyError`, exit status 2).
The YAML is composed into nodes rather than loaded into dicts, so each value keeps its position and a
duplicate key is an error instead of a silent overwrite.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import yaml

from relevo.errors import TopologyError
from relevo.grammar import DURATION_EXAMPLES, did_you_mean, parse_duration
from relevo.model import (
    Balance,
    Balancer,
    Capacity,
    ControllerSettings,
    Endpoint,
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
from relevo.providers.base import host_address, known_providers, options_spec, topology_problems

DEFAULT_FILE = "relevo.yaml"
STATE_DIR = ".relevo"
# Names reach file paths, HAProxy server names and container names: keep them to a safe alphabet.
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
DEFAULT_WEB_PORT = 8080

E = TypeVar("E", bound=Any)


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


def compose_yaml(
    text: str, *, source: Path | None, error: type[TopologyError] = TopologyError
) -> yaml.Node | None:
    """`text` composed into YAML nodes (which keep their line and column for every later error); bad
    YAML is an `error` naming the place, never a traceback. The one YAML entry point of every relevo file
    format (the topology, scenario files)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise error(
            f"not valid YAML: {cut(str(exc.problem))}",
            path=source,
            line=mark.line + 1 if mark else 0,
            column=mark.column + 1 if mark else 0,
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {cut(str(exc))}", path=source) from None
    except RecursionError:
        raise error("not valid YAML: nested too deeply", path=source) from None


def parse_topology(text: str, *, source: Path | None, state_dir: Path) -> Topology:
    root = compose_yaml(text, source=source)
    if root is None:
        if source is not None:
            raise TopologyError(
                "the file is empty; run `relevo init` to write the default topology", path=source
            )
        root = yaml.MappingNode("tag:yaml.org,2002:map", [])
    try:
        return _Reader(source).topology(root, state_dir)
    except RecursionError:
        raise TopologyError("nested too deeply", path=source) from None


class _Reader:
    """Walks the composed YAML, converting each value where it stands so errors carry its position."""

    def __init__(self, source: Path | None) -> None:
        self.source = source
        # Resolves a scalar's tag (int, bool, str...) the way yaml.safe_load would.
        self.constructor = yaml.SafeLoader("")
        self.network_at: yaml.Node | None = None
        self.network: ipaddress.IPv4Network | ipaddress.IPv6Network = ipaddress.ip_network("127.100.0.0/24")

    def fail(self, node: yaml.Node, message: str) -> TopologyError:
        mark = node.start_mark
        return TopologyError(message, path=self.source, line=mark.line + 1, column=mark.column + 1)

    # -- generic shapes ------------------------------------------------------------------------------
    def mapping(self, node: yaml.Node, where: str, allowed: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{where}: expected a mapping of keys to values")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.fail(key_node, f"{where}: expected a plain key")
            if key in out:
                raise self.fail(key_node, f"{where}: duplicate key {shown(key)}")
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                hint = did_you_mean(key[:64], allowed)  # a long key is no near miss: compare its start
                raise self.fail(
                    key_node, f"{where}: unknown key {shown(key)}{hint}; expected one of: {known}"
                )
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{where}: expected a single value, not a list or mapping")
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as exc:  # an unknown tag (`!!1s`), a malformed timestamp, ...
            problem = getattr(exc, "problem", None) or "cannot read this value"
            raise self.fail(node, f"{where}: {cut(str(problem))}") from None

    def integer(self, node: yaml.Node, where: str, *, low: int, high: int) -> int:
        value = self.scalar(node, where)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(
                node, f"{where}: expected a whole number from {low} to {high}, got {shown(node.value)}"
            )
        return value

    def string(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not value:
            raise self.fail(node, f"{where}: expected text, got {shown(node.value)}")
        return value

    def name(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise self.fail(
                node,
                f"{where}: {shown(node.value)} is not a safe name; expected a lowercase letter, then up "
                "to 30 lowercase letters, digits, '-' or '_'",
            )
        return value

    def duration(self, node: yaml.Node, where: str, *, low_s: float = 0.001, high_s: float = 3600.0) -> float:
        value = self.scalar(node, where)
        try:
            seconds: float | None = parse_duration(value)
        except ValueError:
            seconds = None
        if seconds is None or not low_s <= seconds <= high_s:
            raise self.fail(
                node,
                f"{where}: expected a duration such as {DURATION_EXAMPLES}, from {low_s:g}s to "
                f"{high_s:g}s, got {shown(node.value)}",
            )
        return seconds

    def choice(self, node: yaml.Node, where: str, enum_type: type[E]) -> E:
        value = self.scalar(node, where)
        try:
            member: E = enum_type(value)
        except ValueError:
            known = ", ".join(option.value for option in enum_type)
            raise self.fail(node, f"{where}: expected one of {known}, got {shown(node.value)}") from None
        return member

    def address(self, node: yaml.Node, where: str) -> str:
        value = self.string(node, where)
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise self.fail(
                node, f"{where}: expected an IP address such as 127.0.0.1, got {shown(value)}"
            ) from None

    def port(self, node: yaml.Node, where: str) -> int:
        return self.integer(node, where, low=1, high=65535)

    def next_address(self, addresses: Iterator[str], who: str) -> str:
        """The next free address of the network, or an error saying the network is too small."""
        address = next(addresses, None)
        if address is None:
            raise self.fail(
                self.network_at or yaml.ScalarNode("tag:yaml.org,2002:str", ""),
                f"network: {self.network} is too small: no address left for {who} (the balancer and "
                "each node without `address:` take one, from the second host address on)",
            )
        return address

    # -- sections ------------------------------------------------------------------------------------
    def topology(self, root: yaml.Node, state_dir: Path) -> Topology:
        top = self.mapping(
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
                "capacity",
                "nodes",
                "providers",
            },
        )
        if "version" in top:
            self.integer(top["version"], "version", low=1, high=1)
        name = self.name(top["name"], "name") if "name" in top else "relevo"
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
        nodes = tuple([self.place(node, addresses) for node in pending])

        topology = Topology(
            name=name,
            balancer=balancer,
            nodes=nodes,
            health=self.health(top["health"]) if "health" in top else HealthCheck(),
            standby=self.standby(top["standby"]) if "standby" in top else StandbyPolicy(),
            controller=self.controller(top["controller"]) if "controller" in top else ControllerSettings(),
            capacity=capacity,
            providers=self.providers(top.get("providers")),
            network=str(self.network),
            source=self.source,
            state_dir=state_dir,
        )
        self.check_cluster(topology, root, top)
        return topology

    def provider(self, node: yaml.Node, where: str) -> str:
        value = self.name(node, where)
        if value not in known_providers():
            known = ", ".join(sorted(known_providers()))
            raise self.fail(node, f"{where}: unknown provider {shown(value)}; known providers: {known}")
        return value

    def address_plan(self, node: yaml.Node | None) -> Iterator[str]:
        """Addresses handed out in order to the balancer, then to nodes that name none (the seed's .2-.6)."""
        network = ipaddress.ip_network("127.100.0.0/24")
        if node is not None:
            text = self.string(node, "network")
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise self.fail(
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
        }
        section = self.mapping(node, "balancer", keys)
        address = (
            self.address(section["address"], "balancer.address") if "address" in section else default_address
        )
        provider = (
            self.provider(section["provider"], "balancer.provider") if "provider" in section else provider
        )
        # Where the host reaches the balancer: its own address, or (a container) a loopback address
        # its provider derives from it, where a proxy device listens.
        listen = host_address(provider, address)
        return Balancer(
            name=self.name(section["name"], "balancer.name") if "name" in section else "ha1",
            provider=provider,
            address=address,
            frontend=self.endpoint(section.get("frontend"), "balancer.frontend", listen, 8080),
            stats=self.endpoint(section.get("stats"), "balancer.stats", listen, 8404),
            balance=self.choice(section["balance"], "balancer.balance", Balance)
            if "balance" in section
            else Balance.ROUNDROBIN,
            timeout_connect_s=self.duration(section["timeout_connect"], "balancer.timeout_connect", high_s=60)
            if "timeout_connect" in section
            else 0.5,
            timeout_server_s=self.duration(section["timeout_server"], "balancer.timeout_server", high_s=600)
            if "timeout_server" in section
            else 2.0,
            timeout_queue_s=self.duration(section["timeout_queue"], "balancer.timeout_queue", high_s=600)
            if "timeout_queue" in section
            else 5.0,
            retries=self.integer(section["retries"], "balancer.retries", low=0, high=10)
            if "retries" in section
            else 3,
            options=self.options(section.get("options"), "balancer.options", provider),
        )

    def endpoint(self, node: yaml.Node | None, where: str, address: str, port: int) -> Endpoint:
        if node is None:
            return Endpoint(address=address, port=port)
        section = self.mapping(node, where, {"address", "port"})
        return Endpoint(
            address=self.address(section["address"], f"{where}.address") if "address" in section else address,
            port=self.port(section["port"], f"{where}.port") if "port" in section else port,
        )

    def health(self, node: yaml.Node) -> HealthCheck:
        keys = {"path", "interval", "fastinter", "downinter", "timeout", "rise", "fall"}
        section = self.mapping(node, "health", keys)
        values: dict[str, Any] = {}
        if "path" in section:
            path = self.string(section["path"], "health.path")
            if not re.match(r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9_~-]$", path) or path == "/index.html":
                raise self.fail(
                    section["path"],
                    "health.path: expected a URL path such as /health (not / nor the page /index.html), "
                    f"got {shown(path)}",
                )
            values["path"] = path
        for key in ("interval", "fastinter", "downinter", "timeout"):
            if key in section:
                values[f"{key}_s"] = self.duration(section[key], f"health.{key}", high_s=60)
        for key in ("rise", "fall"):
            if key in section:
                values[key] = self.integer(section[key], f"health.{key}", low=1, high=100)
        return HealthCheck(**values)

    def standby(self, node: yaml.Node) -> StandbyPolicy:
        section = self.mapping(node, "standby", {"mode", "temperature", "restart", "hold"})
        values: dict[str, Any] = {}
        if "mode" in section:
            values["mode"] = self.choice(section["mode"], "standby.mode", StandbyMode)
        if "temperature" in section:
            values["temperature"] = self.choice(section["temperature"], "standby.temperature", Temperature)
        if "restart" in section:
            values["restart"] = self.choice(section["restart"], "standby.restart", RestartPolicy)
        if "hold" in section:
            values["hold_s"] = self.duration(section["hold"], "standby.hold", low_s=0.0, high_s=3600)
        return StandbyPolicy(**values)

    def controller(self, node: yaml.Node) -> ControllerSettings:
        # Every ControllerSettings field `<key>_s` is a duration, any other one a whole number.
        known = {f.name.removesuffix("_s"): f.name for f in fields(ControllerSettings)}
        section = self.mapping(node, "controller", set(known))
        values: dict[str, Any] = {}
        for key, value_node in section.items():
            attr = known[key]
            if attr.endswith("_s"):
                values[attr] = self.duration(value_node, f"controller.{key}")
            else:
                values[attr] = self.integer(value_node, f"controller.{key}", low=0, high=10**12)
        return ControllerSettings(**values)

    def capacity(self, node: yaml.Node, where: str, default: Capacity) -> Capacity:
        section = self.mapping(node, where, {"workers", "cpu"})
        values: dict[str, Any] = {}
        if "workers" in section:
            values["workers"] = self.integer(section["workers"], f"{where}.workers", low=1, high=100_000)
        if "cpu" in section:
            cpu = self.scalar(section["cpu"], f"{where}.cpu")
            if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not 0.01 <= cpu <= 1024:
                raise self.fail(
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
            section = self.mapping(node, where, keys)
            return MappingProxyType({k: self.scalar(v, f"{where}.{k}") for k, v in section.items()})
        section = self.mapping(node, where, set(allowed))
        out: dict[str, OptionValue] = {}
        for key, value_node in section.items():
            if allowed[key] is int:
                out[key] = self.integer(value_node, f"{where}.{key}", low=1, high=100_000)
            elif allowed[key] is bool:
                value = self.scalar(value_node, f"{where}.{key}")
                if not isinstance(value, bool):
                    raise self.fail(value_node, f"{where}.{key}: expected true or false, got {shown(value)}")
                out[key] = value
            else:
                out[key] = self.string(value_node, f"{where}.{key}")
        return MappingProxyType(out)

    def providers(self, node: yaml.Node | None) -> MappingProxyType[str, Mapping[str, OptionValue]]:
        """`providers:`: each provider's own section, with the keys that provider declares."""
        if node is None:
            return MappingProxyType({})
        keys = {k.value for k, _ in node.value} if isinstance(node, yaml.MappingNode) else set()
        section = self.mapping(node, "providers", keys)
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
            raise self.fail(
                node, "nodes: expected a mapping of node names to their settings, such as `web1: {role: web}`"
            )
        out: list[_PendingNode] = []
        seen: set[str] = set()
        for key_node, value_node in node.value:
            name = self.name(key_node, "nodes")
            if name in seen:
                raise self.fail(key_node, f"nodes: duplicate node name {name!r}")
            seen.add(name)
            where = f"nodes.{name}"
            section = self.mapping(
                value_node,
                where,
                {"role", "standby_for", "provider", "address", "port", "capacity", "options"},
            )
            if "role" not in section:
                raise self.fail(value_node, f"{where}: missing `role` (web or standby)")
            role = self.choice(section["role"], f"{where}.role", Role)
            if role is Role.BALANCER:
                raise self.fail(
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
                address=self.address(section["address"], f"{where}.address")
                if "address" in section
                else None,
                port=self.port(section["port"], f"{where}.port") if "port" in section else DEFAULT_WEB_PORT,
                capacity=self.capacity(section["capacity"], f"{where}.capacity", capacity)
                if "capacity" in section
                else capacity,
                options=self.options(section.get("options"), f"{where}.options", node_provider),
            )
            if "standby_for" in section and role is Role.WEB:
                raise self.fail(
                    section["standby_for"],
                    f"{where}.standby_for: a web node serves on its own; only a node with "
                    "`role: standby` stands by for another",
                )
            if "standby_for" in section:
                pending.standby_for = self.name(section["standby_for"], f"{where}.standby_for")
            elif role is Role.STANDBY:
                raise self.fail(value_node, f"{where}: a standby needs `standby_for: <web node>`")
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
            raise self.fail(
                anchor(topology.balancer.name),
                f"nodes: {topology.balancer.name!r} is already the balancer's name",
            )
        if not topology.primaries:
            raise self.fail(top.get("nodes", root), "nodes: expected at least one node with `role: web`")
        paired: dict[str, str] = {}
        for node in topology.standbys:
            target = by_name.get(node.standby_for or "")
            if target is None or target.role is not Role.WEB:
                what = "no such node" if target is None else f"{target.name} is a {target.role}"
                raise self.fail(
                    anchor(node.name),
                    f"nodes.{node.name}.standby_for: {node.standby_for!r}: "
                    f"{what}; expected the name of a web node",
                )
            if target.name in paired:
                raise self.fail(
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
                raise self.fail(at, problem.message)
        self.check_ports(topology, anchor, top.get("balancer", root))

    def check_ports(
        self, topology: Topology, anchor: Callable[[str], yaml.Node], balancer_at: yaml.Node
    ) -> None:
        listeners: list[tuple[str, Endpoint, yaml.Node]] = [
            ("balancer.frontend", topology.balancer.frontend, balancer_at),
            ("balancer.stats", topology.balancer.stats, balancer_at),
        ]
        listeners += [(f"nodes.{n.name}", n.endpoint, anchor(n.name)) for n in topology.nodes]
        for i, (name_a, a, _) in enumerate(listeners):
            for name_b, b, at in listeners[i + 1 :]:
                if a.port == b.port and _overlap(a.address, b.address):
                    raise self.fail(
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


def _overlap(a: str, b: str) -> bool:
    wildcard = {"0.0.0.0", "::"}  # noqa: S104 - comparing, not binding
    return a == b or a in wildcard or b in wildcard


# -- bounded input: the file itself, and values shown in messages ----------------------------------------
# A topology is a few kilobytes; anything near this is not one (and must not fill memory).
MAX_TOPOLOGY_BYTES = 1 << 20
SHOWN_CHARS = 60


def read_topology_text(path: Path) -> str:
    """The topology file's text (see `read_yaml_text`)."""
    return read_yaml_text(
        path, what="a topology", missing="no such file (run `relevo init` to write the default)"
    )


def read_yaml_text(
    path: Path,
    *,
    what: str,
    missing: str,
    error: type[TopologyError] = TopologyError,
    max_bytes: int = MAX_TOPOLOGY_BYTES,
) -> str:
    """The file's text: a regular file (never a device or a FIFO, which could block or never end), at
    most `max_bytes`, valid UTF-8; each refusal an `error` naming the file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(missing, path=path) from None
    except OSError as exc:
        raise error(f"cannot read it: {exc.strerror}", path=path) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error("not a regular file (a directory, device or FIFO); expected YAML", path=path)
        if info.st_size > max_bytes:
            raise error(f"{info.st_size} bytes is too large for {what} (at most {max_bytes})", path=path)
        data = os.read(fd, max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read it: {exc.strerror}", path=path) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"too large for {what} (at most {max_bytes} bytes)", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise error(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a character",
            path=path,
            line=line,
            column=column,
        ) from None


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as a message shows it: at most `limit` characters, and says how long it really was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def shown(value: object) -> str:
    """repr(value) cut for a message."""
    return cut(repr(value))
