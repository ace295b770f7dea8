"""`relevo doctor --lxd` against the real daemon: it sees the daemon and the storage pool, and says the
base image is missing (with the command that makes it) until the image is imported under its alias."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.lxd.build import DEFAULT_ALIAS, BuiltImage, import_image
from relevo.lxd.client import LXDClient

pytestmark = [pytest.mark.lxd, pytest.mark.timeout(900)]


def doctor_checks() -> dict[str, dict[str, object]]:
    result = CliRunner().invoke(cli, ["doctor", "--lxd", "--json"])
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_doctor_sees_the_daemon_the_pool_and_the_image(
    unchanged_lxd: LXDClient, base_image: BuiltImage
) -> None:
    """Daemon and pool are ok; the image check follows the alias: missing with its fix, then present."""
    client = unchanged_lxd
    had_alias = client.alias_target(DEFAULT_ALIAS) is not None
    checks = doctor_checks()
    assert checks["LXD daemon"]["ok"] is True
    assert checks["storage pool"]["ok"] is True
    assert checks["base image"]["ok"] is had_alias
    if had_alias:
        return
    assert str(checks["base image"]["fix"]).endswith("relevo image build")
    imported = import_image(client, base_image.path, DEFAULT_ALIAS)
    try:
        assert doctor_checks()["base image"]["ok"] is True
    finally:
        client.delete_alias(DEFAULT_ALIAS)
        if imported.uploaded:
            client.delete_image(imported.fingerprint)
