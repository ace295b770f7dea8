"""The LXD provider's mapping onto its client (the edge, faked here; the lxd tier runs the real daemon):
one listing per tick for every node's state, and each fault as the container action it means."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevo.lxd.client import Instance
from relevo.lxd.errors import LXDNotFoundError
from relevo.providers.base import Fault, NodeState
from relevo.providers.lxd import LXDProvider
from relevo.topology import parse_topology

TOPOLOGY = "name: t\nprovider: lxd\nnetwork: 10.213.9.0/24\n"


class FakeClient:
    """Records the calls the provider makes; knows a fixed set of instances."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[str, ...]] = []

    def instances(self) -> list[Instance]:
        self.calls.append(("instances",))
        return [Instance(name=n, status=s, status_code=0) for n, s in self.statuses.items()]

    def instance(self, name: str) -> Instance:
        self.calls.append(("instance", name))
        if name not in self.statuses:
            raise LXDNotFoundError(f"look up instance '{name}'", "not found")
        return Instance(name=name, status=self.statuses[name], status_code=0)

    def stop(self, name: str, *, force: bool = False, timeout_s: float = 0) -> None:
        self.calls.append(("stop", name, "force" if force else "clean"))

    def freeze(self, name: str) -> None:
        self.calls.append(("freeze", name))

    def unfreeze(self, name: str) -> None:
        self.calls.append(("unfreeze", name))


def provider_with(client: FakeClient, tmp_path: Path) -> LXDProvider:
    topology = parse_topology(TOPOLOGY, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    provider = LXDProvider(topology)
    provider._clients["local"] = client  # type: ignore[assignment]
    return provider


def test_every_node_s_state_comes_from_one_listing(tmp_path: Path) -> None:
    """statuses() lists the instances once for all nodes: Running, Frozen, Stopped, and missing ones."""
    client = FakeClient({"t-ha1": "Running", "t-web1": "Frozen", "t-web2": "Stopped", "other": "Running"})
    provider = provider_with(client, tmp_path)
    states = provider.statuses(["ha1", "web1", "web2", "web1bck"])
    assert states == {
        "ha1": NodeState.RUNNING,
        "web1": NodeState.PAUSED,
        "web2": NodeState.STOPPED,
        "web1bck": NodeState.MISSING,
    }
    assert client.calls == [("instances",)]


@pytest.mark.parametrize(
    ("fault", "call"),
    [
        (Fault.CRASH, ("stop", "t-web1", "force")),
        (Fault.HANG, ("freeze", "t-web1")),
        (Fault.RESUME, ("unfreeze", "t-web1")),
        (Fault.STOP, ("stop", "t-web1", "clean")),
    ],
)
def test_each_fault_is_its_container_action(tmp_path: Path, fault: Fault, call: tuple[str, ...]) -> None:
    """crash = forced stop, hang = freeze, resume = unfreeze, stop = clean stop."""
    client = FakeClient({"t-web1": "Running"})
    provider_with(client, tmp_path).fault("web1", fault)
    assert call in client.calls


def test_a_web_node_listens_on_nothing_of_this_host(tmp_path: Path) -> None:
    """Only the balancer's proxy devices listen on this host (checked free before up starts anything)."""
    provider = provider_with(FakeClient({}), tmp_path)
    assert provider.host_listeners("web1") == []
    assert [e.address for _, e in provider.host_listeners("ha1")] == ["127.213.9.2", "127.213.9.2"]
