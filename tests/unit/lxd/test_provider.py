"""The LXD provider's mapping onto its client (the edge, faked here; the lxd tier runs the real daemon):
one listing per tick for every node's state, and each fault as the container action it means."""

from __future__ import annotations

from pathlib import Path

import pytest

from relevo.errors import ProviderError, TopologyError
from relevo.lxd.client import ExecResult, Instance
from relevo.lxd.errors import LXDNotFoundError
from relevo.lxd.transport import APIEndpoint
from relevo.model import Capacity
from relevo.providers.base import Fault, Impairment, NodeState
from relevo.providers.lxd import LXDProvider
from relevo.providers.lxd_placement import split_record
from relevo.providers.lxd_setup import cpu_limits
from relevo.topology import parse_topology

TOPOLOGY = "name: t\nprovider: lxd\nnetwork: 10.213.9.0/24\n"


class FakeClient:
    """Records the calls the provider makes; knows a fixed set of instances."""

    def __init__(self, statuses: dict[str, str]) -> None:
        self.statuses = statuses
        self.endpoint = APIEndpoint(url="https://far.example:8443")  # not this host's daemon
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

    def exec(self, name: str, argv: list[str], *, timeout_s: float = 0) -> ExecResult:
        self.calls.append(("exec", name, argv[-1]))
        return ExecResult(0, "", "")

    def set_config(self, name: str, values: dict[str, str | None]) -> None:
        self.calls.append(("config", name, *(f"{k}={v}" for k, v in values.items())))


