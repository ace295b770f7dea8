"""A client for HAProxy's Runtime API over its unix stats socket: one connection per command."""

from __future__ import annotations

import csv
import enum
import io
import socket
from dataclasses import dataclass
from pathlib import Path

from relevo import anchor
from relevo.errors import RuntimeAPIError


class AdminState(enum.StrEnum):
    READY = "ready"
    DRAIN = "drain"
    MAINT = "maint"


class Health(enum.StrEnum):
    UP = "up"
    STOPPING = "stopping"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class ServerStat:
    """One server line of `show stat`, reduced to what relevo reads."""

    backend: str
    server: str
    # HAProxy's own words: UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2" (going down), "DOWN 1/2" (going up)...
    status: str
    current_sessions: int
    total_sessions: int
    check_status: str
    weight: int
    total_requests: int = 0  # HTTP requests (req_tot); a keep-alive session carries many

    @property
    def health(self) -> str:
        """The status without HAProxy's transition counter ("UP 1/2" -> "UP")."""
        word = self.status.split(" ", 1)[0]
        return "MAINT" if word.startswith("MAINT") else word


# HAProxy's error answers start with one of these (it has no status codes on this interface).
_ERROR_PREFIXES = ("No such", "Unknown command", "Require ", "Permission denied", "'set server'")


class RuntimeAPI:
    def __init__(self, socket_path: Path, *, timeout_s: float = 2.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's whole answer."""
        if "\n" in line or ";" in line:
            raise RuntimeAPIError(f"refusing a Runtime API command with a separator: {line!r}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout_s)
                sock.connect(str(self.socket_path))
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise RuntimeAPIError(
                f"HAProxy's Runtime API at {anchor.real(self.socket_path)} did not answer: {exc}"
            ) from exc
        answer = b"".join(chunks).decode(errors="replace")
        if answer.startswith(_ERROR_PREFIXES):
            raise RuntimeAPIError(f"HAProxy refused {line!r}: {answer.strip()}")
        return answer

    def show_stat(self) -> list[ServerStat]:
        """Every server of every backend (frontends and backend totals left out)."""
        text = self.command("show stat").lstrip("# ")
        servers = []
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("svname") in ("FRONTEND", "BACKEND") or not row.get("pxname"):
                continue
            servers.append(
                ServerStat(
                    backend=row["pxname"],
                    server=row["svname"],
                    status=row["status"],
                    current_sessions=int(row["scur"] or 0),
                    total_sessions=int(row["stot"] or 0),
                    check_status=row.get("check_status", ""),
                    weight=int(row.get("weight") or 0),
                    total_requests=int(row.get("req_tot") or row["stot"] or 0),
                )
            )
        return servers

    def servers(self, backend: str) -> dict[str, ServerStat]:
        return {s.server: s for s in self.show_stat() if s.backend == backend}

    def set_state(self, backend: str, server: str, state: AdminState) -> None:
        self.command(f"set server {backend}/{server} state {state.value}")

    def set_health(self, backend: str, server: str, health: Health) -> None:
        """Force the operational state now, without waiting for `rise` checks."""
        self.command(f"set server {backend}/{server} health {health.value}")

    def show_servers_state(self) -> str:
        """The dump `server-state-file` expects: written before a reload so health survives it."""
        return self.command("show servers state")
