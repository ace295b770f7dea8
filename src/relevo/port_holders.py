"""Which process listens on a TCP address: read from the kernel's socket tables (/proc/net/tcp, tcp6) and
each process's open files, never by matching names. Root sees every process; another user sees only its
own, and then the answer is "unknown" rather than a guess.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"  # the TCP state column's code for LISTEN
MAX_COMMAND = 60


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    command: str  # its command line, shortened

    def __str__(self) -> str:
        return f"PID {self.pid} ({self.command})"


def _parse_address(field: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """`0100007F:1F90` → 127.0.0.1, 8080 (the kernel prints each 32-bit word in host byte order)."""
    host, port = field.split(":")
    raw = bytes.fromhex(host)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.IPv4Address(words) if len(raw) == 4 else ipaddress.IPv6Address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address, int(port, 16)


def listening_inodes(address: str, port: int, proc: Path = Path("/proc")) -> set[int]:
    """The socket inodes listening on `address`:`port`, or on every address (0.0.0.0, ::) at that port,
    which holds it too."""
    wanted = ipaddress.ip_address(address)
    found: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != LISTEN:
                continue
            local, local_port = _parse_address(fields[1])
            if local_port == port and (local == wanted or local.is_unspecified):
                found.add(int(fields[9]))
    return found


def _command(pid_dir: Path) -> str:
    with contextlib.suppress(OSError):
        argv = [a.decode(errors="replace") for a in pid_dir.joinpath("cmdline").read_bytes().split(b"\0")]
        argv = [a for a in argv if a]
        text = " ".join([Path(argv[0]).name, *argv[1:]]) if argv else ""
        if text:
            return text if len(text) <= MAX_COMMAND else text[: MAX_COMMAND - 1] + "…"
    with contextlib.suppress(OSError):
        return pid_dir.joinpath("comm").read_text().strip()
    return "?"


def holders(address: str, port: int, proc: Path = Path("/proc")) -> list[Holder]:
    """Every process that has a socket listening on `address`:`port` open (a pre-forked server's
    children share their parent's: all are listed). Empty when none is visible to this user."""
    inodes = listening_inodes(address, port, proc)
    if not inodes:
        return []
    links = {f"socket:[{inode}]" for inode in inodes}
    found = []
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            fds = list((pid_dir / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                if str(fd.readlink()) in links:
                    found.append(Holder(int(pid_dir.name), _command(pid_dir)))
                    break
            except OSError:
                continue
    return sorted(found, key=lambda h: h.pid)


def describe_holder(address: str, port: int) -> str:
    """Who holds the port, for a message: the lowest PID (a server's parent) and how many more."""
    found = holders(address, port)
    if not found:
        return "another program (not visible to this user)" if os.geteuid() != 0 else "another program"
    more = f" and {len(found) - 1} more process(es)" if len(found) > 1 else ""
    return f"{found[0]}{more}"
