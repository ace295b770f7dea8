"""Finding the daemons relevo runs on this machine: HAProxy, and Apache with its modules."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from relevo.commands import which
from relevo.errors import MissingToolError

APACHE_MODULE_DIRS = (
    "/usr/lib/apache2/modules",  # Debian, Ubuntu
    "/usr/lib64/httpd/modules",  # Fedora, RHEL
    "/usr/lib/httpd/modules",
    "/usr/lib/apache2",  # openSUSE
    "/usr/local/libexec/apache24",  # FreeBSD
    "/opt/homebrew/lib/httpd/modules",
    "/usr/local/lib/httpd/modules",
)
INSTALL_HINT = (
    "install it with `sudo apt-get install haproxy apache2` (Debian, Ubuntu) "
    "or `sudo dnf install haproxy httpd` (Fedora, RHEL)"
)


@dataclass(frozen=True, slots=True)
class Apache:
    binary: Path
    modules_dir: Path


@cache
def find_haproxy() -> Path:
    found = which("haproxy")
    if found is None:
        raise MissingToolError(f"HAProxy is not installed: {INSTALL_HINT}")
    return found


@cache
def find_apache() -> Apache:
    binary = which("apache2", "httpd")
    if binary is None:
        raise MissingToolError(f"Apache is not installed: {INSTALL_HINT}")
    for candidate in APACHE_MODULE_DIRS:
        if (Path(candidate) / "mod_headers.so").exists():
            return Apache(binary=binary, modules_dir=Path(candidate))
    raise MissingToolError(
        f"found {binary} but not its modules (mod_headers.so) in any of: {', '.join(APACHE_MODULE_DIRS)}"
    )
