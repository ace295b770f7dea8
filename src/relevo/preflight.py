"""Checks made before anything starts: each listening address can be bound by us, now.

A port another program holds, or a privileged port without the right to bind it, would otherwise be
found only when a daemon fails to start, after others already run. Binding a throw-away socket asks the
kernel the very question the daemon will ask. SO_REUSEADDR, as both daemons set it, so that a port in
TIME_WAIT is not mistaken for one in use; no SO_REUSEPORT, so that a listener that set it (HAProxy
does) still conflicts.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from pathlib import Path

from relevo.errors import RelevoError
from relevo.model import Endpoint
from relevo.port_holders import describe_holder


class PortUnavailableError(RelevoError):
    """A node could not listen where the topology says: nothing was started."""

    exit_status = 2


def unprivileged_port_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except (OSError, ValueError):
        return 1024


def check_listeners(listeners: Iterable[tuple[str, Endpoint]]) -> None:
    """Raise PortUnavailableError (exit 2) naming every listener that cannot bind its address now."""
    problems = []
    for where, endpoint in listeners:
        problem = bind_problem(endpoint)
        if problem:
            problems.append(f"{where}: {endpoint.address}:{endpoint.port} {problem}")
    if problems:
        raise PortUnavailableError(
            "cannot listen where the topology says (nothing was started):\n  " + "\n  ".join(problems)
        )


def bind_problem(endpoint: Endpoint) -> str | None:
    """Why `endpoint` cannot be listened on now (who holds it, when the kernel says), or None."""
    family = socket.AF_INET6 if ":" in endpoint.address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((endpoint.address, endpoint.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"is already in use by {describe_holder(endpoint.address, endpoint.port)}"
            if exc.errno == errno.EACCES:
                return (
                    f"is a privileged port (below {unprivileged_port_start()}): run as root, give the "
                    "daemons CAP_NET_BIND_SERVICE, or choose a higher port"
                )
            if exc.errno == errno.EADDRNOTAVAIL:
                return "is not an address of this machine"
            return f"cannot be bound: {exc.strerror}"
    return None
