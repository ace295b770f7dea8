"""Where each node's container lives: which LXD daemon holds it (the node's `remote`, else the provider's,
else this host's), on which cluster member (`target`), on which network, under which name; one client per
daemon. Records of what relevo created name the remote too (`REMOTE:NAME`), so `destroy` finds each
object on the daemon that holds it even after the topology changed."""

from __future__ import annotations

from collections.abc import Mapping

from relevo.errors import ProviderError
from relevo.lxd.client import LXDClient
from relevo.lxd.remotes import endpoint_for
from relevo.model import OptionValue, Topology

LOCAL = "local"


class Placement:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.settings = topology.provider_options("lxd")
        self._clients: dict[str, LXDClient] = {}

    # -- per node ------------------------------------------------------------------------------------
    def check_node(self, node: str) -> None:
        if node not in self.topology.node_names:
            known = ", ".join(self.topology.node_names)
            raise ProviderError(f"no node named {node!r}; nodes: {known}")

    def container_name(self, node: str) -> str:
        return f"{self.topology.name}-{node}"

    def options(self, node: str) -> Mapping[str, OptionValue]:
        if self.topology.is_balancer(node):
            return self.topology.balancer_named(node).options
        return self.topology.node(node).options

    def remote_of(self, node: str) -> str:
        """The node's own `remote`, else the provider's, else `local` (this host's daemon)."""
        remote = self.options(node).get("remote", self.settings.get("remote"))
        return remote if isinstance(remote, str) else LOCAL

    @property
    def home(self) -> str:
        """The daemon relevo makes its bridge on: the provider's `remote`, else this host's."""
        remote = self.settings.get("remote")
        return remote if isinstance(remote, str) else LOCAL

    def away(self, node: str) -> bool:
        """The node's container is on another daemon than the home one, where no bridge of relevo's is."""
        return self.remote_of(node) != self.home

    def target_of(self, node: str) -> str | None:
        """The LXD cluster member the node is placed on, when the topology names one."""
        target = self.options(node).get("target")
        return target if isinstance(target, str) else None

    def named_network(self, node: str) -> str | None:
        """The network the user named for the node (its own `network`, else the provider's), or None
        when the node goes on the bridge relevo makes."""
        named = self.options(node).get("network", self.settings.get("network"))
        return named if isinstance(named, str) else None

    def resolve(self, node: str) -> tuple[LXDClient, str]:
        """The client of the daemon holding the node's container, and the container's name."""
        self.check_node(node)
        return self.client(self.remote_of(node)), self.container_name(node)

    def record(self, node: str) -> str:
        """How the node's container is named in the record of what relevo created."""
        return qualified(self.remote_of(node), self.container_name(node))

    # -- per daemon ------------------------------------------------------------------------------------
    def client(self, remote: str) -> LXDClient:
        if remote not in self._clients:
            project = self.settings.get("project")
            self._clients[remote] = LXDClient(
                endpoint_for(
                    None if remote == LOCAL else remote, project if isinstance(project, str) else None
                )
            )
        return self._clients[remote]


def qualified(remote: str, name: str) -> str:
    """`NAME` on this host's daemon, `REMOTE:NAME` elsewhere (LXD names never hold a colon)."""
    return name if remote == LOCAL else f"{remote}:{name}"


def split_record(entry: str) -> tuple[str, str]:
    """The remote and the name of a recorded object."""
    remote, _, name = entry.rpartition(":")
    return (remote or LOCAL), name
