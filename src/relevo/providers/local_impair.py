"""Lasting faults on the local provider (root only): iptables rules by the node's loopback address and a
delaying proxy put on its path. This kernel has no netem (MEASURED.md), so:

- partition: every packet to or from the node's address dropped on INPUT (senders time out, as in a
  real partition; a drop on OUTPUT would fail their sends at once, which is certain evidence instead);
- loss: the same packets dropped at random (`-m statistic --mode random --probability P`);
- delay, slow, bandwidth: new connections to the node's port DNATed (nat OUTPUT) to a delaying proxy on
  the node's own address (relevo.providers.delay_proxy), which reaches the node with a socket mark the
  DNAT skips; connections opened before the fault (HAProxy keeps them alive) are reset once, so that
  HAProxy's retry opens a new one, through the proxy.

Every rule lives in chains of this cluster's own (`RLV<tag>I`, `RLV<tag>O`, `RLV<tag>N`, the tag
derived from the cluster's name and state directory), reached by one jump each from INPUT / OUTPUT /
nat OUTPUT; nothing else is ever added, changed or removed. Each fault is recorded (faults/NODE.json in
the state directory) before anything is applied, so that `heal_all` (called by the next `scenarios`,
`up` and `down`) undoes what a relevo that died mid-span left.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from relevo.commands import run, which
from relevo.errors import ProviderError
from relevo.model import Endpoint, Topology
from relevo.paths import StatePaths
from relevo.procs import ProcessRecord, is_ours, wait_gone
from relevo.providers import local_exhaust, netem
from relevo.providers.base import NETWORK, Fault, Impairment
from relevo.providers.cpu_quota import CpuCgroups
from relevo.providers.fault_records import FaultRecords

PROXY_MARK = 0x52_4C_56  # "RLV": the delaying proxy's own connections, which the DNAT rule skips
PROXY_MODULE = "relevo.providers.delay_proxy"
IPTABLES_WAIT_S = "5"
# A fault relevo died during is still bounded: its proxy exits after this long.
PROXY_MAX_S = 3600.0


# The proxies this process started, by PID: kept so that each is waited for once stopped.
_CHILDREN: dict[int, subprocess.Popen[str]] = {}


def cluster_chain_tag(topology: Topology) -> str:
    text = f"{topology.name}\0{topology.state_dir.resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:10].upper()


class LocalImpairments:
    def __init__(self, topology: Topology, paths: StatePaths) -> None:
        self.topology = topology
        self.paths = paths
        self.records = FaultRecords(paths)
        tag = cluster_chain_tag(topology)
        # (table, chain, the built-in chain that jumps to it)
        self.chains = {
            "in": ("filter", f"RLV{tag}I", "INPUT"),
            "out": ("filter", f"RLV{tag}O", "OUTPUT"),
            "nat": ("nat", f"RLV{tag}N", "OUTPUT"),
        }

    # -- what this machine allows -------------------------------------------------------------------------
    def cannot(self, node: str, fault: Fault) -> str | None:
        if fault is Fault.DISK_FULL:
            return local_exhaust.disk_cannot(self.paths.held().node_dir(node))
        if fault is Fault.CPU_STARVE:
            if os.geteuid() != 0:
                return "cpu-starve needs root on the local provider (a cgroup's CPU quota): `sudo relevo ...`"
            if CpuCgroups.detect() is None:
                return "cpu-starve needs the cgroup cpu controller (v1 or v2), which this machine lacks"
            return None
        if fault not in NETWORK:
            return f"the local provider has no means for {fault}"
        if os.geteuid() != 0:
            return (
                f"{fault} needs root on the local provider (iptables rules by the node's address): "
                "run `sudo relevo scenarios ...`"
            )
        if which("iptables") is None:
            return f"{fault} needs iptables: `sudo apt-get install iptables`"
        return None

    # -- applying, healing ----------------------------------------------------------------------------------
    def impair(
        self, node: str, endpoint: Endpoint, impairment: Impairment, pids: Callable[[], list[int]]
    ) -> str:
        """Apply it (`pids`: the node's processes now, for a CPU quota); returns the means used."""
        reason = self.cannot(node, impairment.fault)
        if reason is not None:
            raise ProviderError(reason)
        self.heal(node)  # one lasting fault per node at a time
        if impairment.fault not in NETWORK:
            return self._exhaust(node, impairment, pids)
        address = endpoint.address
        rules: list[list[str]] = []
        if impairment.fault is Fault.PARTITION:
            rules = [["in", "-d", address, "-j", "DROP"], ["in", "-s", address, "-j", "DROP"]]
            means = "iptables DROP on INPUT"
        elif impairment.fault is Fault.LOSS:
            chance = f"{impairment.pct / 100:.4f}"
            statistic = ["-m", "statistic", "--mode", "random", "--probability", chance, "-j", "DROP"]
            rules = [["in", "-d", address, *statistic], ["in", "-s", address, *statistic]]
            means = "iptables statistic (random drop) on INPUT"
        else:
            means = "a delaying TCP proxy (DNAT)"
        record: dict[str, object] = {"node": node, "fault": str(impairment.fault), "rules": rules}
        self.records.save(node, record)  # before anything is applied
        self._ensure_chains()
        if impairment.fault in (Fault.DELAY, Fault.SLOW, Fault.BANDWIDTH):
            proxy, port = self._start_proxy(endpoint, impairment)
            record["proxy"] = {"pid": proxy.pid, "start_time": proxy.start_time, "port": port}
            redirect = [
                *("nat", "-d", address, "-p", "tcp", "--dport", str(endpoint.port)),
                *("-m", "mark", "!", "--mark", str(PROXY_MARK)),
                *("-j", "DNAT", "--to-destination", f"{address}:{port}"),
            ]
            # Connections opened before the fault bypass the DNAT: reset them (HAProxy retries anew).
            reset = [
                *("out", "-d", address, "-p", "tcp", "--dport", str(endpoint.port)),
                *("-m", "mark", "!", "--mark", str(PROXY_MARK)),
                *("-j", "REJECT", "--reject-with", "tcp-reset"),
            ]
            rules = [redirect, reset]
            record["rules"] = rules
            self.records.save(node, record)
        for rule in rules:
            self._iptables(rule[0], "-A", rule[1:])
        # Which means, and whether netem (unused: the same means everywhere) was there to be had.
        return f"{means}; {netem.this_kernel().describe()}"

    def _exhaust(self, node: str, impairment: Impairment, pids: Callable[[], list[int]]) -> str:
        """cpu-starve and disk-full (local_exhaust): recorded before applied, as the network's faults."""
        record: dict[str, object] = {"node": node, "fault": str(impairment.fault), "rules": []}
        if impairment.fault is Fault.DISK_FULL:
            directory = self.paths.held().node_dir(node)
            record["fill"] = local_exhaust.FILL_NAME  # in the node's directory, whichever process heals
            self.records.save(node, record)  # before the disk is full: a record can still be written
            local_exhaust.fill(directory)
            return f"a file filling {local_exhaust.mount_of(directory)[0]} (tmpfs)"
        cgroups = CpuCgroups.detect()
        assert cgroups is not None  # cannot() said so
        group = cgroups.group(self.topology.name, self.paths.root, node)
        record["cpu"] = {"cgroup": str(group)}
        self.records.save(node, record)
        record["cpu"] = local_exhaust.starve(cgroups, group, impairment.pct, pids())
        self.records.save(node, record)
        return f"cgroup {cgroups.layout} CPU quota ({group.name})"

    def heal(self, node: str) -> bool:
        """Undo what the node's record names: its rules, its proxy, its fill, its CPU quota. True when
        there was something."""
        record = self.records.load(node)
        if record is None:
            return False
        fill = record.get("fill")
        if fill == local_exhaust.FILL_NAME:
            local_exhaust.unfill(self.paths.held().node_dir(node) / local_exhaust.FILL_NAME)
        cpu = record.get("cpu")
        cgroups = CpuCgroups.detect() if isinstance(cpu, dict) else None
        if isinstance(cpu, dict) and cgroups is not None:
            local_exhaust.unstarve(cgroups, cpu)
        rules = record.get("rules")
        for rule in rules if isinstance(rules, list) else []:
            if isinstance(rule, list) and rule and rule[0] in self.chains:
                with contextlib.suppress(ProviderError):  # never applied, or already gone
                    self._iptables(str(rule[0]), "-D", [str(r) for r in rule[1:]])
        proxy = record.get("proxy")
        if isinstance(proxy, dict):
            stop_proxy(proxy)
        self.records.remove(node)
        self._remove_chains()  # the cluster's last fault healed: its chains and jumps go too
        return True

    def heal_all(self) -> list[str]:
        healed = []
        for node in self.records.nodes():
            record = self.records.load(node)
            if self.heal(node):
                healed.append(f"{record.get('fault', 'fault') if record else 'fault'} {node}")
        if which("iptables") is not None and os.geteuid() == 0 and self._chains_exist():
            self._remove_chains()
        return healed

    def _chains_exist(self) -> bool:
        return any(self._exists(table, ["-n", "-L", chain]) for table, chain, _ in self.chains.values())

    def active(self) -> list[str]:
        """The nodes with a lasting fault recorded."""
        return self.records.nodes()

    # -- iptables -------------------------------------------------------------------------------------------
    def _iptables(self, which_chain: str, verb: str, spec: list[str]) -> None:
        table, chain, _ = self.chains[which_chain]
        run(
            ["iptables", "-w", IPTABLES_WAIT_S, "-t", table, verb, chain, *spec],
            what=f"iptables {verb} in {chain}",
        )

    def _exists(self, table: str, args: list[str]) -> bool:
        result = subprocess.run(
            ["iptables", "-w", IPTABLES_WAIT_S, "-t", table, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return result.returncode == 0

    def _ensure_chains(self) -> None:
        for table, chain, parent in self.chains.values():
            if not self._exists(table, ["-n", "-L", chain]):
                run(["iptables", "-w", IPTABLES_WAIT_S, "-t", table, "-N", chain], what=f"create {chain}")
            if not self._exists(table, ["-C", parent, "-j", chain]):
                run(
                    ["iptables", "-w", IPTABLES_WAIT_S, "-t", table, "-I", parent, "-j", chain],
                    what=f"jump from {parent} to {chain}",
                )

    def _remove_chains(self) -> None:
        """This cluster's chains and their jumps, when no fault of it is recorded any more."""
        if self.active():
            return
        for table, chain, parent in self.chains.values():
            while self._exists(table, ["-C", parent, "-j", chain]):
                run(
                    ["iptables", "-w", IPTABLES_WAIT_S, "-t", table, "-D", parent, "-j", chain],
                    what=f"remove the jump to {chain}",
                )
            if self._exists(table, ["-n", "-L", chain]):
                run(["iptables", "-w", IPTABLES_WAIT_S, "-t", table, "-F", chain], what=f"flush {chain}")
                run(["iptables", "-w", IPTABLES_WAIT_S, "-t", table, "-X", chain], what=f"delete {chain}")

    # -- the delaying proxy ---------------------------------------------------------------------------------
    def _start_proxy(self, endpoint: Endpoint, impairment: Impairment) -> tuple[ProcessRecord, int]:
        argv = [
            sys.executable,
            "-m",
            PROXY_MODULE,
            *("--listen", endpoint.address),
            *("--upstream", f"{endpoint.address}:{endpoint.port}"),
            *("--mark", str(PROXY_MARK)),
            *("--max-s", str(PROXY_MAX_S)),
        ]
        if impairment.fault is Fault.DELAY:
            argv += ["--delay-ms", str(impairment.ms), "--jitter-ms", str(impairment.jitter_ms)]
        elif impairment.fault is Fault.SLOW:
            argv += ["--slow-ms", str(impairment.ms)]
        else:
            argv += ["--kbit", str(impairment.kbit)]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdout is not None
        line = process.stdout.readline().strip()  # its port, once it listens
        record = ProcessRecord.of(process.pid, config=PROXY_MODULE)
        if not line.isdigit() or record is None:
            process.kill()
            process.wait(5)
            raise ProviderError(f"the delaying proxy for {endpoint.address} did not start")
        _CHILDREN[process.pid] = process  # waited for when healed (no zombie, no unwaited child)
        return record, int(line)

    # -- records --------------------------------------------------------------------------------------------


def stop_proxy(proxy: dict[str, object]) -> None:
    """Stop a proxy a record names, if it is still that process (PID and start time: never another)."""
    try:
        pid, start = int(str(proxy["pid"])), int(str(proxy["start_time"]))
    except (KeyError, ValueError):
        return
    current = ProcessRecord.of(pid, config=PROXY_MODULE)
    if current is None or current.start_time != start or not is_ours(current):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(current, 2.0):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(current, 2.0)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        child.wait(5)
        if child.stdout is not None:
            child.stdout.close()
