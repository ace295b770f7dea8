"""The cluster as data: frozen, validated once by `relevo.topology`, then passed everywhere."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

OptionValue = str | int | float | bool


class Role(enum.StrEnum):
    BALANCER = "balancer"
    WEB = "web"
    STANDBY = "standby"


class StandbyMode(enum.StrEnum):
    # A standby replaces its own primary as soon as that primary fails (the seed's watchdog).
    PAIRED = "paired"
    # HAProxy's native `backup`: standbys serve only when every primary is down.
    POOL = "pool"


class Temperature(enum.StrEnum):
    COLD = "cold"  # stopped until needed
    # Started and ready ahead of time, then frozen (SIGSTOP of its group; LXD freeze), in maint: memory,
    # no CPU; failover thaws it (microseconds locally, ~10 ms for a container) and puts it in service.
    FROZEN = "frozen"
    WARM = "warm"  # running, kept in maint (and a `backup` line): failover is one Runtime API call


class Failback(enum.StrEnum):
    """What a frozen standby becomes once its primary serves again and it is drained."""

    FREEZE = "freeze"  # frozen again, ready for the next failover
    STOP = "stop"  # stopped, then started afresh and frozen (a clean process for the next failover)


class RestartPolicy(enum.StrEnum):
    NEVER = "never"
    ON_FAILURE = "on-failure"


class Balance(enum.StrEnum):
    ROUNDROBIN = "roundrobin"
    STATIC_RR = "static-rr"
    LEASTCONN = "leastconn"
    FIRST = "first"
    SOURCE = "source"
    RANDOM = "random"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    address: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheck:
    """HAProxy's L7 check and the controller's probe share these numbers."""

    path: str = "/health"
    interval_s: float = 0.25
    fastinter_s: float = 0.1
    downinter_s: float = 0.5
    timeout_s: float = 1.0
    rise: int = 2
    fall: int = 2
    expect_status: int = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    """What one web node can serve at once. A section that can grow (a CPU quota will sit beside it)."""

    # Apache's MaxRequestWorkers: requests served at once. HAProxy sends a server at most `maxconn` of
    # them and queues the rest, so a burst waits in HAProxy's queue instead of in Apache's listen
    # backlog, where the health checks would wait behind it.
    workers: int = 400
    # A CPU quota in cores (0.5: half of one core), None for none: what makes a local node slower than
    # the machine, so that a lost primary costs capacity. The local provider applies it through cgroups
    # (v1 or v2) when run as root.
    cpu: float | None = None

    @property
    def maxconn(self) -> int:
        """HAProxy's per-server `maxconn`: the workers, minus room for HAProxy's check and the
        controller's probe (10 %, at least 2)."""
        return max(1, self.workers - max(2, -(-self.workers // 10)))


@dataclass(frozen=True, slots=True, kw_only=True)
class StandbyPolicy:
    mode: StandbyMode = StandbyMode.PAIRED
    temperature: Temperature = Temperature.COLD
    failback: Failback = Failback.FREEZE  # frozen standbys only
    restart: RestartPolicy = RestartPolicy.NEVER
    # A primary must stay healthy this long before traffic goes back to it (no start/stop loops on a flap).
    hold_s: float = 3.0


# The journal's rotation size, bounded: readers never have to read more than this of one file.
JOURNAL_MAX_BYTES_LOW = 10_000
JOURNAL_MAX_BYTES_HIGH = 100_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerSettings:
    tick_s: float = 0.1
    # The controller's own probe waits at least as long as HAProxy's check (`health.timeout`): a probe
    # stricter than HAProxy's would call a busy server dead (see `Topology.probe_timeout_s`).
    probe_timeout_s: float = 1.0
    # A provider start or stop still running after this long has failed (it runs off the tick).
    action_timeout_s: float = 30.0
    # The journal is rotated (events.jsonl -> events.jsonl.1) when it grows past this many bytes.
    journal_max_bytes: int = 10_000_000
    drain_timeout_s: float = 10.0
    # A standby started but never answering is given up on after this long (reported, retried later).
    start_timeout_s: float = 10.0
    restart_backoff_s: float = 1.0
    restart_backoff_max_s: float = 30.0
    # The controller's Prometheus metrics at http://BALANCER:PORT/metrics, on the balancer's host address
    # (loopback), behind the cluster's credentials; 0 turns them off.
    metrics_port: int = 8406


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardSettings:
    """The live dashboard `relevo up` starts beside the controller (`relevo dashboard`)."""

    enabled: bool = True
    # On the balancer's host address (loopback), like the stats page; `relevo dashboard --listen` moves it.
    port: int = 8405
    # The kill/hang/stop/... buttons; None: on for the local provider, off for the others.
    actions: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    """One web server: a primary (`web`) or a `standby` paired with one primary."""

    name: str
    role: Role
    provider: str
    address: str
    port: int
    standby_for: str | None = None
    capacity: Capacity = Capacity()
    options: Mapping[str, OptionValue] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(address=self.address, port=self.port)


@dataclass(frozen=True, slots=True, kw_only=True)
class Balancer:
    name: str
    provider: str
    address: str
    frontend: Endpoint
    stats: Endpoint
    balance: Balance = Balance.ROUNDROBIN
    # Bounded so a hung server costs a retry elsewhere, not a hung client.
    timeout_server_s: float = 2.0
    timeout_connect_s: float = 0.5
    # How long a request may wait in HAProxy's queue for a server under its `maxconn` (then a 503).
    timeout_queue_s: float = 5.0
    retries: int = 3
    options: Mapping[str, OptionValue] = field(default_factory=lambda: MappingProxyType({}))

    BACKEND = "web"
    FRONTEND = "www"


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerPair:
    """A second balancer beside the first (`balancer: {peer: ha2}`): same configuration, same frontend.

    On a provider with a network of its own (LXD, the VMs) the two share a virtual address, `vip`, that
    keepalived (VRRP) gives to one of them; on the local provider both HAProxy processes bind the same
    loopback address and port (SO_REUSEPORT), and the kernel spreads new connections over the living.
    """

    peer: Balancer  # the second balancer: the first one's settings, its own name, address and stats
    vip: str | None = None
    # After a takeover the address stays where it is (keepalived's `nopreempt`) unless this is true: a
    # balancer that comes back then takes it back (a planned, announced move).
    failback: bool = False
    # VRRP: the virtual router id on the bridge (1-255) and the advert interval (v3: centiseconds).
    router_id: int = 51
    advert_s: float = 0.1
    # Where the file wrote `peer:` and `vip:` (line, column), for checks made later against other
    # addresses (`relevo export vagrant`'s VMs); vip_at None: the VIP was not written (a default).
    peer_at: tuple[int, int] | None = field(default=None, compare=False)
    vip_at: tuple[int, int] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    name: str
    balancer: Balancer
    nodes: tuple[Node, ...]
    health: HealthCheck = HealthCheck()
    standby: StandbyPolicy = StandbyPolicy()
    controller: ControllerSettings = ControllerSettings()
    dashboard: DashboardSettings = DashboardSettings()
    capacity: Capacity = Capacity()  # every node's, unless the node sets its own
    # Each provider's own settings (`providers: {lxd: {...}}`), as the provider declared and checked them.
    providers: Mapping[str, Mapping[str, OptionValue]] = field(default_factory=lambda: MappingProxyType({}))
    # The subnet addresses were handed out from (an LXD bridge's subnet when relevo creates one).
    network: str = "127.100.0.0/24"
    # Where the topology came from (None: the built-in default) and where its state lives.
    source: Path | None = None
    state_dir: Path = Path(".relevo")
    # A second balancer (None: one balancer, the seed's layout).
    pair: BalancerPair | None = None

    @property
    def primaries(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is Role.WEB)

    @property
    def standbys(self) -> tuple[Node, ...]:
        return tuple(n for n in self.nodes if n.role is Role.STANDBY)

    def node(self, name: str) -> Node:
        for candidate in self.nodes:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def standby_of(self, primary: str) -> Node | None:
        return next((n for n in self.standbys if n.standby_for == primary), None)

    @property
    def probe_timeout_s(self) -> float:
        """The controller's probe timeout: never stricter than HAProxy's own check."""
        return max(self.controller.probe_timeout_s, self.health.timeout_s)

    def provider_options(self, provider: str) -> Mapping[str, OptionValue]:
        return self.providers.get(provider, MappingProxyType({}))

    @property
    def balancers(self) -> tuple[Balancer, ...]:
        """The balancer, and its peer when the topology has a pair."""
        return (self.balancer,) if self.pair is None else (self.balancer, self.pair.peer)

    def is_balancer(self, name: str) -> bool:
        return any(b.name == name for b in self.balancers)

    def balancer_named(self, name: str) -> Balancer:
        for candidate in self.balancers:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def node_names(self) -> tuple[str, ...]:
        return (*(b.name for b in self.balancers), *(n.name for n in self.nodes))
