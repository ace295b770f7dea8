"""relevo and what its controller imports, packed from this host's installation into one tarball that the
balancer's VM unpacks into /opt/relevo/lib: the guests fetch nothing (no pip, no index, no network).

The VM's Python must be the minor version this host runs (the box is Debian 12, Python 3.11, as CI);
the C speed-ups of PyYAML and MarkupSafe are optional, so even a mismatch degrades to pure Python."""

from __future__ import annotations

import gzip
import io
import re
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import relevo
from relevo.errors import RelevoError
from relevo.files import ensure_dir

# What `relevo watch` with the LXD provider imports, by distribution (with what they require, as installed).
DISTRIBUTIONS = ("click", "jinja2", "pyyaml", "rich", "prometheus-client")
BUNDLE_NAME = "relevo-runtime.tar.gz"


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _members() -> dict[str, Path]:
    """Archive name (relative to site-packages) → file on this host."""
    found: dict[str, Path] = {}
    package = Path(relevo.__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            found[str(Path("relevo") / path.relative_to(package))] = path
    for dist in _closure():
        for file in dist.files or ():
            if "__pycache__" in file.parts or file.suffix == ".pyc" or file.parts[0] == "..":
                continue
            located = Path(str(file.locate()))
            if located.is_file():
                found[str(file)] = located
    return found


def _closure() -> list[metadata.Distribution]:
    """DISTRIBUTIONS and what they require (not extras; a requirement under a marker when installed)."""
    found: dict[str, metadata.Distribution] = {}
    wanted = [(name, True) for name in DISTRIBUTIONS]
    while wanted:
        name, needed = wanted.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if needed:
                raise RelevoError(f"cannot pack the controller's runtime: {name} is not installed") from None
            continue
        found[key] = dist
        for requirement in dist.requires or ():
            spec, _, marker = requirement.partition(";")
            if "extra" in marker:
                continue
            match = re.match(r"[A-Za-z0-9._-]+", spec.strip())
            if match:
                wanted.append((match.group(0), not marker.strip()))
    return list(found.values())


def write_bundle(into: Path) -> Path:
    """Write the tarball into `into` (only when its content changed: its name stays, its digest is the
    VM's test for "install again"). Returns its path."""
    ensure_dir(into)
    # Fixed times and modes (and gzip's header time): the same installation packs to the same bytes.
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in _members().items():
            data = path.read_bytes()
            info = tarfile.TarInfo(f"lib/{name}")
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
        marker = f"{python_version()}\n".encode()
        info = tarfile.TarInfo("python-version")
        info.size, info.mode, info.mtime = len(marker), 0o644, 0
        tar.addfile(info, io.BytesIO(marker))
    packed = gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)
    target = into / BUNDLE_NAME
    if target.is_file() and not target.is_symlink() and target.read_bytes() == packed:
        return target
    tmp = into / f".{BUNDLE_NAME}.tmp"
    tmp.write_bytes(packed)
    tmp.replace(target)
    return target
