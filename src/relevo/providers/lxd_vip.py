"""Which balancer of an LXD pair holds the VIP, as the host sees it: the host's neighbour table
(/proc/net/arp) for the VIP on the bridge, matched with each balancer container's MAC address.

Why the neighbour table: it is what this host's clients use, keepalived's gratuitous ARPs rewrite it
0.2-10 ms after a takeover (MEASURED.md, 53 of 53), and reading it costs no API call, so the controller
can look every tick. When the host has no entry yet (nobody here talked to the VIP), one UDP datagram to
the VIP makes the kernel ask, and the next look finds the answer.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from relevo.lxd.errors import LXDError
from relevo.model import Topology

ARP_TABLE = Path("/proc/net/arp")
ARP_COMPLETE = 0x2  # ATF_COM: the entry has an answer
DISCARD_PORT = 9  # where the datagram that starts an ARP lookup goes (nothing need listen)


def neighbour(table: str, address: str, device: str) -> str | None:
    """The MAC address the table gives `address` on `device` (complete entries only), lower case."""
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 6 or fields[0] != address or fields[5] != device:
            continue
        try:
            complete = int(fields[2], 16) & ARP_COMPLETE
        except ValueError:
            continue
        return fields[3].lower() if complete else None
    return None


class VipHolder:
    """Answers `holder()`: the balancer whose MAC the host's neighbour entry for the VIP names."""

    def __init__(
        self,
        topology: Topology,
        device: str,
        macs: Callable[[], Mapping[str, str]],
        table: Callable[[], str] = lambda: ARP_TABLE.read_text(),
    ) -> None:
        assert topology.pair is not None and topology.pair.vip is not None
        self.vip = topology.pair.vip
        self.port = topology.balancer.frontend.port
        self.device = device
        self._macs_of = macs
        self._macs: dict[str, str] = {}
        self._table = table

    def holder(self) -> str | None:
        mac = neighbour(self._table(), self.vip, self.device)
        if mac is None:
            self._ask()
            return None
        if mac not in self._macs:
            with contextlib.suppress(LXDError, OSError):
                self._macs = {m.lower(): name for name, m in self._macs_of().items() if m}
        return self._macs.get(mac)

    def _ask(self) -> None:
        """One datagram to the VIP: the kernel resolves its address, filling the table for next time."""
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.setblocking(False)
            probe.sendto(b"", (self.vip, DISCARD_PORT))
