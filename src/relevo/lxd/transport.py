"""Where an LXD daemon is and how to reach it: its unix socket, or HTTPS to a remote with a client
certificate and the server's certificate pinned. The standard library only (http.client, socket, ssl):
the REST API is small, and this way the same code speaks to Debian's LXD 5.0, snap LXD and Incus.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from relevo.lxd.errors import LXDUnreachableError
from relevo.safe_open import read_bytes

DEFAULT_TIMEOUT_S = 10.0

# Where each packaging of the daemon puts its socket, in the order relevo looks.
SOCKET_CANDIDATES = (
    Path("/var/snap/lxd/common/lxd/unix.socket"),  # snap LXD
    Path("/var/lib/lxd/unix.socket"),  # Debian's lxd package (LXD 5.0)
    Path("/var/lib/incus/unix.socket"),  # Incus
)
START_HINT = (
    "start LXD (with systemd: `sudo systemctl start lxd`; without it: `sudo scripts/lxd-daemon start`, "
    "which runs `lxd --group root` and `lxd waitready`), or set LXD_DIR to its directory"
)

Flavour = Literal["lxd", "incus"]


@dataclass(frozen=True, slots=True, kw_only=True)
class APIEndpoint:
    """One LXD daemon: either `socket_path` or `url` (https://HOST:PORT) with the client's certificate and
    key and the server certificate to pin. `project` scopes every call; `flavour` picks the header names
    (Incus renamed X-LXD-* to X-Incus-*)."""

    socket_path: Path | None = None
    url: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    server_cert: Path | None = None
    project: str | None = None
    flavour: Flavour = "lxd"
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def local(
        cls,
        socket_path: Path | None = None,
        *,
        project: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> APIEndpoint:
        """The local daemon: `socket_path`, else $LXD_DIR/unix.socket (LXD's API), else
        $INCUS_DIR/unix.socket (Incus's), else the first socket that exists among snap's, Debian's and
        Incus's. The API flavour follows the daemon: Incus for INCUS_DIR or a path naming incus."""
        if socket_path is None and not os.environ.get("LXD_DIR") and os.environ.get("INCUS_DIR"):
            path = Path(os.environ["INCUS_DIR"]) / "unix.socket"
            return cls(socket_path=path, flavour="incus", project=project, timeout_s=timeout_s)
        path = socket_path or _find_socket()
        flavour: Flavour = "incus" if "incus" in path.parts else "lxd"
        return cls(socket_path=path, flavour=flavour, project=project, timeout_s=timeout_s)

    @property
    def name(self) -> str:
        return str(self.socket_path) if self.socket_path else str(self.url)

    def connect(self, timeout_s: float) -> http.client.HTTPConnection:
        """A connected HTTP connection whose every socket operation times out after `timeout_s`."""
        conn: http.client.HTTPConnection
        if self.socket_path is not None:
            conn = _UnixConnection(self.socket_path, timeout_s)
        elif self.url is not None:
            conn = _pinned_https(self, timeout_s)
        else:
            raise ValueError("an APIEndpoint needs socket_path or url")
        try:
            conn.connect()
        except LXDUnreachableError:
            conn.close()
            raise
        except PermissionError as exc:
            conn.close()
            raise LXDUnreachableError(
                f"connect to LXD at {self.name}",
                f"permission denied ({exc.strerror}): run as root, or add this user to the socket's group "
                "(`sudo usermod -aG lxd $USER`, then log in again)",
            ) from exc
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            conn.close()
            raise LXDUnreachableError(
                f"connect to LXD at {self.name}", f"no daemon answers: {START_HINT}"
            ) from exc
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            conn.close()
            raise LXDUnreachableError(
                f"connect to LXD at {self.name}", str(exc) or type(exc).__name__
            ) from exc
        return conn


def _find_socket() -> Path:
    lxd_dir = os.environ.get("LXD_DIR")
    if lxd_dir:
        return Path(lxd_dir) / "unix.socket"
    for candidate in SOCKET_CANDIDATES:
        if candidate.exists():
            return candidate
    tried = ", ".join(str(c) for c in SOCKET_CANDIDATES)
    raise LXDUnreachableError("find the LXD socket", f"none of {tried} exists: {START_HINT}")


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over LXD's unix socket; the host name only fills the Host header."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        super().__init__("lxd", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def certificate_fingerprint(pem: str) -> str:
    """SHA-256 of a PEM certificate's DER form: LXD's certificate fingerprint, and what relevo pins."""
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS that trusts exactly one server certificate, compared by fingerprint right after the
    handshake and before a byte of the request is sent. LXD's certificates are self-signed, so a CA
    check proves nothing; the pin does (as `lxc remote add` accepts a fingerprint once)."""

    def __init__(self, host: str, port: int, *, context: ssl.SSLContext, timeout_s: float, pin: str) -> None:
        super().__init__(host, port, context=context, timeout=timeout_s)
        self._pin = pin

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True) or b""
        seen = hashlib.sha256(der).hexdigest()
        if seen != self._pin:
            self.sock.close()
            raise LXDUnreachableError(
                f"connect to LXD at {self.host}:{self.port}",
                f"the server's certificate (sha256 {seen[:16]}…) is not the pinned one ({self._pin[:16]}…)",
            )


def _pinned_https(endpoint: APIEndpoint, timeout_s: float) -> _PinnedHTTPSConnection:
    assert endpoint.url is not None
    if not endpoint.url.startswith("https://"):
        raise ValueError(f"an LXD remote is https://HOST:PORT, not {endpoint.url!r}")
    if endpoint.server_cert is None or endpoint.client_cert is None or endpoint.client_key is None:
        raise ValueError("an LXD remote needs client_cert, client_key and server_cert (to pin)")
    hostport = endpoint.url.removeprefix("https://").rstrip("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "8443")
    # The pin replaces CA and host-name checks, which a self-signed server certificate cannot pass.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(endpoint.client_cert, endpoint.client_key)
    pin = certificate_fingerprint(read_bytes(endpoint.server_cert, limit=1 << 20).decode(errors="replace"))
    return _PinnedHTTPSConnection(host.strip("[]"), int(port), context=context, timeout_s=timeout_s, pin=pin)
