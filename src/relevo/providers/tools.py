"""Finding the programs relevo drives on this machine, and running them with a timeout."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from relevo.errors import MissingToolError, ProviderError

# sbin is not on every user's PATH, but that is where distributions put both daemons.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
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


def which(*names: str) -> Path | None:
    for name in names:
        found = shutil.which(name, path=SEARCH_PATH)
        if found:
            return Path(found)
    return None


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


def run(command: list[str], *, timeout_s: float = 30.0, what: str) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a non-zero exit or a timeout becomes a ProviderError."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise ProviderError(
            f"{what}: no answer after {timeout_s:g}s", command=command, output=output
        ) from None
    except OSError as exc:
        raise ProviderError(f"{what}: {exc.strerror}", command=command) from None
    if result.returncode != 0:
        raise ProviderError(
            f"{what} (exit status {result.returncode})", command=command, output=result.stdout + result.stderr
        )
    return result
