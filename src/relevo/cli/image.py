"""`relevo image build`: the base image for the `lxd` provider, built offline from a Debian mirror."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import TextIO

import click

from relevo.cli.common import print_json

PLAIN_EVERY_S = 5.0


class StepPrinter:
    """Progress on stderr: on a terminal one line rewritten in place; elsewhere (CI logs) relevo's own
    steps and debootstrap's warnings at once, its routine `I:` lines at most one per PLAIN_EVERY_S."""

    def __init__(self, out: TextIO | None = None, *, quiet: bool = False) -> None:
        self.out = out or sys.stderr
        self.live = self.out.isatty()
        self.quiet = quiet
        self._last_plain = -PLAIN_EVERY_S
        self._started = time.monotonic()

    def __call__(self, line: str) -> None:
        if self.quiet:
            return
        elapsed = time.monotonic() - self._started
        text = f"[{elapsed:5.1f}s] {line}"
        # debootstrap's routine lines, bare or tagged by a parallel build ("box: I: ...").
        routine = line.startswith("I: ") or ": I: " in line[:16]
        if self.live:
            self.out.write("\r\x1b[K" + text[:200])
            if not routine:
                self.out.write("\n")
        elif not routine:
            self.out.write(text + "\n")
        elif time.monotonic() - self._last_plain >= PLAIN_EVERY_S:
            self._last_plain = time.monotonic()
            self.out.write(text + "\n")
        self.out.flush()


@click.group()
def image() -> None:
    """The container image the `lxd` provider runs every node from."""


@image.command()
@click.option("--alias", default=None, help="The image alias in LXD (default: relevo/bookworm).")
@click.option("--mirror", default=None, help="The Debian mirror (default: http://deb.debian.org/debian).")
@click.option("--suite", default="bookworm", show_default=True, help="The Debian release.")
@click.option("--rebuild", is_flag=True, help="Build again even when a cached tarball exists.")
@click.option("--no-import", "no_import", is_flag=True, help="Only build (or find) the tarball.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def build(
    alias: str | None, mirror: str | None, suite: str, rebuild: bool, no_import: bool, as_json: bool
) -> None:
    """Build the base image and import it into LXD under an alias.

    debootstrap makes a Debian minbase root file system from the mirror (systemd as init, Apache,
    HAProxy, ifupdown), packed as an LXD image tarball and cached under ~/.cache/relevo/images, keyed by
    its recipe: the next build is instant. Import is skipped when LXD already has the same tarball.
    Needs root (debootstrap) and, unless --no-import, a reachable LXD (`relevo doctor` says how).
    """
    from relevo.lxd.build import DEFAULT_ALIAS, ImageRecipe, build_image, import_image

    recipe = ImageRecipe(suite=suite)
    if mirror:
        recipe = replace(recipe, mirror=mirror)
    progress = StepPrinter()
    try:
        built = build_image(recipe, progress=progress, rebuild=rebuild)
        result: dict[str, object] = {
            "tarball": str(built.path),
            "cached": built.cached,
            "build_s": round(built.seconds, 2),
            "size_bytes": built.size_bytes,
        }
        if not no_import:
            from relevo.lxd.client import LXDClient

            imported = import_image(LXDClient(), built.path, alias or DEFAULT_ALIAS, progress=progress)
            result |= {
                "alias": imported.alias,
                "fingerprint": imported.fingerprint,
                "uploaded": imported.uploaded,
                "import_s": round(imported.seconds, 2),
            }
    except KeyboardInterrupt:
        click.echo("\nrelevo: interrupted; the partial build was removed", err=True)
        sys.exit(130)
    if as_json:
        print_json(result)
        return
    how = "cached" if built.cached else f"built in {built.seconds:.0f} s"
    click.echo(f"image {built.path} ({built.size_bytes / 1e6:.0f} MB, {how})")
    if "alias" in result:
        state = "imported" if result["uploaded"] else "already in LXD"
        click.echo(f"alias {result['alias']} → {str(result['fingerprint'])[:12]} ({state})")
