"""Lasting faults on the LXD provider, inside the node's own container network namespace (which the
cluster created, and which goes away with the container): the host's iptables and tc entered there with
`nsenter --net=/proc/PID/ns/net` (root on the host of a local LXD daemon), nothing on the host itself.

- partition: every packet in or out of the container's NIC dropped (lo untouched);
- loss: the same at random (`-m statistic`);
- bandwidth: a TBF qdisc on the container's NIC (its answers);
- delay, slow: the delaying proxy (relevo.providers.delay_proxy) run in the container's namespace, new
  connections to the node's port REDIRECTed to it in PREROUTING, older ones reset once.

Each fault is recorded (faults/NODE.json, with the container's PID: a container restarted since has a
new namespace, so nothing of the fault is left in it) before it is applied, and healed by `heal`, or by
`heal_all` in the next `scenarios`, `up` or `down`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from relevo.commands import run, which
from relevo.errors import ProviderError
from relevo.paths import StatePaths
from relevo.procs import ProcessRecord
from relevo.providers import netem
from relevo.providers.base import NETWORK, Fault, Impairment
from relevo.providers.fault_records import FaultRecords
from relevo.providers.local_impair import _CHILDREN, PROXY_MAX_S, PROXY_MODULE, stop_proxy

COMMENT = ["-m", "comment", "--comment", "relevo fault"]


class ContainerImpairments:
    def __init__(self, paths: StatePaths, nic: str) -> None:
        self.paths = paths
        self.nic = nic
        self.records = FaultRecords(paths)

    def cannot(self, fault: Fault, *, local_daemon: bool) -> str | None:
        if fault is Fault.CPU_STARVE:
            return None  # the container's `limits.cpu.allowance`, through LXD's API (any daemon)
        if fault is Fault.DISK_FULL:
            return (
                "disk-full on LXD would fill the container's root file system, which is the storage "
                "pool's (on `dir`, the host's own disk): relevo never fills a disk it does not own"
            )
        if fault not in NETWORK:
            return f"the lxd provider has no means for {fault}"
        if not local_daemon:
            return f"{fault} enters the container's network namespace: its LXD daemon must be this host's"
        if os.geteuid() != 0:
            return f"{fault} on LXD needs root on the host (nsenter into the container): run with sudo"
        for tool, package in (("nsenter", "util-linux"), ("iptables", "iptables"), ("tc", "iproute2")):
            if which(tool) is None:
                return f"{fault} needs {tool}: `sudo apt-get install {package}`"
        return None

    def impair(self, node: str, pid: int, address: str, port: int, impairment: Impairment) -> str:
        if pid <= 0:
            raise ProviderError(f"{node}'s container is not running")
        self.heal(node, pid)
        fault = impairment.fault
        rules: list[list[str]] = []
        qdisc = False
        if fault is Fault.PARTITION:
            rules = [
                ["filter", "INPUT", "!", "-i", "lo", "-j", "DROP"],
                ["filter", "OUTPUT", "!", "-o", "lo", "-j", "DROP"],
            ]
            means = "iptables DROP in the container's namespace"
        elif fault is Fault.LOSS:
            chance = ["-m", "statistic", "--mode", "random", "--probability", f"{impairment.pct / 100:.4f}"]
            rules = [
                ["filter", "INPUT", "!", "-i", "lo", *chance, "-j", "DROP"],
                ["filter", "OUTPUT", "!", "-o", "lo", *chance, "-j", "DROP"],
            ]
            means = "iptables statistic (random drop) in the container's namespace"
        elif fault is Fault.BANDWIDTH:
            qdisc = True
            means = f"TBF on the container's {self.nic}"
        else:
            means = "a delaying TCP proxy in the container's namespace (REDIRECT)"
        record: dict[str, object] = {
            "node": node,
            "fault": str(fault),
            "pid": pid,
            "rules": rules,
            "qdisc": qdisc,
        }
        self.records.save(node, record)  # before anything is applied
        if fault in (Fault.DELAY, Fault.SLOW):
            proxy, proxy_port = self._start_proxy(pid, address, port, impairment)
            record["proxy"] = {"pid": proxy.pid, "start_time": proxy.start_time, "port": proxy_port}
            rules = [
                [
                    "nat",
                    "PREROUTING",
                    "-p",
                    "tcp",
                    "--dport",
                    str(port),
                    "-j",
                    "REDIRECT",
                    "--to-ports",
                    str(proxy_port),
                ],
                [
                    "filter",
                    "INPUT",
                    "!",
                    "-i",
                    "lo",
                    "-p",
                    "tcp",
                    "--dport",
                    str(port),
                    "-j",
                    "REJECT",
                    "--reject-with",
                    "tcp-reset",
                ],
            ]
            record["rules"] = rules
            self.records.save(node, record)
        for rule in rules:
            self._iptables(pid, "-I", rule)
        if qdisc:
            rate = f"{impairment.kbit}kbit"
            self._nsenter(
                pid,
                [
                    "tc",
                    "qdisc",
                    "replace",
                    "dev",
                    self.nic,
                    "root",
                    "tbf",
                    "rate",
                    rate,
                    "burst",
                    "32kbit",
                    "latency",
                    "400ms",
                ],
                what="add a TBF qdisc",
            )
        # Which means, and whether netem (unused: the same means everywhere) was there to be had.
        return f"{means}; {netem.this_kernel().describe()}"

    def record_starve(self, node: str, pid: int, previous: str | None) -> None:
        """A cpu-starve's record, before the allowance is cut: the allowance to give back."""
        self.heal(node, pid)
        self.records.save(
            node,
            {
                "node": node,
                "fault": str(Fault.CPU_STARVE),
                "pid": pid,
                "rules": [],
                "cpu": {"previous": previous},
            },
        )

    def starved(self, node: str) -> tuple[bool, str | None]:
        """Whether the node's record is a cpu-starve, and the allowance it had before."""
        record = self.records.load(node)
        cpu = record.get("cpu") if record is not None else None
        if not isinstance(cpu, dict):
            return False, None
        previous = cpu.get("previous")
        return True, previous if isinstance(previous, str) else None

    def heal(self, node: str, pid: int) -> bool:
        """Undo what the record names, in the namespace it was applied in (none left if the container was
        restarted: its PID differs). A CPU allowance is given back by the provider (`starved`) first."""
        record = self.records.load(node)
        if record is None:
            return False
        recorded_pid = record.get("pid")
        same_namespace = isinstance(recorded_pid, int) and recorded_pid == pid and pid > 0
        if same_namespace:
            rules = record.get("rules")
            for rule in rules if isinstance(rules, list) else []:
                if isinstance(rule, list) and len(rule) > 2:
                    with contextlib.suppress(ProviderError):
                        self._iptables(pid, "-D", [str(r) for r in rule])
            if record.get("qdisc"):
                with contextlib.suppress(ProviderError):
                    self._nsenter(
                        pid, ["tc", "qdisc", "del", "dev", self.nic, "root"], what="remove the TBF qdisc"
                    )
        proxy = record.get("proxy")
        if isinstance(proxy, dict):
            stop_proxy(proxy)
        self.records.remove(node)
        return True

    def recorded(self) -> list[str]:
        return self.records.nodes()

    # -- inside the namespace -------------------------------------------------------------------------------
    def _nsenter(self, pid: int, argv: list[str], *, what: str) -> None:
        run(["nsenter", f"--net=/proc/{pid}/ns/net", *argv], what=what)

    def _iptables(self, pid: int, verb: str, rule: list[str]) -> None:
        table, chain, *spec = rule
        self._nsenter(
            pid,
            ["iptables", "-w", "5", "-t", table, verb, chain, *spec, *COMMENT],
            what=f"iptables {verb} {chain} in the container",
        )

    def _start_proxy(
        self, pid: int, address: str, port: int, impairment: Impairment
    ) -> tuple[ProcessRecord, int]:
        argv = [
            "nsenter",
            f"--net=/proc/{pid}/ns/net",
            sys.executable,
            "-m",
            PROXY_MODULE,
            "--listen",
            address,
            "--upstream",
            f"{address}:{port}",
            "--mark",
            "0",
            "--max-s",
            str(PROXY_MAX_S),
        ]
        if impairment.fault is Fault.DELAY:
            argv += ["--delay-ms", str(impairment.ms), "--jitter-ms", str(impairment.jitter_ms)]
        else:
            argv += ["--slow-ms", str(impairment.ms)]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        record = ProcessRecord.of(process.pid, config=PROXY_MODULE)
        if not line.isdigit() or record is None:
            process.kill()
            process.wait(5)
            raise ProviderError(f"the delaying proxy in the container of {address} did not start")
        _CHILDREN[process.pid] = process  # waited for when healed (no zombie, no unwaited child)
        return record, int(line)
