"""The image recipe, its cache and `relevo image build`'s command line (the debootstrap run itself is
exercised by the `lxd` tier, which builds the image when the cache is empty)."""

from __future__ import annotations

import io
import ipaddress
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from relevo.build_dirs import cache_dir
from relevo.cli import cli
from relevo.cli.image import StepPrinter
from relevo.errors import RelevoError
from relevo.lxd import build
from relevo.lxd.build import ImageRecipe, build_image
from relevo.lxd.network import free_subnet, isolated_bridge


def test_the_cache_key_follows_the_recipe() -> None:
    """A different package list, mirror or suite names a different tarball; the same recipe the same one."""
    recipe = ImageRecipe()
    assert recipe.file_name == ImageRecipe().file_name
    others = {
        replace(recipe, packages=(*recipe.packages, "curl")).file_name,
        replace(recipe, mirror="http://mirror.example/debian").file_name,
        replace(recipe, suite="trixie").file_name,
    }
    assert recipe.file_name not in others
    assert len(others) == 3


def test_metadata_has_templates_for_hostname_and_hosts() -> None:
    """metadata.yaml is YAML naming the architecture and LXD templates for /etc/hostname and /etc/hosts."""
    metadata = yaml.safe_load(ImageRecipe(architecture="x86_64").metadata_yaml(1_700_000_000))
    assert metadata["architecture"] == "x86_64"
    assert metadata["creation_date"] == 1_700_000_000
    assert metadata["templates"]["/etc/hostname"]["template"] == "hostname.tpl"
    assert "create" in metadata["templates"]["/etc/hosts"]["when"]
    assert "{{ container.name }}" in build.HOSTNAME_TEMPLATE


def test_a_cached_tarball_is_used_without_building(tmp_path: Path) -> None:
    """When the recipe's tarball is in the cache, build_image returns it at once and says so."""
    recipe = ImageRecipe()
    (tmp_path / recipe.file_name).write_bytes(b"image")
    lines: list[str] = []
    built = build_image(recipe, cache=tmp_path, progress=lines.append)
    assert (built.path, built.cached, built.size_bytes) == (tmp_path / recipe.file_name, True, 5)
    assert lines == [f"cached image {tmp_path / recipe.file_name}"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_cache_directory_owned_by_someone_else_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """relevo often runs as root: a cache directory another user owns could plant a root file system."""
    images = tmp_path / "relevo" / "images"
    images.mkdir(parents=True)
    os.chown(images, 65534, 65534)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(RelevoError, match="belongs to another user"):
        cache_dir()


def test_image_build_json_reports_the_cached_tarball(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`relevo image build --no-import --json` prints the tarball, its size and that it was cached."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    tarball = cache_dir() / ImageRecipe().file_name
    tarball.write_bytes(b"x" * 10)
    result = CliRunner().invoke(cli, ["image", "build", "--no-import", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["tarball"], data["cached"], data["size_bytes"]) == (str(tarball), True, 10)


def test_image_build_interrupted_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a build exits with 130 and says the partial build is gone."""

    def interrupted(*_args: object, **_kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "build_image", interrupted)
    result = CliRunner().invoke(cli, ["image", "build", "--no-import"])
    assert result.exit_code == 130
    assert "interrupted" in result.stderr


def test_progress_in_a_log_shows_steps_and_thins_out_routine_lines() -> None:
    """Without a terminal every step and warning is printed, debootstrap's `I:` lines one per interval."""
    out = io.StringIO()
    printer = StepPrinter(out)
    for line in ["debootstrap bookworm", "I: Retrieving a", "I: Retrieving b", "W: odd", "packing"]:
        printer(line)
    printed = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert printed == ["debootstrap bookworm", "I: Retrieving a", "W: odd", "packing"]


def test_a_test_bridge_is_isolated_and_on_a_free_subnet() -> None:
    """The bridge config turns NAT, routing, DHCP and IPv6 off; the subnet skips any the host routes."""
    config = isolated_bridge(ipaddress.IPv4Interface("10.213.7.1/24"))
    assert config["ipv4.address"] == "10.213.7.1/24"
    assert (config["ipv4.nat"], config["ipv4.routing"], config["ipv6.address"]) == ("false", "false", "none")
    taken = [ipaddress.IPv4Network("10.213.0.0/23"), ipaddress.IPv4Network("10.213.3.0/24")]
    assert free_subnet(taken=taken) == ipaddress.IPv4Network("10.213.2.0/24")
    assert free_subnet(start=3, taken=taken) == ipaddress.IPv4Network("10.213.4.0/24")
    with pytest.raises(ValueError, match="no free /24"):
        free_subnet(taken=[ipaddress.IPv4Network("10.0.0.0/8")])
