"""What a balancer VM's private NIC says, read without forking a process (ten looks a second on an
emulated VM, where each `ip` run would cost a slice of its one vCPU): its IPv4 addresses, from one
netlink dump (RTM_GETADDR), and whether another host answers ARP for an address (a split brain's
evidence: the peer balancer carries the VIP too).

The ARP look is an RFC 5227 probe (sender address 0.0.0.0): a host that holds the address answers it
to the prober's MAC address, and no host learns anything from it (no neighbour entry changes). It is
sent now and its answers are read at the next look, so no tick waits for them.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
RTM_NEWADDR = 20
RTM_GETADDR = 22
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IFA_ADDRESS = 1
IFA_LOCAL = 2
NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, interface index
RTATTR = struct.Struct("=HH")  # length, type
NETLINK_TIMEOUT_S = 1.0

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARPHRD_ETHER = 1
ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = b"\xff" * 6
PACKET_OUTGOING = 4  # sll_pkttype of a frame this host sent (a packet socket sees those too)
ARP_FRAME = struct.Struct("!6s6sHHHBBH6s4s6s4s")  # Ethernet header, then the ARP packet for IPv4


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attributes(data: bytes, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    at = start
    while at + RTATTR.size <= end:
        length, kind = RTATTR.unpack_from(data, at)
        if length < RTATTR.size:
            return
        yield kind, data[at + RTATTR.size : at + length]
        at += _align(length)


def parse_addresses(data: bytes, index: int) -> tuple[set[str], bool]:
    """The IPv4 addresses of interface `index` in one read of an RTM_GETADDR dump, and whether the dump
    ended with it. A netlink error is an OSError with the kernel's errno."""
    found: set[str] = set()
    at = 0
    while at + NLMSG_HEADER.size <= len(data):
        length, kind, _flags, _seq, _port = NLMSG_HEADER.unpack_from(data, at)
        if length < NLMSG_HEADER.size:
            break
        if kind == NLMSG_DONE:
            return found, True
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, at + NLMSG_HEADER.size)
            raise OSError(-error, "netlink: the address dump failed")
        if kind == RTM_NEWADDR:
            family, _prefix, _flags, _scope, owner = IFADDRMSG.unpack_from(data, at + NLMSG_HEADER.size)
            if family == socket.AF_INET and owner == index:
                attributes = dict(_attributes(data, at + NLMSG_HEADER.size + IFADDRMSG.size, at + length))
                address = attributes.get(IFA_LOCAL, attributes.get(IFA_ADDRESS))
                if address is not None and len(address) == 4:
                    found.add(socket.inet_ntoa(address))
        at += _align(length)
    return found, False


def ipv4_addresses(nic: str) -> set[str]:
    """The IPv4 addresses `nic` carries now (OSError when it does not exist or netlink fails)."""
    index = socket.if_nametoindex(nic)
    request = NLMSG_HEADER.pack(
        NLMSG_HEADER.size + IFADDRMSG.size, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    ) + IFADDRMSG.pack(socket.AF_INET, 0, 0, 0, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as link:
        link.settimeout(NETLINK_TIMEOUT_S)
        link.bind((0, 0))
        link.send(request)
        found: set[str] = set()
        done = False
        while not done:
            addresses, done = parse_addresses(link.recv(1 << 16), index)
            found |= addresses
        return found


def arp_probe(mac: bytes, address: str) -> bytes:
    """An ARP probe for `address` from `mac` (sender address 0.0.0.0), broadcast."""
    return ARP_FRAME.pack(
        BROADCAST, mac, ETH_P_ARP, ARPHRD_ETHER, ETH_P_IP, 6, 4, ARP_REQUEST,
        mac, bytes(4), bytes(6), socket.inet_aton(address),
    )  # fmt: skip


def claims(frame: bytes, address: str, own_mac: bytes) -> bool:
    """Whether `frame` is an ARP reply from another MAC address saying it holds `address`."""
    if len(frame) < ARP_FRAME.size:
        return False
    fields = ARP_FRAME.unpack_from(frame)
    ethertype, operation, sender_mac, sender_ip = fields[2], fields[7], fields[8], fields[9]
    return bool(
        ethertype == ETH_P_ARP
        and operation == ARP_REPLY
        and sender_ip == socket.inet_aton(address)
        and sender_mac != own_mac
    )


class ArpClaims:
    """Probes for an address on a NIC and hears the answers, never waiting: `probe()` sends one probe,
    `heard()` reads every answer that has come since (non-blocking). Needs root (a packet socket)."""

    def __init__(self, nic: str, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        try:
            self.socket.bind((nic, ETH_P_ARP))
            self.socket.setblocking(False)
            self.mac: bytes = self.socket.getsockname()[4]
        except OSError:
            self.socket.close()
            raise

    def probe(self) -> None:
        self.socket.send(arp_probe(self.mac, self.address))

    def heard(self) -> bool:
        """Whether another host answered for the address since the last call."""
        answered = False
        while True:
            try:
                frame, sender = self.socket.recvfrom(128)
            except BlockingIOError:
                return answered
            if sender[2] != PACKET_OUTGOING and claims(frame, self.address, self.mac):
                answered = True

    def close(self) -> None:
        self.socket.close()