def provider_with(client: object, tmp_path: Path) -> LXDProvider:
    """An LXD provider of TOPOLOGY whose local daemon is `client` (a fake of the client's calls)."""
    topology = parse_topology(TOPOLOGY, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    provider = LXDProvider(topology)
    provider.placement._clients["local"] = client  # type: ignore[assignment]
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


@pytest.mark.parametrize("status", ["Error", "Starting", "Stopping"])
def test_a_status_that_is_not_stopped_is_not_taken_for_a_death(tmp_path: Path, status: str) -> None:
    """LXD lists "Error" when a container's monitor does not answer within 5 s (a saturated host), and
    passes through Starting/Stopping: none is certain evidence that the node's processes are gone, so none
    reads as stopped (which would have the controller restart a serving balancer)."""
    client = FakeClient({"t-ha1": status, "t-web1": status})
    provider = provider_with(client, tmp_path)
    assert provider.statuses(["ha1", "web1"]) == {"ha1": NodeState.RUNNING, "web1": NodeState.RUNNING}
    assert provider.status("ha1") is NodeState.RUNNING


@pytest.mark.parametrize(
    ("fault", "call"),
    [
        (Fault.CRASH, ("stop", "t-web1", "force")),
        (Fault.HANG, ("freeze", "t-web1")),
        (Fault.STOP, ("stop", "t-web1", "clean")),
    ],
)
def test_each_fault_is_its_container_action(tmp_path: Path, fault: Fault, call: tuple[str, ...]) -> None:
    """crash = forced stop, hang = freeze, stop = clean stop."""
    client = FakeClient({"t-web1": "Running"})
    provider_with(client, tmp_path).fault("web1", fault)
    assert call in client.calls


def test_resume_unfreezes_a_frozen_container_and_leaves_a_running_one_alone(tmp_path: Path) -> None:
    """As SIGCONT does nothing to a running process: LXD refuses to unfreeze a running container ("The
    container is already running"), and `relevo scenarios` resumes every running node before each run."""
    client = FakeClient({"t-web1": "Frozen", "t-web2": "Running"})
    provider = provider_with(client, tmp_path)
    provider.fault("web1", Fault.RESUME)
    provider.fault("web2", Fault.RESUME)
    assert [c for c in client.calls if c[0] == "unfreeze"] == [("unfreeze", "t-web1")]
    # A running web node may have its workers held stopped (hang-workers): those are resumed in the guest.
    resumed = [c[1] for c in client.calls if c[0] == "exec" and "pkill -CONT" in c[2]]
    assert resumed == ["t-web1", "t-web2"]


def test_hang_workers_and_reload_run_in_the_guest_and_the_balancer_has_no_workers_to_hang(
    tmp_path: Path,
) -> None:
    """hang-workers and reload are commands in the node's container (no pid file of the host read);
    hang-workers on the balancer is refused beforehand, with why."""
    client = FakeClient({"t-web1": "Running", "t-ha1": "Running"})
    provider = provider_with(client, tmp_path)
    provider.fault("web1", Fault.HANG_WORKERS)
    provider.fault("web1", Fault.RELOAD)
    scripts = [c[2] for c in client.calls if c[0] == "exec"]
    assert "pkill -STOP" in scripts[0] and scripts[1] == "relevo-apache.service"
    reason = provider.cannot("ha1", Fault.HANG_WORKERS)
    assert reason is not None and "web node" in reason
    with pytest.raises(ProviderError, match="web node"):
        provider.fault("ha1", Fault.HANG_WORKERS)
    reason = provider.cannot("web1", Fault.DISK_FULL)
    assert reason is not None and "storage pool" in reason
    # Network faults enter the container's namespace from the host: not for another host's daemon.
    reason = provider.cannot("web1", Fault.DELAY)
    assert reason is not None and "must be this host's" in reason


def test_a_web_node_listens_on_nothing_of_this_host(tmp_path: Path) -> None:
    """Only the balancer's proxy devices listen on this host (checked free before up starts anything)."""
    provider = provider_with(FakeClient({}), tmp_path)
    assert provider.host_listeners("web1") == []
    assert [e.address for _, e in provider.host_listeners("ha1")] == ["127.213.9.2", "127.213.9.2"]


def test_a_node_on_another_remote_without_a_network_is_refused_at_its_line(tmp_path: Path) -> None:
    """relevo makes its isolated bridge only on the home daemon: a node on another remote must name a
    network there, else the topology is refused (exit 2) at that node's line, saying what to add."""
    text = TOPOLOGY + "nodes:\n  web1: {role: web}\n  web2: {role: web, options: {remote: far}}\n"
    with pytest.raises(TopologyError) as caught:
        parse_topology(text, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    assert (caught.value.line, caught.value.exit_status) == (6, 2)
    assert "nodes.web2.options: a node on LXD remote 'far' needs `network: NAME`" in str(caught.value)
    named = text.replace("{remote: far}", "{remote: far, network: lxdbr0}")
    topology = parse_topology(named, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    placement = LXDProvider(topology).placement
    assert (placement.remote_of("web2"), placement.named_network("web2"), placement.record("web2")) == (
        "far",
        "lxdbr0",
        "far:t-web2",
    )
    assert (placement.remote_of("web1"), placement.named_network("web1"), placement.record("web1")) == (
        "local",
        None,
        "t-web1",
    )


def test_every_node_on_the_provider_s_remote_needs_no_named_network(tmp_path: Path) -> None:
    """With the provider's `remote`, that daemon is home: relevo makes its bridge there, and records
    what it made there with the remote's name."""
    text = TOPOLOGY + "providers:\n  lxd: {remote: far}\n"
    topology = parse_topology(text, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    placement = LXDProvider(topology).placement
    assert placement.home == "far" and not placement.away("web1")
    assert split_record(placement.record("web1")) == ("far", "t-web1")
    assert split_record("t-web1") == ("local", "t-web1")


@pytest.mark.parametrize(
    ("cpu", "limits"),
    [
        (None, {}),
        (0.08, {"limits.cpu": "1", "limits.cpu.allowance": "8ms/100ms"}),
        (0.5, {"limits.cpu": "1", "limits.cpu.allowance": "50ms/100ms"}),
        (1.5, {"limits.cpu": "2", "limits.cpu.allowance": "150ms/100ms"}),
        (0.001, {"limits.cpu": "1", "limits.cpu.allowance": "1ms/100ms"}),
    ],
)
def test_capacity_cpu_is_lxd_s_cpu_limits(cpu: float | None, limits: dict[str, str]) -> None:
    """capacity.cpu in cores → limits.cpu (whole CPUs, rounded up) and a hard allowance per 100 ms."""
    assert cpu_limits(Capacity(cpu=cpu)) == limits


class ConfiguredClient(FakeClient):
    """A FakeClient whose instances carry configuration (the owner key), and nothing to push files with:
    a provider that tried to rewrite a provisioned container would fail here."""

    def __init__(self, statuses: dict[str, str], config: dict[str, str]) -> None:
        super().__init__(statuses)
        self.config = config

    def instance(self, name: str) -> Instance:
        found = super().instance(name)
        return Instance(name=found.name, status=found.status, status_code=0, config=self.config)


PROVISIONED = TOPOLOGY + "providers:\n  lxd:\n    provisioned: true\n"


def provisioned_provider(client: FakeClient, tmp_path: Path) -> LXDProvider:
    topology = parse_topology(PROVISIONED, source=tmp_path / "relevo.yaml", state_dir=tmp_path / ".relevo")
    provider = LXDProvider(topology)
    provider.placement._clients["local"] = client  # type: ignore[assignment]
    return provider


def test_a_provisioned_container_is_never_created_or_rewritten(tmp_path: Path) -> None:
    """providers.lxd.provisioned: create() accepts the cluster's own container as it is, and names the
    provisioning when the container is missing (nothing is created)."""
    owner = provisioned_provider(FakeClient({}), tmp_path).owner
    client = ConfiguredClient({"t-web1": "Running"}, {"user.relevo.cluster": owner})
    provider = provisioned_provider(client, tmp_path)
    provider.create("web1")
    assert client.calls == [("instance", "t-web1")]
    with pytest.raises(ProviderError, match=r"web2 has no container 't-web2': provisioning makes it"):
        provider.create("web2")
    assert client.calls[-1] == ("instance", "t-web2")


def test_a_provisioned_cluster_still_refuses_a_container_it_does_not_own(tmp_path: Path) -> None:
    client = ConfiguredClient({"t-web1": "Running"}, {"user.relevo.cluster": "someone-else"})
    with pytest.raises(ProviderError, match="did not create"):
        provisioned_provider(client, tmp_path).create("web1")


class RefusingClient(FakeClient):
    """LXD refused to create the bridge (recorded before it was made): it does not exist; deleting it is
    LXD's 404. The profile the record names was removed by hand."""

    def __init__(self) -> None:
        super().__init__({})

    def delete_network(self, name: str) -> None:
        self.calls.append(("delete_network", name))
        raise LXDNotFoundError(f"delete network '{name}'", "not found")

    def delete_profile(self, name: str) -> None:
        self.calls.append(("delete_profile", name))
        raise LXDNotFoundError(f"delete profile '{name}'", "not found")


def test_destroy_after_a_refused_up_reports_only_what_it_removed(tmp_path: Path) -> None:
    """A network (and profile, instance) recorded before LXD refused to make it: destroy asks LXD to remove
    it, reports nothing removed, and forgets the record."""
    client = RefusingClient()
    provider = provider_with(client, tmp_path)
    provider.created.add("networks", "local:rlvabc")
    provider.created.add("profiles", "local:rlvprofile")
    provider.created.add("instances", "local:t-web1")
    assert provider.destroy() == []
    assert ("delete_network", "rlvabc") in client.calls
    assert provider.created.load() == {"instances": [], "profiles": [], "networks": []}


def test_cpu_starve_cuts_the_containers_allowance_and_heal_gives_it_back(tmp_path: Path) -> None:
    """cpu-starve 10 %: recorded first, then the container's limits.cpu.allowance is 10ms/100ms (any
    daemon: LXD's API, no namespace entered); healed, the allowance it had (none) is removed and the
    record is gone; heal_all after a relevo that died mid-span does the same."""
    client = FakeClient({"t-web1": "Running"})
    provider = provider_with(client, tmp_path)
    assert provider.cannot("web1", Fault.CPU_STARVE) is None
    means = provider.impair("web1", Impairment(fault=Fault.CPU_STARVE, pct=10))
    assert means == "limits.cpu.allowance 10ms/100ms"
    record = tmp_path / ".relevo" / "faults" / "web1.json"
    assert record.exists()
    assert [c for c in client.calls if c[0] == "config"] == [
        ("config", "t-web1", "limits.cpu.allowance=10ms/100ms")
    ]
    assert provider.heal_all() == ["web1"]
    assert [c for c in client.calls if c[0] == "config"][-1] == (
        "config",
        "t-web1",
        "limits.cpu.allowance=None",
    )
    assert not record.exists()


def test_a_look_at_the_nodes_is_bounded_by_one_listing_per_daemon(tmp_path: Path) -> None:
    """statuses() of nodes on one daemon may block as long as one call's timeout there: the bound the
    controller adds to its liveness (a tick waiting on LXD is not a stuck one)."""
    provider = provider_with(FakeClient({}), tmp_path)
    assert provider.status_bound_s(["ha1", "web1", "web2"]) == APIEndpoint(url="https://x:8443").timeout_s
    assert provider.status_bound_s([]) == 0.0
